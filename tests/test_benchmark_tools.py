"""The speed and cost tools run end to end on tiny inputs and write what
they promise (no timing is asserted: the numbers depend on the machine)."""
import json
import os.path as osp
import statistics
import subprocess
import sys

import pytest
from helpers import assert_one_line_error

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools', 'analysis_tools')


def run(*args, check=True):
    result = subprocess.run([sys.executable, *map(str, args)],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_benchmark_table_json_and_chart(tmp_path):
    out_json, out_png = tmp_path / 'b.json', tmp_path / 'b.png'
    result = run(
        osp.join(TOOLS, 'benchmark.py'), '--models', 'nextvit-s-deploy',
        'resnet101', '--sizes', '64x96', '--reps', 2, '--warmup', 0,
        '--matmul-size', 128, '--threads', 1, '--json', out_json, '--png',
        out_png)
    assert 'nextvit-s-deploy' in result.stdout and 'ceiling' in result.stdout
    data = json.loads(out_json.read_text())
    rows = {r['model']: r for r in data['results']}
    assert set(rows) == {'nextvit-s-deploy', 'resnet101'}
    assert all(len(r['times_ms']) == 2 for r in rows.values())
    for row in rows.values():
        assert row['median_ms'] == pytest.approx(
            statistics.median(row['times_ms']))
    # Next-ViT's ratio is its median over ResNet-101's, both of this run.
    assert rows['nextvit-s-deploy']['ratio'] == pytest.approx(
        rows['nextvit-s-deploy']['median_ms'] /
        rows['resnet101']['median_ms'])
    # FLOPs of Next-ViT-S at 64x96 include the attention (rule of
    # get_flops.py), and the ceiling was measured in the same run.
    assert rows['nextvit-s-deploy']['gflops'] > 0
    assert data['machine']['ceiling_gflop_per_s'] > 0
    assert set(data['machine']['ceiling_kernels_gflop_per_s']) == {
        'matmul 128', 'conv1x1 128', 'conv3x3 256@128x128'}
    assert out_png.stat().st_size > 1000


def test_benchmark_bad_arguments_are_one_line():
    result = run(osp.join(TOOLS, 'benchmark.py'), '--models', 'resnet18',
                 check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[0]
    ]
    assert "unknown model(s) ['resnet18']" in result.stderr
    result = run(osp.join(TOOLS, 'benchmark.py'), '--sizes', '800-1216',
                 check=False)
    assert result.returncode == 2 and "'800-1216' is not HxW" in \
        result.stderr


@pytest.mark.parametrize('tool,args', [
    ('benchmark.py', ['--sizes', '224x224', '16x224']),
    ('train_cost.py', ['checkpointing', '--size', '16x224']),
    ('profile_nextvit.py', ['--sizes', '16x224']),
])
def test_tools_refuse_sizes_next_vit_cannot_take(tool, args):
    result = run(osp.join(TOOLS, tool), *args, check=False)
    assert result.returncode == 2
    assert "size '16x224' is too small; use at least 32x32" in \
        result.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in result.stderr


def test_parse_image_size():
    from mmnextvit.cli.args import parse_image_size
    assert parse_image_size('800x1216') == (800, 1216)
    assert parse_image_size('32X48') == (32, 48)
    for text in ('800', '800x', 'x1216', '800x1216x3', 'axb', ''):
        with pytest.raises(ValueError, match='is not HxW'):
            parse_image_size(text)
    with pytest.raises(ValueError, match='too small'):
        parse_image_size('31x1216')


def test_checkpointing_report_has_identical_gradients():
    result = run(osp.join(TOOLS, 'train_cost.py'), 'checkpointing', '--size',
                 '64x96', '--threads', 1)
    assert 'bit-identical' in result.stdout
    assert 'with_cp=True' in result.stdout


KEEP_CHECK = """
import resource
from mmnextvit.analysis.memory import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
block = bytearray(64 << 20)
block[::4096] = b'x' * len(block[::4096])
del block
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 << 20)
block[::4096] = b'x' * len(block[::4096])
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def test_keep_freed_memory_reuses_large_blocks():
    """A 64 MiB block freed and asked for again is page-faulted afresh with
    glibc's defaults (its own mmap) and not when freed memory is kept."""
    faults = {}
    for keep in (False, True):
        result = subprocess.run(
            [sys.executable, '-c', KEEP_CHECK.format(keep=keep)],
            capture_output=True, text=True, check=True)
        faults[keep] = int(result.stdout.split()[-1])
    pages = (64 << 20) // 4096
    assert faults[False] > pages // 2
    assert faults[True] < pages // 20


def test_benchmark_keep_memory_is_recorded(tmp_path):
    out_json = tmp_path / 'k.json'
    result = run(
        osp.join(TOOLS, 'benchmark.py'), '--models', 'nextvit-s-deploy',
        '--sizes', '64x96', '--reps', 1, '--warmup', 0, '--matmul-size', 128,
        '--threads', 1, '--no-flops', '--keep-memory', '--json', out_json)
    assert 'allocator: freed memory kept' in result.stdout
    data = json.loads(out_json.read_text())
    assert data['machine']['allocator'].startswith('freed memory kept')
    # No peak memory: the kept heap would hide part of it.
    assert data['results'][0]['peak_mib'] is None


@pytest.mark.parametrize('engine, precision', [
    ('onnxruntime', 'fp32'),
    ('openvino', 'fp32'),
    ('eager', 'bf16'),
])
def test_benchmark_engines(tmp_path, engine, precision):
    """Each engine times both models alike and reports its time to get
    ready apart, with its output checked against eager fp32: exported
    graphs within 1e-4 (the export's tolerance), bf16 within its
    rounding (see tests/test_models/test_precision.py)."""
    out_json = tmp_path / 'e.json'
    run(osp.join(TOOLS, 'benchmark.py'), '--models', 'nextvit-s-deploy',
        'resnet101', '--sizes', '64x64', '--reps', 1, '--warmup', 0,
        '--matmul-size', 128, '--threads', 1, '--no-flops', '--no-memory',
        '--engine', engine, '--precision', precision, '--json', out_json)
    data = json.loads(out_json.read_text())
    assert (data['machine']['engine'], data['machine']['dtype']) == (
        engine, precision)
    rows = {r['model']: r for r in data['results']}
    assert set(rows) == {'nextvit-s-deploy', 'resnet101'}
    bound = 1e-4 if precision == 'fp32' else 4e-2
    for row in rows.values():
        assert len(row['times_ms']) == 1
        if engine != 'eager':
            # Compilation or export and loading, reported apart: longer
            # than the timed call, which does none of it.
            assert row['ready_s'] > row['times_ms'][0] / 1e3, row
        assert row['rel_err'] < bound


def test_benchmark_refuses_what_an_engine_cannot_run():
    result = run(osp.join(TOOLS, 'benchmark.py'), '--engine', 'onnxruntime',
                 '--precision', 'bf16', check=False)
    assert result.returncode == 2
    assert '--precision fp32' in result.stderr.strip().splitlines()[-1]
    result = run(osp.join(TOOLS, 'benchmark.py'), '--engine', 'compile',
                 '--config', 'configs/mask_rcnn/nextvit_s_1x.py',
                 check=False)
    assert result.returncode == 2
    assert 'ONNX Runtime or OpenVINO only' in \
        result.stderr.strip().splitlines()[-1]
    result = run(osp.join(TOOLS, 'benchmark.py'), '--engine-only',
                 '--models', 'none', '--config',
                 'configs/mask_rcnn/nextvit_s_1x.py', check=False)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, '--engine onnxruntime or openvino')


def test_time_is_assigned_to_the_part_of_its_node():
    """Nodes go to their module scope's part; a node the engine inserts
    or renames goes to the part of its input's producer; what the export
    writes outside any layer is post-processing."""
    from mmnextvit.deploy.engines import PARTS, _assign
    scopes = {'backbone': 'backbone', 'neck': 'neck + head',
              'scale_heads.0': 'neck + head'}
    times = {
        '/backbone/stages.0/Conv': 1.,
        'ReorderOutput_token_3': 2.,  # converts the backbone's output
        '/neck/lateral_convs.0/Conv': 4.,
        'fused /scale_heads.0/Conv': 8.,
        '/scale_heads.0_output_0_nchwc/x': 16.,
        '/Resize_3': 32.,
        '/ArgMax': 64.,
        'Reorder_of_argmax': 128.,
    }
    producers = {'ReorderOutput_token_3': '/backbone/stages.0/Conv',
                 'Reorder_of_argmax': '/ArgMax'}
    parts = _assign(times, producers, scopes)
    assert tuple(parts) == PARTS
    assert parts == {'backbone': 3., 'neck + head': 28.,
                     'post-processing': 224.}


@pytest.mark.parametrize('config, names', [
    ('configs/bundled_data/nextvit_s_seg-shapes-cpu.py', {
        '/backbone/features.0/mhca/group_conv3x3/Conv': 'backbone',
        '/neck/lateral_convs.0/conv/Conv': 'neck + head',
        '/scale_heads.3/scale_heads.3.2/conv/Conv': 'neck + head',
        '/conv_seg/Conv': 'neck + head',
        '/Resize_3': 'post-processing',
        '/ArgMax': 'post-processing',
    }),
    ('configs/bundled_data/nextvit_s_upernet_seg-shapes-cpu.py', {
        '/psp_modules.3/psp_modules.3.1/conv/Conv': 'neck + head',
        '/lateral_convs.0/conv/Conv': 'neck + head',
        '/fpn_bottleneck/conv/Conv': 'neck + head',
        '/Concat_4': 'post-processing',
    }),
    ('configs/bundled_data/nextvit_s_shapes-cpu.py', {
        '/rpn_head/rpn_conv/Conv': 'neck + head',
        '/roi_head/bbox_head/shared_fcs.0/Gemm': 'neck + head',
        '/bbox_head/shared_fcs.0/Gemm': 'neck + head',
        '/mask_head/convs.0/conv/Conv': 'neck + head',
        '/NonMaxSuppression': 'post-processing',
    }),
])
def test_exported_node_names_map_to_the_model_s_parts(config, names):
    """The scopes of a real model (head_scopes) and the names its layers
    export under, indexed ModuleList layers included."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from mmnextvit.deploy.engines import head_scopes, part_of
    cfg = Config.fromfile(osp.join(ROOT, config))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    scopes = head_scopes(MODELS.build(cfg.model))
    assert {name: part_of(name, scopes) for name in names} == names


@pytest.mark.parametrize('engine, config', [
    ('onnxruntime', 'configs/bundled_data/nextvit_s_seg-shapes-cpu.py'),
    ('openvino', 'configs/bundled_data/nextvit_s_shapes-cpu.py'),
])
def test_benchmark_whole_model_parts(tmp_path, engine, config):
    """Where an exported whole model's time goes: a segmentor in ONNX
    Runtime and a Mask R-CNN in OpenVINO (engine only), each part timed
    and the backbone exported alone."""
    out_json = tmp_path / 'p.json'
    result = run(osp.join(TOOLS, 'benchmark.py'), '--models', 'none',
                 '--config', config, '--sizes', '64x64', '--reps', 1,
                 '--warmup', 0, '--matmul-size', 128, '--threads', 1,
                 '--no-memory', '--no-flops', '--engine', engine,
                 '--engine-only', '--json', out_json)
    (row, ) = json.loads(out_json.read_text())['results']
    assert row['model'].endswith(f'[{engine}]')
    assert row['backbone'] == 'NextViT-small'
    parts = row['parts']['parts_ms']
    assert parts['backbone'] > 0 and parts['neck + head'] > 0
    assert parts['post-processing'] >= 0
    assert row['parts']['backbone_alone_ms'] > 0
    assert 'where the time goes' in result.stdout
    assert 'inside / alone' in result.stdout


def test_benchmark_whole_model_in_onnxruntime(tmp_path):
    """A whole segmentor is exported with mmdeploy at the size and timed in
    ONNX Runtime beside its PyTorch rows; ratios are taken in the same
    engine."""
    out_json = tmp_path / 'w.json'
    run(osp.join(TOOLS, 'benchmark.py'), '--models', 'none', '--config',
        'configs/bundled_data/nextvit_s_seg-shapes-cpu.py', '--sizes',
        '64x64', '--reps', 1, '--warmup', 0, '--matmul-size', 128,
        '--threads', 1, '--no-memory', '--engine', 'onnxruntime', '--json',
        out_json)
    rows = {r['model']: r for r in json.loads(out_json.read_text())[
        'results']}
    label = 'nextvit_s_seg-shapes-cpu'
    assert set(rows) == {label, f'{label} +deploy', f'{label} [onnxruntime]'}
    exported = rows[f'{label} [onnxruntime]']
    assert exported['engine'] == 'onnxruntime'
    assert exported['ready_s'] > exported['median_ms'] / 1e3
    # Ratios within an engine: the deployed PyTorch row against the plain
    # one (the reference config's), the exported model against itself.
    deployed = rows[f'{label} +deploy']
    assert deployed['ratio'] == pytest.approx(deployed['median_ms'] /
                                              rows[label]['median_ms'])
    assert exported['ratio'] == 1.
