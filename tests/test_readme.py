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
removed while the README still points at it. The GPU installation lines are
the only commands tied to nothing; they are listed below with the reason.
"""
import ast
import os
import os.path as osp
import re
import shlex
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
    (r'^python demo/deployed_app\.py ', (
        'tests/test_deployed_app.py::test_demo_detections_equal_the_tools',
        'tests/test_deployed_app.py::test_demo_label_maps_equal_the_tools',
    )),
    (r'^python tools/deployment/deploy\.py configs/semfpn/\S+ \S+\.pth '
     r'--deploy-cfg ', (
        'tests/test_deployed_app.py::test_demo_label_maps_equal_the_tools',
        'tests/test_deploy.py::'
        'test_segmentor_dynamic_export_matches_at_two_sizes_and_evaluates',
     )),
    (r'^pip install mmdeploy-runtime==1\.3\.1$', (
        'requirements/deploy.txt: mmdeploy-runtime==1.3.1',
        'tests/test_deployed_app.py::'
        'test_mmdeploy_runtime_detector_loads_the_work_dir',
    )),
    (r'^python mmdeploy/tools/(deploy|test)\.py configs/deploy/', (
        'tests/test_mmdeploy_tools.py::'
        'test_mmdeploy_tools_export_run_and_evaluate', )),
    (r'^make test-quick$',
     ('Makefile: -m "not slow"', 'tests/conftest.py: SLOW_MODULES')),
    (r'^tools/test\.py --precision bf16$',
     ('tests/test_tools.py::test_test_tool_bf16_on_the_shapes_config', )),
    (r'^python -m venv \.venv && \. \.venv/bin/activate$',
     ('tools/setup_env.sh: -m venv', )),
    (r'^pip install -e \.$',
     ('tools/setup_env.sh: --no-build-isolation -e .', )),
    (r'^\.venv/bin/python tools/model_converters/nextvit2mmengine\.py ', (
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
    (r'^tools/train\.py configs/bundled_data/nextvit_s_seg-shapes-cpu\.py$',
     ('tests/test_seg_training.py::test_training_learns_the_shapes', )),
    (r'^tools/deployment/deploy\.py \.\.\. --test$', (
        'tests/test_deploy.py::'
        'test_segmentor_openvino_static_export_through_the_tool', )),
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
        'test_coco_quickstart_trains_from_a_project_folder', )),
    (r'^python /path/to/mmnextvit/tools/train\.py my_project/my_detector\.py$',
     ('tests/test_quickstart.py::'
      'test_coco_quickstart_trains_from_a_project_folder', )),
    (r'^python /path/to/mmnextvit/tools/train\.py '
     r'my_project/my_segmentor\.py$',
     ('tests/test_quickstart.py::'
      'test_segmentation_quickstart_trains_from_a_project_folder', )),
    (r'^bash /path/to/mmnextvit/tools/dist_train\.sh my_project/my_\w+\.py '
     r'\d$', (
         'tests/test_tools.py::test_dist_train_two_cpu_processes',
         'tools/dist_train.sh: $ROOT/tools/train.py',
         'tests/test_quickstart.py::'
         'test_coco_quickstart_trains_from_a_project_folder',
     )),
    (r'^python /path/to/mmnextvit/tools/test\.py my_project/my_detector\.py ',
     ('tests/test_tools.py::test_test_tool_evaluates_checkpoint',
      'tests/test_quickstart.py::'
      'test_coco_quickstart_trains_from_a_project_folder')),
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
]

# Not run here, and why.
NOT_RUN: Dict[str, str] = {
    r'^pip install torch==2\.1\.0 --index-url https://download\.pytorch\.org'
    r'/whl/cu121$': 'installs a CUDA build of torch: no GPU on this machine',
    r'^pip install -U openmim "setuptools<82" && mim install mmcv==2\.1\.0$':
    'downloads a CUDA mmcv wheel from the OpenMMLab index, for GPU users',
    r'^huggingface-cli download timm/': 'downloads weights from the Hugging '
    'Face hub, which this machine does not reach; the files it gives load '
    'as tests/test_weights.py::test_each_layout_loads_every_tensor checks',
}


def doc_files() -> List[str]:
    """README.md and the pages of docs/: every page a user runs commands
    from."""
    docs = osp.join(REPO, 'docs')
    return [README] + sorted(
        osp.join(docs, name) for name in os.listdir(docs)
        if name.endswith('.md'))


def readme_commands() -> List[str]:
    """The commands of the README and docs/*.md, one string each."""
    commands = []
    for path in doc_files():
        with open(path, encoding='utf-8') as f:
            commands += page_commands(f.read())
    return commands


def page_commands(text: str) -> List[str]:
    """The commands of one Markdown page."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            if words:
                # Keep the quoted one-liners readable: the line as written,
                # without its trailing comment and extra spaces.
                command = line
                if '#' in line and len(shlex.split(line)) > len(words):
                    command = line[:line.rindex('#')]
                commands.append(' '.join(command.split()))
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


def _defines_flag(script: str, flag: str) -> bool:
    """Whether the tool (or the harness it parses its arguments with, or
    for a launcher the tool it launches) defines ``flag``."""
    sources = [osp.join(REPO, script)]
    if script.endswith('.sh'):
        # A launcher passes its other arguments on to a Python tool.
        sources += [osp.join(REPO, 'tools', 'train.py'),
                    osp.join(REPO, 'tools', 'test.py')]
        beside = osp.join(REPO, script[:-len('.sh')] + '.py')
        if osp.isfile(beside):
            sources.append(beside)
    for folder in ('cli', 'analysis'):
        root = osp.join(REPO, 'mmnextvit', folder)
        sources += [osp.join(root, f) for f in os.listdir(root)
                    if f.endswith('.py')]
    for path in sources:
        with open(path, encoding='utf-8') as f:
            if re.search(rf"""['"]{re.escape(flag)}['"= ]""", f.read()):
                return True
    return False


def test_the_docs_give_tools_flags():
    assert len(tool_flags()) >= 20


@pytest.mark.parametrize('command,script,flag', tool_flags())
def test_every_flag_the_docs_show_exists(command, script, flag):
    assert osp.isfile(osp.join(REPO, script)), f'{command!r}: no {script}'
    assert _defines_flag(script, flag), (
        f'{command!r}: {script} has no option {flag}')
