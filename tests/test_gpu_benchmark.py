"""tools/analysis_tools/gpu_benchmark.sh: its preparation (the wheels the GPU
machine lacks), a CPU rehearsal of the whole run in an environment like the
GPU machine's (mmcv without compiled ops, from those wheels), its reports and
its one-line errors."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmnextvit.analysis import gpu_benchmark as bench

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'gpu_benchmark.sh')
REHEARSAL_MODELS = ['nextvit-s', 'resnet50', 'timm-nextvit-s']


def script(*args, out=None, timeout=600):
    env = dict(os.environ, PYTHON=sys.executable)
    if out is not None:
        env['OUT'] = str(out)
    return subprocess.run(['bash', SCRIPT, *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=timeout)


def importable(package):
    try:
        __import__(package)
    except Exception:
        return False
    return True


@pytest.fixture(scope='module')
def wheels(tmp_path_factory):
    dest = tmp_path_factory.mktemp('gpu') / 'wheels'
    result = script('--prepare', dest, timeout=300)
    assert result.returncode == 0, result.stderr
    return dest


@pytest.fixture(scope='module')
def rehearsal(wheels, tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_out')
    # A budget of 600 s rather than the tool's 300 (a bound, not a
    # duration: the rehearsal ends when its cells are done), for a machine
    # busy with other tests; test_a_spent_budget_skips_cells_and_says_so
    # covers the budget itself.
    result = script('--wheels', wheels, '--cpu-rehearsal', '--models',
                    *REHEARSAL_MODELS, '--compile-workers', 2, '--budget',
                    600, out=out, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    with open(out / 'gpu_benchmark.json') as f:
        return out, json.load(f)


def test_prepare_brings_the_pinned_wheels_only(wheels):
    names = sorted(os.listdir(wheels))
    packages = sorted(n.split('-')[0].lower() for n in names)
    assert packages == ['addict', 'mmcv_lite', 'mmengine', 'platformdirs',
                        'termcolor', 'yapf']
    assert all(n.endswith('-none-any.whl') for n in names)  # any Python
    assert sum(osp.getsize(wheels / n) for n in names) < 8 << 20


def test_rehearsal_runs_without_compiled_mmcv_ops(rehearsal):
    _, results = rehearsal
    env = results['environment']
    assert env['mmcv'] == '2.1.0' and env['mmcv_compiled_ops'] is False
    assert env['mmengine'] == '0.10.7'
    assert not any(results['openmmlab_imports'].values()), \
        results['openmmlab_imports']


def test_rehearsal_measures_every_cell(rehearsal):
    _, results = rehearsal
    rows = {(r['model'], r['mode'], r['precision'], r['size']): r
            for r in results['latency']}
    size = bench.CPU_REHEARSAL['sizes'][0]
    for model in REHEARSAL_MODELS:
        for mode in bench.MODES:
            for precision in bench.CPU_REHEARSAL['precisions']:
                row = rows[(model, mode, precision, size)]
                package = 'timm' if model.startswith('timm') else \
                    'torchvision'
                if model != 'nextvit-s' and not importable(package):
                    # torchvision (and timm, which needs it) cannot be
                    # installed beside the CPU torch of this environment.
                    assert row['status'].startswith(
                        f'not available: {package} not importable'), row
                    continue
                assert row['status'] == 'ok', row
                assert 0 < row['q1_ms'] <= row['median_ms'] <= row['q3_ms']
                if mode == 'compile':
                    assert row['ready_s'] > 0
                    bound = 1e-4 if precision == 'fp32' else 5e-2
                    assert row['rel_err_vs_eager'] < bound, row
                elif precision != 'fp32':
                    assert 0 < row['rel_err_vs_fp32'] < 5e-2, row
    train = {(r['model'], r['precision']): r for r in results['training']}
    assert train[('nextvit-s', 'bf16')]['images_per_s'] > 0
    assert results['gflops_per_image'][f'nextvit-s {size}'] > 0


def test_rehearsal_writes_the_reports(rehearsal):
    out, results = rehearsal
    text = (out / 'gpu_benchmark.txt').read_text()
    assert 'Latency, eager, fp32' in text
    # The rehearsal compiles with aot_eager (gpu_benchmark.CPU_REHEARSAL).
    assert results['compile_backend'] == 'aot_eager'
    assert 'Latency, compile (backend=aot_eager), bf16' in text
    assert 'Training' in text
    assert (out / 'gpu_benchmark.png').stat().st_size > 1000
    log = (out / 'gpu_benchmark.log').read_text()
    assert log.startswith('date ') and f'torch {torch.__version__}' in log
    assert 'OpenMMLab modules imported by the run' in log


def test_report_names_the_headline_ratio():
    """Ratios against ResNet-101 in the same mode, precision and size, and
    the headline line (fp16, 224x224x8, compiled) with the FLOP ratio."""
    rows = [
        dict(model=m, mode=mode, precision='fp16', size='224x224x8',
             status='ok', median_ms=ms, q1_ms=ms, q3_ms=ms, reps=3)
        for m, mode, ms in (('nextvit-s', 'compile', 3.0),
                            ('resnet101', 'compile', 4.0),
                            ('nextvit-s', 'eager', 6.0),
                            ('resnet101', 'eager', 5.0))
    ]
    rows.append(dict(model='nextvit-l', mode='eager', precision='fp16',
                     size='224x224x8', status='skipped: time budget'))
    results = dict(
        environment=dict(device='cuda', gpu='GPU X', nvidia_smi='GPU X, 1',
                         torch='2', cuda='13', cudnn=9, date='2026-12-04'),
        parity=dict(input='224x224x2 fp32', modules=1e-6, deployed=2e-6),
        latency=rows, ratios=bench.ratios(rows), training=[],
        gflops_per_image={'nextvit-s 224x224x8': 10.,
                          'resnet101 224x224x8': 15.},
        openmmlab_imports={'mmdet': False}, elapsed_s=1., budget_s=2.,
        compile_mode='reduce-overhead')
    assert {(r['mode'], r['ratio']) for r in results['ratios']} == {
        ('compile', 0.75), ('eager', 1.2)}
    text = bench.text_report(results)
    assert ('Next-ViT-S / ResNet-101, fp16, 224x224x8, compiled '
            '(mode=reduce-overhead): 0.75 (3.00 / 4.00 ms, FLOP ratio 0.67)'
            ) in text
    assert '| nextvit-s | 6.00 (1.20) |' in text
    assert '| nextvit-l | skipped |' in text
    assert '- nextvit-l eager fp16 224x224x8: skipped: time budget' in text


def test_a_spent_budget_skips_cells_and_says_so():
    results = bench.run(['nextvit-s'], ['64x64x1'], ['fp32'],
                        ['eager', 'compile'], None, torch.device('cpu'),
                        budget_s=0., log=lambda line: None)
    statuses = {(r['mode'], r['status']) for r in results['latency']}
    assert statuses == {('eager', 'skipped: time budget'),
                        ('compile', 'skipped: compile time budget')}


def test_seeded_weights_are_reproducible_and_fold_non_trivially():
    from mmnextvit.models import NextViT
    one = bench.seed_weights(NextViT(arch='small'), seed=3).state_dict()
    two = bench.seed_weights(NextViT(arch='small'), seed=3).state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)
    var = one['stem.0.norm.running_var']
    assert 0.75 <= var.min() and var.max() <= 1.25 and var.std() > 0.05


@pytest.mark.parametrize('text, expected', [('224x224x8', (224, 224, 8)),
                                            ('512x512', (512, 512, 1))])
def test_cell_sizes(text, expected):
    assert bench.parse_cell_size(text) == expected


@pytest.mark.parametrize('args, message', [
    (['--prepare'], '--prepare needs a folder'),
    (['--wheels', '{empty}'], 'no wheels in'),
    ([], 'torch sees no GPU here'),
    (['--cpu-rehearsal', '--sizes', '16x16'], "size '16x16' is too small"),
    (['--cpu-rehearsal', '--train-size', '64x64xa'],
     'is not HxW or HxWxBATCH'),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    if not args and torch.cuda.is_available():
        pytest.skip('a GPU is present: the script would run the benchmark')
    empty = tmp_path / 'empty'
    empty.mkdir()
    args = [a.format(empty=empty) for a in args]
    result = script(*args, out=tmp_path / 'out', timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
