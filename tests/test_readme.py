# Copyright (c) mmnextvit contributors. All rights reserved.
"""A map from every command the README shows to the tests (or the file)
that exercise it.

This is a map, not a run of the commands: each command is tied to the tests
that run its code path, most at a small size (a tool on the bundled data,
two CPU processes for a launcher). The paper-scale commands (8 GPUs, COCO,
ADE20K) are tied to tests that build their configs and run the same tools on
small derivatives; the map says so beside them. What the map does check:
the commands are read from the README itself (the lines of its ``bash``
blocks and the inline code spans that start a command), so a command added
to the README without an entry fails here, and so does a test renamed or
removed while the README still points at it. The commands no test runs
(GPU route 2, downloads from the hub, the paper's runs on COCO / ADE20K with
8 GPUs) are listed in NOT_RUN, each with the reason. `make env`,
`make env-oldest` and `make test-oldest` are run by CI (.ci/run), not by a
test; the map says so.
"""
import ast
import functools
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(REPO, 'README.md')
# Inline code spans that are commands (not config snippets or paths).
COMMAND_WORDS = ('make', 'python', 'bash', 'mim', 'pip', '.venv/bin/python',
                 'tensorboard')
# ... and spans that run a script of the repository directly.
SCRIPT_PREFIX = 'tools/'

# (pattern on the command, where it is exercised). A place is
# 'tests/<file>.py::<test>' (the test must exist) or '<file>: <text>' (the
# file must contain the text: how the command is wired to a test or to CI).
COVERAGE: List[Tuple[str, Tuple[str, ...]]] = [
    (r'^make demo$', (
        'Makefile: demo/main_job.py',
        'tests/test_main_job/test_outputs.py::test_progress_is_shown',
    )),
    (r'^make test$', ('.ci/run: make test', )),
    # docs/deploy_app.md: the ONNX Runtime export of the tutorial's
    # detector and the application on it (the same deploy config and app
    # on the trained main-job Mask R-CNN).
    (r'^python /path/to/mmnextvit/(tools/deployment/deploy\.py '
     r'my_project/my_detector\.py \S+ --deploy-cfg mmnextvit::deploy/'
     r'instance-seg_onnxruntime_dynamic\.py|demo/deployed_app\.py '
     r'work_dirs/my_detector_onnxruntime) ', (
         'tests/test_deployed_app.py::test_demo_detections_equal_the_tools',
         'tests/test_deploy.py::test_deploy_configs_by_package_name', )),
    (r'^pip install mmdeploy-runtime==1\.3\.1$', (
        'requirements/deploy.txt: mmdeploy-runtime==1.3.1',
        'tests/test_deployed_app.py::'
        'test_mmdeploy_runtime_detector_gives_the_tools_predictions',
    )),
    (r'^python mmdeploy/tools/(deploy|test)\.py configs/deploy/', (
        'tests/test_mmdeploy_tools.py::'
        'test_mmdeploy_tools_export_run_and_evaluate', )),
    (r'^tools/test\.py --precision bf16$',
     ('tests/test_tools.py::test_test_tool_bf16_on_the_shapes_config', )),
    (r'^pip install -e \.$',
     ('tools/setup_env.sh: --no-build-isolation -e .', )),
    (r'^(\.venv/bin/)?python tools/model_converters/nextvit2mmengine\.py ', (
        'tests/test_weights.py::'
        'test_converter_writes_a_clean_backbone_checkpoint', )),
    (r'^python tools/train\.py CONFIG ', (
        'tests/test_tools.py::test_train_writes_checkpoint',
        'tests/test_tools.py::test_resume_continues_iteration_counter',
        'tests/test_tools.py::test_amp_recipe_trains_in_fp32_without_cuda',
        'tests/test_curves.py::test_train_writes_tensorboard_events',
    )),
    (r'^python tools/test\.py CONFIG CKPT ', (
        'tests/test_tools.py::test_test_tool_evaluates_checkpoint',
        'tests/test_seg_training.py::'
        'test_multi_scale_flip_testing_on_our_checkpoint',
    )),
    (r'^bash tools/dist_train\.sh CONFIG NUM_PROCESSES', (
        'tests/test_tools.py::test_dist_train_two_cpu_processes', )),
    (r'^bash tools/dist_test\.sh CONFIG CKPT NUM_PROCESSES', (
        'tests/test_tools.py::test_dist_test_two_cpu_processes', )),
    (r'^bash tools/slurm_train\.sh ', (
        'tests/test_tools.py::test_slurm_train_on_cpu_nodes', )),
    (r'^python tools/infer\.py CONFIG IMAGE_OR_FOLDER ', (
        'tests/test_tools.py::test_infer_writes_pictures',
        'tests/test_seg_training.py::test_infer_tool_writes_overlays',
    )),
    (r'^python tools/analysis_tools/plot_curves\.py ', (
        'tests/test_curves.py::test_plots_an_iteration_based_run',
        'tests/test_curves.py::test_plots_an_epoch_based_run',
        'demo/main_job.py: tools/analysis_tools/plot_curves.py',
    )),
    (r'^python tools/analysis_tools/get_flops\.py ', (
        'tests/test_configs_mask_rcnn.py::'
        'test_get_flops_counts_multiply_adds', )),
    (r'^python tools/analysis_tools/precision_error\.py ', (
        'tests/test_tools.py::test_precision_error_reports_each_stage', )),
    (r'^python tools/analysis_tools/benchmark\.py', (
        'tests/test_benchmark_tools.py::'
        'test_benchmark_table_json_and_chart',
        'tests/test_benchmark_tools.py::'
        'test_benchmark_whole_model_in_onnxruntime',
    )),
    (r'^bash tools/analysis_tools/gpu_benchmark\.sh --prepare ', (
        'tests/test_gpu_benchmark.py::'
        'test_prepare_brings_the_pinned_wheels_only', )),
    # Run on a GPU machine on 2026-12-04 (docs/benchmarks.md, "GPU"); here
    # the same script with the same wheels, on the CPU.
    (r'^OUT=results bash tools/analysis_tools/gpu_benchmark\.sh --wheels ', (
        'tests/test_gpu_benchmark.py::test_rehearsal_measures_every_cell',
        'docs/benchmarks.md: --wheels .gpu_wheels',
    )),
    (r'^bash tools/analysis_tools/gpu_benchmark\.sh --wheels \S+ '
     r'--cpu-rehearsal$', (
         'tests/test_gpu_benchmark.py::test_rehearsal_measures_every_cell',
         'tests/test_gpu_benchmark.py::'
         'test_rehearsal_runs_without_compiled_mmcv_ops',
     )),
    (r'^python tools/deployment/export_onnx\.py', (
        'tests/test_export_onnx.py::'
        'test_backbone_dynamic_export_matches_pytorch',
        'tests/test_export_onnx.py::'
        'test_a_whole_model_config_points_to_the_deploy_tool',
    )),
    (r'^pip install -e \.\[deploy\] && pip install --no-deps '
     r'mmdeploy==1\.3\.1$', (
         'tools/setup_env.sh: --no-deps "mmdeploy==$MMDEPLOY_VERSION"',
         'tools/setup_env.sh: -r requirements/deploy.txt',
         'setup.py: requirements/deploy.txt',
     )),
    (r'^python tools/deployment/deploy\.py CONFIG CKPT --deploy-cfg ', (
        'tests/test_deploy.py::test_mask_rcnn_export_matches_pytorch',
        'tests/test_deploy.py::'
        'test_segmentor_dynamic_export_matches_at_two_sizes_and_evaluates',
        'tests/test_deploy.py::'
        'test_segmentor_openvino_static_export_through_the_tool',
    )),
    (r'^(python )?tools/deployment/deploy\.py CONFIG CKPT --deploy-cfg '
     r'configs/deploy/\S+-int8_\S+ ', (
         'tests/test_seg_training.py::'
         'test_int8_segmentor_keeps_the_float_model_s_miou',
         'tests/test_main_job/test_int8.py::'
         'test_int8_detector_keeps_the_float_model_s_ap',
     )),
    (r'^python tools/analysis_tools/precision_error\.py \S+ CKPT '
     r'--precision int8', (
         'tests/test_quantize.py::test_precision_error_in_int8', )),
    (r'^mim train mmdet CONFIG$', (
        'tests/test_tools.py::test_mim_train_runs_stock_mmdet_train_py', )),
    (r'^mim test mmdet CONFIG --checkpoint CKPT$', (
        'tests/test_tools.py::'
        'test_mim_test_runs_stock_mmdet_test_py_on_our_checkpoint', )),
    # The paper's runs: the same tools on the full configs with COCO /
    # ADE20K and 8 GPUs. Tested here: the configs build the upstream models
    # and load released checkpoints, and the tools run those configs'
    # derivatives on small data with two CPU processes.
    (r'^bash tools/dist_train\.sh configs/mask_rcnn/nextvit_s_1x\.py 8$', (
        'tests/test_configs_mask_rcnn.py::'
        'test_config_builds_the_upstream_detector',
        'tests/test_tools.py::test_stock_train_py_with_a_downstream_config',
        'tests/test_tools.py::test_dist_train_two_cpu_processes',
    )),
    (r'^python tools/test\.py configs/mask_rcnn/nextvit_s_1x\.py ', (
        'tests/test_configs_mask_rcnn.py::'
        'test_upstream_checkpoint_loads_without_missing_keys',
        'tests/test_tools.py::test_test_tool_evaluates_checkpoint',
    )),
    (r'^bash tools/dist_train\.sh configs/upernet/nextvit_s_160k\.py 8$', (
        'tests/test_configs_seg.py::'
        'test_config_builds_the_upstream_segmentor',
        'tests/test_seg_training.py::'
        'test_two_process_cpu_training_of_a_sync_bn_config',
    )),
    (r'^python tools/test\.py configs/upernet/nextvit_s_160k\.py CKPT '
     r'--tta$',
     ('tests/test_configs_seg.py::test_multi_scale_flip_testing',
      'tests/test_seg_training.py::'
      'test_multi_scale_flip_testing_on_our_checkpoint')),
    (r'^tools/dist_train\.sh CONFIG 2$', (
        'tests/test_tools.py::test_dist_train_two_cpu_processes', )),
    (r'^tools/train\.py CONFIG --tensorboard$', (
        'tests/test_curves.py::test_train_writes_tensorboard_events', )),
    # What `tensorboard --logdir` reads, read by TensorBoard's own loader.
    (r'^tensorboard --logdir WORK_DIR$', (
        'tests/test_curves.py::test_train_writes_tensorboard_events', )),
    (r'^pip install tensorboard$', (
        'requirements/tests.txt: tensorboard',
        'tests/test_curves.py::test_train_writes_tensorboard_events',
    )),
    (r'^python -c "import mmnextvit, runpy, sys;', (
        'tests/test_tools.py::test_stock_train_py_with_a_downstream_config',
    )),
    # The quick starts (README.md, docs/train.md): the docs' configs in a
    # project folder outside the repository, the tools called by path.
    (r'^cd my_project_root$', (
        'tests/test_quickstart.py::'
        'test_the_tutorial_chain_runs_from_a_project_folder', )),
    (r'^python /path/to/mmnextvit/tools/train\.py my_project/my_detector\.py$',
     ('tests/test_quickstart.py::'
      'test_the_tutorial_chain_runs_from_a_project_folder', )),
    (r'^python /path/to/mmnextvit/tools/train\.py '
     r'my_project/my_segmentor\.py$',
     ('tests/test_quickstart.py::'
      'test_segmentation_quickstart_trains_from_a_project_folder', )),
    (r'^bash /path/to/mmnextvit/tools/dist_train\.sh my_project/my_\w+\.py '
     r'\d( --auto-scale-lr)?$', (
         'tests/test_tools.py::test_dist_train_two_cpu_processes',
         'tools/dist_train.sh: $ROOT/tools/train.py',
         'tests/test_quickstart.py::'
         'test_the_tutorial_chain_runs_from_a_project_folder',
     )),
    (r'^python /path/to/mmnextvit/tools/test\.py my_project/my_detector\.py ',
     ('tests/test_tools.py::test_test_tool_evaluates_checkpoint',
      'tests/test_quickstart.py::'
      'test_the_tutorial_chain_runs_from_a_project_folder')),
    (r'^pip install (-e )?/path/to/mmnextvit$', (
        'tests/test_downstream.py::'
        'test_wheel_installs_into_a_fresh_environment',
        'tests/test_downstream.py::test_inherit_by_package_name',
    )),
    (r'^mim train mmdet$', (
        'tests/test_tools.py::test_mim_train_runs_stock_mmdet_train_py', )),
    (r'^tools/test\.py CONFIG CKPT --precision bf16$',
     ('tests/test_tools.py::test_test_tool_bf16_on_the_shapes_config', )),
    (r'^tools/test\.py --out$', (
        'tests/test_tools.py::test_test_tool_evaluates_checkpoint',
        'tools/test.py: cfg.test_evaluator.output_dir = args.out',
    )),
    (r'^bash tools/analysis_tools/gpu_benchmark\.sh --wheels '
     r'\.gpu_wheels( |$)',
     ('tests/test_gpu_benchmark.py::test_rehearsal_measures_every_cell',
      'docs/benchmarks.md: --compile-mode reduce-overhead')),
    # docs/reliability.md: each command beside the test that runs it.
    (r'^tools/(dist_)?train\.(py|sh)( CONFIG 2)? --resume( FILE)?$', (
        'tests/test_crash_resume.py::'
        'test_sigkill_during_save_then_resume_matches_uninterrupted',
        'tests/test_crash_resume.py::'
        'test_two_processes_one_killed_ends_the_job_then_resumes',
        'tests/test_safe_loading.py::test_our_tools_refuse',
    )),
    (r'^tools/train\.py --cfg-options$', (
        'tests/test_bad_input.py::test_bad_backbone_settings', )),
    (r'^tools/dist_train\.sh \.\.\. --cfg-options env_cfg\.dist_cfg\.timeout=',
     ('tests/test_tools.py::test_cpu_dist_env_from_launchers', )),
    # Installation (README.md, docs/install.md). CI (.ci/run) runs `make
    # test` and `make test-oldest`, whose prerequisites are `make env` and
    # `make env-oldest`; `make env-oldest` runs GPU route 1's commands
    # (tools/setup_env.sh's `route` lines), which tests/test_install.py
    # holds equal to the page's, on the CPU with a locally built mmcv wheel
    # standing in for OpenMMLab's CUDA one.
    (r'^make env$', ('.ci/run: make test', 'Makefile: test: env')),
    (r'^make (env|test)-oldest$',
     ('.ci/run: make test-oldest', 'Makefile: test-oldest: env-oldest')),
    (r'^(python3\.11 -m venv venv && source venv/bin/activate'
     r'|export PIP_CONSTRAINT=\$PWD/requirements/oldest\.txt'
     r'|pip install torch==2\.1\.0|pip install -U openmim'
     r'|pip install mmengine==0\.10\.7|mim install mmcv==2\.1\.0'
     r'|pip install mmdet==3\.3\.0 mmsegmentation==1\.2\.2|mim install)$', (
         'tests/test_install.py::test_route_one_is_what_make_env_oldest_runs',
         '.ci/run: make test-oldest',
     )),
    (r"^pip install (--no-deps mmdeploy==1\.3\.1|-e '\.\[deploy\]')$", (
        'tests/test_install.py::test_route_one_is_what_make_env_oldest_runs',
        "tools/setup_env.sh: route pip install -e '.[deploy]'",
        'tools/setup_env.sh: route pip install --no-deps mmdeploy==1.3.1',
    )),
    # docs/benchmarks.md: each measuring command at a tiny size.
    (r'^python tools/analysis_tools/profile_nextvit\.py ', (
        'tests/test_docs_tools.py::'
        'test_profile_nextvit_reports_parts_and_operators', )),
    (r'^python tools/analysis_tools/train_cost\.py iteration ', (
        'tests/test_docs_tools.py::'
        'test_train_cost_iteration_times_each_config', )),
    (r'^python tools/analysis_tools/train_cost\.py checkpointing ', (
        'tests/test_benchmark_tools.py::'
        'test_checkpointing_report_has_identical_gradients', )),
    (r'^python tools/deployment/export_onnx\.py .* --bench ', (
        'tests/test_docs_tools.py::'
        'test_export_onnx_bench_times_both_runtimes', )),
    # The shell loop around benchmark.py --engine $1 --precision $2: each
    # engine and precision it names is one case of this test.
    (r'^(for run in "eager fp32" "eager bf16" "compile fp32" '
     r'"onnxruntime fp32" "openvino fp32" "openvino bf16"; do|set -- \$run'
     r'|done)$', ('tests/test_benchmark_tools.py::test_benchmark_engines', )),
    # docs/tutorial.md: the chain, command for command, from a project
    # folder outside the repository.
    (r'^python /path/to/mmnextvit/(tools/deployment/deploy\.py '
     r'my_project/my_detector\.py \S+ --deploy-cfg mmnextvit::deploy/'
     r'instance-seg_openvino-int8_dynamic\.py|demo/deployed_app\.py '
     r'work_dirs/my_detector_openvino_int8) ', (
         'tests/test_quickstart.py::'
         'test_the_tutorial_chain_runs_from_a_project_folder', )),
    # The config READMEs' CPU runs and launchers.
    (r'^tools/dist_train\.sh CONFIG N$', (
        'tests/test_tools.py::test_dist_train_two_cpu_processes', )),
    (r'^python tools/dataset_converters/make_seg_shapes\.py$', (
        'tests/test_seg_data.py::test_generator_command_line', )),
    (r'^python tools/train\.py configs/bundled_data/nextvit_s_seg-shapes-cpu'
     r'\.py --cfg-options randomness\.seed=0$', (
         'tests/test_seg_training.py::test_training_learns_the_shapes', )),
    (r'^python tools/test\.py configs/bundled_data/nextvit_s_seg-shapes-cpu'
     r'\.py \S+\.pth$', (
         'tests/test_seg_training.py::test_mim_train_runs_our_config',
         'tests/test_seg_training.py::'
         'test_multi_scale_flip_testing_on_our_checkpoint',
     )),
    (r'^python tools/infer\.py configs/(bundled_data|semfpn)/\S+ \S+ '
     r'--weights ', (
         'tests/test_seg_training.py::test_infer_tool_writes_overlays', )),
    (r'^mim train( mmsegmentation( configs/semfpn/nextvit_s_40k-bs32\.py)?)?$',
     ('tests/test_seg_training.py::test_mim_train_runs_our_config',
      'tests/test_tools.py::test_mim_train_runs_stock_mmdet_train_py')),
]

# Not run here, and why.
NOT_RUN: Dict[str, str] = {
    r'^hf download timm/': 'downloads weights from the Hugging Face hub, '
    'which this machine does not reach; the file it writes converts and '
    'loads as tests/test_weights.py::'
    'test_converter_writes_a_clean_backbone_checkpoint checks on a file in '
    "timm's safetensors layout",
    r"^pip install -e '\.\[optional\]'$": 'the optional extras '
    '(tensorboard, matplotlib, huggingface_hub, ...) are not installed by '
    '`make env`, which installs requirements/tests.txt and deploy.txt',
    # GPU route 2 (docs/install.md): a CUDA build of torch and mmcv's CUDA
    # ops compiled with nvcc.
    r'^(pip install torch==2\.13\.0|pip install -r requirements/build\.txt'
    r'|FORCE_CUDA=1 MMCV_WITH_OPS=1 .* pip install --no-build-isolation '
    r'mmcv==2\.1\.0|pip install -r requirements/runtime\.txt)$':
    'GPU route 2 needs a GPU and the CUDA toolkit together, which no '
    'machine that tests this package has (the page says so); `make env` '
    'runs the same steps for the CPU build of torch',
    # The paper's runs (config READMEs) on COCO / ADE20K with upstream's
    # released checkpoints and 8 GPUs.
    r'^python tools/train\.py configs/mask_rcnn/nextvit_s_1x\.py '
    r'--work-dir ': 'trains on COCO, which is not on these machines; '
    'tests/test_configs_mask_rcnn.py::test_config_builds_the_upstream_'
    'detector builds this config and tests/test_tools.py::'
    'test_train_writes_checkpoint runs tools/train.py on the bundled data',
    r'^bash tools/dist_train\.sh configs/semfpn/nextvit_s_40k-bs32\.py 8$':
    'needs 8 GPUs and ADE20K; tests/test_configs_seg.py builds the config '
    'and tests/test_seg_training.py::test_two_process_cpu_training_of_a_'
    'sync_bn_config trains a SyncBN derivative in two CPU processes',
    r'^(python tools/test\.py|bash tools/dist_test\.sh) configs/(mask_rcnn|'
    r'semfpn|upernet)/\S+ checkpoints/\S+\.pth( 8)?( --tta)?$':
    "evaluates upstream's released checkpoint on COCO / ADE20K val (8 GPUs "
    'for dist_test.sh): neither the data, the Google Drive files nor the '
    'GPUs are here; tests/test_configs_*.py::test_upstream_checkpoint_loads'
    '_without_missing_keys load files in those layouts into these configs, '
    'and tests/test_tools.py runs test.py and dist_test.sh (2 CPU '
    'processes) on the bundled data',
}


def doc_files() -> List[str]:
    """README.md, the pages of docs/ and the configs' READMEs: every page
    a user runs commands from."""
    docs = osp.join(REPO, 'docs')
    configs = osp.join(REPO, 'configs')
    return [README] + sorted(
        osp.join(docs, name) for name in os.listdir(docs)
        if name.endswith('.md')) + sorted(
            osp.join(configs, name, 'README.md')
            for name in os.listdir(configs)
            if osp.isfile(osp.join(configs, name, 'README.md')))


def readme_commands() -> List[str]:
    """The commands of the README and docs/*.md, one string each."""
    commands = []
    for path in doc_files():
        with open(path, encoding='utf-8') as f:
            commands += page_commands(f.read())
    return commands


# Fenced blocks read as shell: tagged so, or not tagged at all (the lines of
# an untagged block that start like a command).
SHELL_TAGS = ('bash', 'sh', 'shell', 'console')
# Shell words a command of an untagged block may start with, besides
# COMMAND_WORDS and the repository's tools/.
SHELL_WORDS = ('for', 'do', 'done', 'set', 'cd', 'export', 'git', 'hf',
               'huggingface-cli', 'srun', 'sbatch', 'OUT=results')


def _starts_a_command(line: str) -> bool:
    words = line.split()
    while words and re.match(r'^[A-Z_]+=\S*$', words[0]):
        words = words[1:]  # environment assignments before the command
    return bool(words) and (words[0] in COMMAND_WORDS + SHELL_WORDS
                            or words[0].startswith(SCRIPT_PREFIX)
                            or words[0].startswith('bash'))


def page_commands(text: str) -> List[str]:
    """The commands of one Markdown page: the lines of its shell blocks
    (tagged ``bash`` and the like, or untagged ones whose lines start like
    commands) and the inline code spans that start with a command."""
    commands = []
    for tag, block in re.findall(r'```([\w+-]*)[^\n]*\n(.*?)```', text,
                                 re.S):
        if tag and tag not in SHELL_TAGS:
            continue
        for line in block.replace('\\\n', ' ').splitlines():
            # The line as written (quoted one-liners stay readable),
            # without its trailing comment and extra spaces.
            command = ' '.join(re.split(r'(^|\s)#', line)[0].split())
            if command and (tag or _starts_a_command(command)):
                commands.append(command)
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    for span in re.findall(r'`([^`\n]+)`', prose):
        words = span.split()
        if len(words) > 1 and (words[0] in COMMAND_WORDS
                               or words[0].startswith(SCRIPT_PREFIX)):
            commands.append(' '.join(span.split()))
    return commands


def _exists(place: str) -> bool:
    if '::' in place:
        path, name = place.split('::')
        with open(osp.join(REPO, path), encoding='utf-8') as f:
            tree = ast.parse(f.read())
        return any(
            isinstance(node, ast.FunctionDef) and node.name == name
            for node in tree.body)
    path, needle = place.split(': ', 1)
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return needle in f.read()


def test_the_readme_has_commands():
    commands = readme_commands()
    assert 'make demo' in commands and 'make test' in commands
    assert len(commands) >= 20


@pytest.mark.parametrize('command', readme_commands())
def test_every_readme_command_is_exercised(command):
    covered = [places for pattern, places in COVERAGE
               if re.search(pattern, command)]
    skipped = [why for pattern, why in NOT_RUN.items()
               if re.search(pattern, command)]
    assert covered or skipped, (
        f'README command not exercised by any test: {command!r}; add a '
        'test and list it in COVERAGE')
    for places in covered:
        for place in places:
            assert _exists(place), f'{command!r}: {place} is not there'


def test_the_coverage_table_has_no_stale_entries():
    commands = readme_commands()
    for pattern, _ in COVERAGE:
        assert any(re.search(pattern, c) for c in commands), pattern
    for pattern in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), pattern


def tool_flags() -> List[Tuple[str, str, str]]:
    """(command, script, flag) for every ``--flag`` the docs give a
    repository tool (``tools/...``), in a command or a usage line."""
    found = []
    for command in readme_commands():
        words = command.split()
        scripts = [
            w for w in words if re.search(r'(^|/)tools/\S+\.(py|sh)$', w)
        ]
        if not scripts:
            continue
        script = 'tools/' + scripts[0].split('tools/', 1)[1]
        if scripts[0].startswith('mmdeploy/'):
            # mmdeploy's own tools, whose calls and options this mirrors.
            script = 'tests/mmdeploy_tools.py'
        for word in words[words.index(scripts[0]) + 1:]:
            flag = re.match(r'\[?(--[a-z][a-z0-9-]*)', word)
            if flag:
                found.append((command, script, flag.group(1)))
    return found


def _argument_flags(tree: ast.AST) -> Dict[str, set]:
    """``{function name: flags}`` of the ``add_argument('--flag', ...)``
    calls inside each function of ``tree`` (``''`` for module level)."""
    found: Dict[str, set] = {}

    def visit(node, owner):
        for child in ast.iter_child_nodes(node):
            name = owner
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if (isinstance(child, ast.Call)
                    and isinstance(child.func, ast.Attribute)
                    and child.func.attr == 'add_argument'):
                found.setdefault(name, set()).update(
                    arg.value for arg in child.args
                    if isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and arg.value.startswith('--'))
            visit(child, name)

    visit(tree, '')
    return found


def _parse(path: str) -> ast.AST:
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read())


@functools.lru_cache(maxsize=None)
def _library_argument_helpers() -> Dict[str, set]:
    """The functions of the package that add options to a parser (e.g.
    ``add_cfg_options``), with their flags."""
    helpers: Dict[str, set] = {}
    for folder, _, files in os.walk(osp.join(REPO, 'mmnextvit')):
        for name in files:
            if name.endswith('.py'):
                for owner, flags in _argument_flags(
                        _parse(osp.join(folder, name))).items():
                    if owner:
                        helpers.setdefault(owner, set()).update(flags)
    return helpers


@functools.lru_cache(maxsize=None)
def tool_options(script: str) -> set:
    """The options a repository tool's parser defines: its own
    ``add_argument`` calls and those of the package functions it calls to
    build it; for a shell launcher, the options of the tool it launches
    (a tools/ script it names) and the options it handles itself."""
    path = osp.join(REPO, script)
    if script.endswith('.sh'):
        with open(path, encoding='utf-8') as f:
            text = f.read()
        # ``case`` patterns (``--flag)``) and tests (``= --flag ]``).
        options = set(
            re.findall(r'^\s*(--[a-z][a-z0-9-]*)[|)]', text, re.M)
            + re.findall(r'= (--[a-z][a-z0-9-]*) \]', text))
        for launched in set(re.findall(r'tools/[\w/]+\.py', text)):
            options |= tool_options(launched)
        return options
    tree = _parse(path)
    options = set().union(*_argument_flags(tree).values())
    called = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree) if isinstance(node, ast.Call)
        and isinstance(node.func, (ast.Name, ast.Attribute))
    }
    for name, flags in _library_argument_helpers().items():
        if name in called:
            options |= flags
    return options


def test_the_docs_give_tools_flags():
    assert len(tool_flags()) >= 20


@pytest.mark.parametrize('command,script,flag', tool_flags())
def test_every_flag_the_docs_show_exists(command, script, flag):
    assert osp.isfile(osp.join(REPO, script)), f'{command!r}: no {script}'
    assert flag in tool_options(script), (
        f'{command!r}: {script} has no option {flag}')


def test_a_flag_named_only_in_a_message_is_not_an_option(
        tmp_path, monkeypatch):
    """Control: an option counts only where a parser adds it, not where a
    message or help text names it."""
    tool = tmp_path / 'tools' / 'tool.py'
    tool.parent.mkdir()
    tool.write_text(
        'import argparse\n'
        'parser = argparse.ArgumentParser()\n'
        "parser.add_argument('--real', help='not --fake')\n"
        "print('use --precision')\n")
    monkeypatch.setattr(sys.modules[__name__], 'REPO', str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], '_library_argument_helpers',
                        lambda: {})
    tool_options.cache_clear()
    try:
        assert tool_options('tools/tool.py') == {'--real'}
    finally:
        tool_options.cache_clear()
