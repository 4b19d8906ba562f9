"""The command-line tools, run as a user runs them (subprocesses, CPU):
tools/train.py, tools/test.py, --resume, tools/dist_train.sh with two gloo
processes, tools/infer.py, the stock mmdet scripts through ``mim``, and the
one-line errors for bad input.

One small training run (tests/det_data.py: a Mask R-CNN with a shortened
Next-ViT on 96x96 images) provides the checkpoint the other tests read.
"""
import glob
import os
import os.path as osp
import pickle
import re
import shutil
import socket
import subprocess
import sys

import cv2
import pytest
import torch
from det_data import DET_BASE, make_coco_instances, write_det_config
from helpers import assert_one_line_error as one_line_error

import mmnextvit  # noqa: F401  (torch may load mmengine checkpoints)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
PYTHON = sys.executable
MIM = osp.join(osp.dirname(sys.executable), 'mim')


def run(args, timeout=600, **env):
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=dict(os.environ, **env))
    proc.output = proc.stdout + proc.stderr
    return proc


def ok(proc):
    """Assert success, showing the end of the output otherwise."""
    assert proc.returncode == 0, proc.output[-4000:]
    return proc


def tool(name, *args):
    return [PYTHON, osp.join(TOOLS, name), *args]


def meta(checkpoint):
    # weights_only loading (torch's default), as mmengine does it.
    return torch.load(checkpoint, map_location='cpu')['meta']


def backbone_dtype_line(proc):
    """tools/test.py's report of the dtype the backbone's features came
    out in (logged at the first test batch)."""
    lines = [line.split(' - INFO - ')[-1] for line in proc.stdout.splitlines()
             if 'the backbone ran in' in line]
    assert len(lines) == 1, proc.output[-3000:]
    return lines[0]


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    root = tmp_path_factory.mktemp('tools')
    make_coco_instances(str(root / 'data'))
    config = write_det_config(str(root / 'det.py'), str(root / 'data'))
    yield root, config
    # Checkpoints are ~280 MB each; do not leave them to pytest's tmp
    # retention.
    shutil.rmtree(root, ignore_errors=True)


# The small config's learning rate (tests/det_data.py), its batch and the
# batch its recipe's auto_scale_lr names (configs/mask_rcnn/nextvit_s_1x.py).
BASE_LR, BATCH, BASE_BATCH = 1e-4, 2, 16


@pytest.fixture(scope='module')
def trained(det):
    """Train one epoch (two iterations) with tools/train.py, the learning
    rate scaled to the batch (``--auto-scale-lr``)."""
    root, config = det
    work_dir = root / 'train'
    ok(run(tool('train.py', config, '--work-dir', work_dir,
                '--auto-scale-lr')))
    return work_dir / 'epoch_1.pth'


# --------------------------------------------------------------------------
# train / test / resume
# --------------------------------------------------------------------------
def test_train_writes_checkpoint(trained):
    info = meta(trained)
    assert (info['epoch'], info['iter']) == (1, 2)
    checkpoint = torch.load(trained, map_location='cpu')
    assert any(k.startswith('backbone.features.')
               for k in checkpoint['state_dict'])
    # --auto-scale-lr: the recipe's lr for a batch of 16, run at 2 (one
    # process): an eighth of it, in every parameter group.
    groups = checkpoint['optimizer']['param_groups']
    assert {g['lr'] for g in groups} == {BASE_LR * BATCH / BASE_BATCH}
    with open(trained.parent / 'last_checkpoint') as f:
        assert f.read().strip() == str(trained)


def read_predictions(path):
    """A ``--out`` file (mmdet's DumpDetResults): ``{image: (boxes, scores,
    labels)}``, every image's predictions once."""
    with open(path, 'rb') as f:  # our own file
        predictions = pickle.load(f)
    found = {}
    for item in predictions:
        name = osp.basename(item['img_path'])
        assert name not in found, f'{name} predicted twice'
        instances = item['pred_instances']
        found[name] = tuple(
            torch.as_tensor(instances[key])
            for key in ('bboxes', 'scores', 'labels'))
    return found


def coco_metrics(output):
    """The COCO metrics a test run logged: ``{name: value}``."""
    found = dict(re.findall(r'(coco/\w+): (-?\d+\.\d+)', output))
    assert 'coco/bbox_mAP' in found and 'coco/segm_mAP' in found, (
        output[-3000:])
    return found


@pytest.fixture(scope='module')
def reference(det, trained):
    """tools/test.py in one process: its predictions (``--out``) and
    metrics, what every launcher must reproduce. The checkpoint has trained
    two iterations, so its AP says little: the predictions, image by
    image, are what tells a dropped or doubled shard."""
    root, config = det
    out = root / 'test' / 'predictions.pkl'
    proc = ok(run(tool('test.py', config, trained, '--work-dir',
                       root / 'test', '--out', out)))
    return dict(proc=proc, out=out, predictions=read_predictions(out),
                metrics=coco_metrics(proc.output))


def assert_evaluates_as_one_process(proc, out, reference):
    """A launcher's test run gave the one-process run's predictions for
    every image (each once) and the same metrics."""
    got = read_predictions(out)
    expected = reference['predictions']
    assert sorted(got) == sorted(expected)
    for name, (boxes, scores, labels) in expected.items():
        assert torch.equal(got[name][2], labels), name
        assert torch.allclose(got[name][0], boxes, atol=1e-3), name
        assert torch.allclose(got[name][1], scores, atol=1e-5), name
    assert coco_metrics(proc.output) == reference['metrics']


def test_test_tool_evaluates_checkpoint(det, reference):
    proc = reference['proc']
    assert backbone_dtype_line(proc) == (
        '--precision fp32: the backbone ran in float32 (weights in float32)')
    with open(reference['out'], 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 2  # one per validation image
    assert {'pred_instances', 'img_path'} <= set(predictions[0])


def test_resume_continues_iteration_counter(det, trained):
    root, config = det
    work_dir = root / 'resume'
    work_dir.mkdir()
    # A work dir that holds the first run's checkpoint: --resume without a
    # path picks it up as the latest one.
    os.link(trained, work_dir / 'epoch_1.pth')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    proc = ok(run(tool('train.py', config, '--work-dir', work_dir,
                       '--resume', '--cfg-options', 'train_cfg.max_epochs=2')))
    assert 'resumed epoch: 1, iter: 2' in proc.output
    info = meta(work_dir / 'epoch_2.pth')
    assert (info['epoch'], info['iter']) == (2, 4)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU (gloo) launch path')
def test_dist_train_two_cpu_processes(det):
    """Two processes over gloo, with what would break a naive CPU run:
    SyncBN in the backbone, and a backbone stage that never runs (out
    indices end at stage 3), so DDP sees parameters without gradients."""
    root, config = det
    work_dir = root / 'dist'
    proc = ok(run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'), config, 2,
         '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=2',
         'model.backbone.norm_cfg.type=SyncBN',
         'model.backbone.out_indices=(0,1,2)',
         'model.neck.in_channels=[96,256,512]'],
        PYTHON=PYTHON, PORT=free_port()))
    assert 'CPU distributed run: 2 processes, gloo backend' in proc.output
    assert 'changed to BN' in proc.output
    # 4 images, batch 2 per process, 2 processes: one iteration per epoch.
    info = meta(work_dir / 'epoch_2.pth')
    assert (info['epoch'], info['iter']) == (2, 2)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU (gloo) launch path')
def test_dist_test_two_cpu_processes(det, trained, reference):
    root, config = det
    out = root / 'dist_test' / 'predictions.pkl'
    proc = ok(run(
        ['bash', osp.join(TOOLS, 'dist_test.sh'), config, trained, 2,
         '--work-dir', root / 'dist_test', '--out', out],
        PYTHON=PYTHON, PORT=free_port()))
    assert 'CPU distributed run: 2 processes, gloo backend' in proc.output
    assert_evaluates_as_one_process(proc, out, reference)


# A stand-in for Slurm's srun: starts --ntasks copies of the command with
# the variables srun sets, and fails when any of them fails.
FAKE_SRUN = """#!/usr/bin/env bash
ntasks=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ntasks=*) ntasks=${1#--ntasks=}; shift ;;
    -p) echo "partition $2" >&2; shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
pids=()
for ((rank = 0; rank < ntasks; rank++)); do
  SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NTASKS=$ntasks \\
  SLURM_NODELIST=localhost "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU (gloo) launch path')
def test_slurm_train_on_cpu_nodes(det, tmp_path):
    """tools/slurm_train.sh as on a cluster of CPU-only nodes
    (GPUS_PER_NODE=0), with srun replaced by a stand-in that starts the
    tasks locally."""
    root, config = det
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    work_dir = root / 'slurm'
    proc = ok(run(
        ['bash', osp.join(TOOLS, 'slurm_train.sh'), 'cpu', 'nextvit', config,
         work_dir],
        PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=PYTHON, GPUS='2',
        GPUS_PER_NODE='0', TASKS_PER_NODE='2', MASTER_ADDR='127.0.0.1',
        MASTER_PORT=free_port()))
    assert 'partition cpu' in proc.output
    assert 'CPU distributed run: 2 processes, gloo backend' in proc.output
    # 4 images, batch 2 per process, 2 processes: one iteration.
    assert meta(work_dir / 'epoch_1.pth')['iter'] == 1


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU (gloo) launch path')
def test_slurm_test_on_cpu_nodes_draws_with_show_dir(det, trained, reference,
                                                     tmp_path):
    """tools/slurm_test.sh as on CPU-only nodes (srun replaced by the
    stand-in), passing tools/test.py's --show-dir on: the checkpoint is
    evaluated by two tasks and the pictures land in the folder given."""
    root, config = det
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    show_dir = tmp_path / 'shown'
    out = tmp_path / 'predictions.pkl'
    proc = ok(run(
        ['bash', osp.join(TOOLS, 'slurm_test.sh'), 'cpu', 'nextvit', config,
         trained, '--work-dir', root / 'slurm_test', '--show-dir', show_dir,
         '--out', out],
        PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=PYTHON, GPUS='2',
        GPUS_PER_NODE='0', TASKS_PER_NODE='2', MASTER_ADDR='127.0.0.1',
        MASTER_PORT=free_port()))
    assert 'partition cpu' in proc.output
    assert 'CPU distributed run: 2 processes, gloo backend' in proc.output
    assert_evaluates_as_one_process(proc, out, reference)
    # --show-dir is the folder itself; mmengine's visualiser draws on the
    # first process only, so its share of the two test images.
    drawn = sorted(os.listdir(show_dir))
    assert drawn and set(drawn) <= {'val_000.png', 'val_001.png'}, drawn
    assert all(osp.getsize(show_dir / name) > 0 for name in drawn)


@pytest.mark.parametrize('script', ['slurm_test.sh', 'slurm_train.sh'])
def test_slurm_scripts_bad_input(det, trained, tmp_path, script):
    """Missing arguments give the usage line; a config or checkpoint that
    does not exist, one error line, before srun is called (a stand-in that
    would leave a mark)."""
    _, config = det
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    mark = tmp_path / 'srun_called'
    (bin_dir / 'srun').write_text(f'#!/usr/bin/env bash\ntouch {mark}\n')
    (bin_dir / 'srun').chmod(0o755)
    env = dict(PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=PYTHON)
    last = trained if script == 'slurm_test.sh' else tmp_path / 'work'
    missing = tmp_path / 'none.py'
    proc = run(['bash', osp.join(TOOLS, script), 'cpu', 'nextvit', config],
               **env)
    assert proc.returncode == 2
    (line, ) = proc.stderr.strip().splitlines()
    assert line.startswith('usage: ') and 'CONFIG' in line, line
    proc = run(['bash', osp.join(TOOLS, script), 'cpu', 'nextvit', missing,
                last], **env)
    assert_one_line_error(proc, f"config '{missing}' does not exist")
    if script == 'slurm_test.sh':
        proc = run(['bash', osp.join(TOOLS, script), 'cpu', 'nextvit',
                    config, tmp_path / 'none.pth'], **env)
        assert_one_line_error(proc, f"checkpoint '{tmp_path}/none.pth' "
                              'does not exist')
    assert not mark.exists()


def test_stock_train_py_with_a_downstream_config(det, tmp_path):
    """The README's one-liner for the stock mmdet train.py: a project's
    config that inherits ours by package name (``mmnextvit::``) trains when
    the package is imported first."""
    root, _ = det
    project = tmp_path / 'my_project' / 'configs'
    project.mkdir(parents=True)
    my_config = write_det_config(
        str(project / 'my_detector.py'), str(root / 'data'),
        base='mmnextvit::mask_rcnn/nextvit_s_1x.py')
    mmdet_dir = osp.dirname(__import__('mmdet').__file__)
    one_liner = ('import mmnextvit, runpy, sys; sys.argv = sys.argv[1:]; '
                 "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = ok(run([PYTHON, '-c', one_liner,
                   osp.join(mmdet_dir, '.mim', 'tools', 'train.py'),
                   my_config, '--work-dir', tmp_path / 'work']))
    assert 'Checkpoints will be saved to' in proc.output
    assert meta(tmp_path / 'work' / 'epoch_1.pth')['iter'] == 2


# --------------------------------------------------------------------------
# stock mmdet tools (through mim) and the inference tool
# --------------------------------------------------------------------------
def test_mim_train_runs_stock_mmdet_train_py(det):
    root, config = det
    work_dir = root / 'mim_train'
    proc = ok(run([MIM, 'train', 'mmdet', config, '--work-dir', work_dir]))
    assert osp.join('mmdet', '.mim', 'tools', 'train.py') in proc.output
    assert meta(work_dir / 'epoch_1.pth')['iter'] == 2


def test_mim_test_runs_stock_mmdet_test_py_on_our_checkpoint(
        det, trained, reference):
    root, config = det
    out = root / 'mim_test' / 'predictions.pkl'
    proc = ok(run([MIM, 'test', 'mmdet', config, '--checkpoint', trained,
                   '--work-dir', root / 'mim_test', '--out', out]))
    assert osp.join('mmdet', '.mim', 'tools', 'test.py') in proc.output
    assert_evaluates_as_one_process(proc, out, reference)


def test_infer_writes_pictures(det, trained):
    root, config = det
    out_dir = root / 'pictures'
    proc = ok(run(tool('infer.py', config, root / 'data' / 'val',
                       '--weights', trained, '--out-dir', out_dir,
                       '--device', 'cpu', '--score-thr', '0.05')))
    assert '2 picture(s) written' in proc.output
    for name in ('val_000', 'val_001'):
        picture = cv2.imread(str(out_dir / f'{name}.png'))
        image = cv2.imread(str(root / 'data' / 'val' / f'{name}.png'))
        assert picture is not None and picture.shape == image.shape
        # Boxes and masks drawn at a low threshold change the picture.
        assert (picture != image).any()


# --------------------------------------------------------------------------
# bad input: one line, exit status 2, nothing written
# --------------------------------------------------------------------------
def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.output[-3000:]
    assert 'Traceback' not in proc.output, proc.output[-3000:]
    return one_line_error(proc.stderr, *fragments)


@pytest.mark.parametrize('script', ['train.py', 'test.py'])
def test_missing_config(tmp_path, script):
    missing = tmp_path / 'nope.py'
    args = [missing, tmp_path / 'x.pth'] if script == 'test.py' else \
        [missing]
    proc = run(tool(script, *args, '--work-dir', tmp_path / 'work'))
    assert_one_line_error(proc, missing, 'does not exist')
    assert not (tmp_path / 'work').exists()


def test_unparsable_config(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text("_base_ = 'configs/mask_rcnn/nextvit_s_1x.py'\n"
                      'model = dict(\n')
    proc = run(tool('train.py', config, '--work-dir', tmp_path / 'work'))
    assert_one_line_error(proc, config, 'does not parse', 'SyntaxError')
    assert not (tmp_path / 'work').exists()


def test_missing_dataset_folder(det, tmp_path):
    _, config = det
    proc = run(tool('train.py', config, '--work-dir', tmp_path / 'work',
                    '--cfg-options',
                    f'train_dataloader.dataset.data_root={tmp_path}/none/'))
    assert_one_line_error(proc, f'{tmp_path}/none/',
                          'train_dataloader.dataset.data_root')
    assert not (tmp_path / 'work').exists()


def test_missing_annotation_file(det, tmp_path):
    _, config = det
    proc = run(tool('test.py', config, tmp_path / 'x.pth',
                    '--work-dir', tmp_path / 'work', '--cfg-options',
                    'test_dataloader.dataset.ann_file=annotations/none.json'))
    assert_one_line_error(proc, 'annotations/none.json',
                          'test_dataloader.dataset.ann_file')
    assert not (tmp_path / 'work').exists()


def test_missing_checkpoint(det, tmp_path):
    _, config = det
    missing = tmp_path / 'epoch_9.pth'
    proc = run(tool('test.py', config, missing, '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, missing, 'does not exist')
    proc = run(tool('train.py', config, '--resume', missing, '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, missing, '--resume')
    assert not (tmp_path / 'work').exists()


def test_checkpoint_of_another_model(det, tmp_path):
    """An ImageNet backbone file passed as the detector's checkpoint."""
    _, config = det
    from mmnextvit.models import NextViT
    other = tmp_path / 'backbone.pth'
    backbone = NextViT(arch=dict(
        stem_channels=(16, 16, 16), depths=(1, 1, 5, 1), drop_path_rate=0.))
    torch.save({'state_dict': backbone.state_dict()}, other)
    proc = run(tool('test.py', config, other, '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, other, 'does not fit', 'missing',
                          'backbone.')
    assert not (tmp_path / 'work').exists()


def test_checkpoint_with_other_classes(det, trained, tmp_path):
    _, config = det
    proc = run(tool('test.py', config, trained, '--work-dir',
                    tmp_path / 'work', '--cfg-options',
                    'model.roi_head.bbox_head.num_classes=5',
                    'model.roi_head.mask_head.num_classes=5'))
    assert_one_line_error(proc, trained, 'another shape', 'roi_head.')
    assert not (tmp_path / 'work').exists()


def test_tta_needs_tta_config(det, trained, tmp_path):
    _, config = det
    proc = run(tool('test.py', config, trained, '--tta', '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, '--tta', 'tta_model')
    assert not (tmp_path / 'work').exists()


def test_infer_bad_inputs(det, trained, tmp_path):
    root, config = det
    out_dir = tmp_path / 'pictures'
    image = root / 'data' / 'val' / 'val_000.png'
    cases = [
        ([config, tmp_path / 'none.png', '--weights', trained], 'none.png'),
        ([config, image, '--weights', tmp_path / 'none.pth'], 'none.pth'),
        ([tmp_path / 'none.py', image, '--weights', trained], 'none.py'),
    ]
    for args, name in cases:
        proc = run(tool('infer.py', *args, '--out-dir', out_dir))
        assert_one_line_error(proc, name, 'does not exist')
    assert not out_dir.exists()


@pytest.mark.parametrize('script, name', [
    ('make_shapes.py', 'shapes'),
    ('make_seg_shapes.py', 'seg_shapes'),
])
def test_dataset_converters_bad_input(tmp_path, script, name):
    """tools/dataset_converters: an impossible option and a folder the
    generator did not make each give one line, and nothing is written."""
    path = osp.join(TOOLS, 'dataset_converters', script)
    root = tmp_path / 'data'
    proc = run([PYTHON, path, '--root', root, '--num-train', '0'])
    assert_one_line_error(proc, f'{name}: num_train=0', '--num-train')
    assert not root.exists()
    root.mkdir()
    (root / 'mine.txt').write_text('not generated')
    proc = run([PYTHON, path, '--root', root, '--num-train', '1',
                '--num-val', '1'])
    assert_one_line_error(proc, f'{name}: {root} exists and was not made')
    assert os.listdir(root) == ['mine.txt']
    assert os.listdir(tmp_path) == ['data']


# --------------------------------------------------------------------------
# launcher helpers (no processes)
# --------------------------------------------------------------------------
def test_sync_bn_becomes_bn_in_segmentation_configs():
    """The paper's seg configs use SyncBN in backbone and heads; a CPU run
    must not keep any of it."""
    from mmengine.config import Config

    from mmnextvit.cli import sync_bn_to_bn
    configs = sorted(
        glob.glob(osp.join(REPO, 'configs', 'upernet', '*.py')) +
        glob.glob(osp.join(REPO, 'configs', 'semfpn', '*.py')) +
        glob.glob(osp.join(REPO, 'configs', 'bundled_data', '*seg*.py')))
    converted = 0
    for path in configs:
        cfg = Config.fromfile(path)
        had_sync_bn = 'SyncBN' in str(cfg.model)
        assert (sync_bn_to_bn(cfg.model) > 0) == had_sync_bn, path
        assert 'SyncBN' not in str(cfg.model), path
        converted += had_sync_bn
    assert converted >= 2, configs  # at least the small UperNet and FPN


def test_cpu_dist_env_from_launchers():
    from mmnextvit.cli import ToolError
    from mmnextvit.cli.launcher import cpu_dist_env
    slurm = dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_LOCALID='1',
                 SLURM_NODELIST='node[1-2]', MASTER_ADDR='node1')
    assert cpu_dist_env('slurm', slurm) == dict(
        RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='node1',
        MASTER_PORT='29500')
    mpi = dict(OMPI_COMM_WORLD_RANK='1', OMPI_COMM_WORLD_SIZE='2',
               OMPI_COMM_WORLD_LOCAL_RANK='1', MASTER_ADDR='host',
               MASTER_PORT='1234')
    assert cpu_dist_env('mpi', mpi) == dict(
        RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', MASTER_ADDR='host',
        MASTER_PORT='1234')
    with pytest.raises(ToolError, match='RANK, WORLD_SIZE'):
        cpu_dist_env('pytorch', {})


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU fallback')
def test_amp_recipe_trains_in_fp32_without_cuda():
    """The paper configs train with AmpOptimWrapper, which mmengine refuses
    to build without CUDA; the tools fall back to OptimWrapper with the same
    optimizer and no-decay keys."""
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper, build_optim_wrapper

    from mmnextvit.cli import adapt_to_cpu
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'mask_rcnn', 'nextvit_s_1x.py'))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    adapt_to_cpu(cfg)
    model = torch.nn.Module()
    model.conv = torch.nn.Conv2d(3, 4, 1)
    model.bn = torch.nn.BatchNorm2d(4)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper) is OptimWrapper
    optimizer = wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    assert optimizer.defaults['lr'] == 1e-4
    # 'bn' / 'norm' keys: the batch norm's parameters get no weight decay.
    decays = sorted(group['weight_decay'] for group in optimizer.param_groups)
    assert decays[0] == 0 and decays[-1] == 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU fallback')
def test_amp_recipe_falls_back_through_train_py(det, tmp_path):
    """The README's fp16-recipe-on-a-CPU fallback, run as a user meets it:
    the small detector with the recipe's own optim_wrapper (the
    AmpOptimWrapper of configs/mask_rcnn/nextvit_s_1x.py, put back over the
    test config's fp32 one) trains through tools/train.py, says that it
    falls back, and takes its two AdamW steps."""
    from mmengine.config import Config
    _, config = det
    recipe = Config.fromfile(DET_BASE).optim_wrapper.to_dict()
    assert recipe['type'] == 'AmpOptimWrapper'
    amp_config = tmp_path / 'amp.py'
    amp_config.write_text(f'_base_ = {config!r}\n'
                          f'optim_wrapper = {dict(recipe, _delete_=True)!r}\n')
    work_dir = tmp_path / 'work'
    proc = ok(run(tool('train.py', amp_config, '--work-dir', work_dir)))
    assert ('No CUDA device: the config trains with AmpOptimWrapper (mixed '
            'precision), which needs one; training in fp32 with OptimWrapper'
            ) in proc.output
    checkpoint = torch.load(work_dir / 'epoch_1.pth', map_location='cpu')
    assert checkpoint['meta']['iter'] == 2
    optimizer = checkpoint['optimizer']
    # An AmpOptimWrapper's state would hold its loss scaler.
    assert 'loss_scaler' not in optimizer
    steps = {float(s['step']) for s in optimizer['state'].values()}
    assert steps == {2.0}
    # The recipe's no-decay keys and learning rate came through.
    groups = optimizer['param_groups']
    assert {g['weight_decay'] for g in groups} == {
        0., recipe['optimizer']['weight_decay']}
    assert {g['lr'] for g in groups} == {recipe['optimizer']['lr']}


def test_auto_scale_lr_needs_the_config_s_base_batch(det, tmp_path):
    _, config = det
    bare = tmp_path / 'no_auto_scale.py'
    bare.write_text(f'_base_ = {str(config)!r}\n'
                    'auto_scale_lr = dict(_delete_=True, enable=False)\n')
    proc = run(tool('train.py', bare, '--auto-scale-lr', '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, str(bare), '--auto-scale-lr',
                          'auto_scale_lr.base_batch_size')
    assert not (tmp_path / 'work').exists()


def test_train_amp_flag_needs_cuda(det, tmp_path):
    """``--amp`` asks for mixed precision explicitly: without CUDA the tool
    refuses in one line (the recipe's own AmpOptimWrapper falls back, see
    above), before anything is written."""
    if torch.cuda.is_available():
        pytest.skip('--amp trains on this machine')
    _, config = det
    proc = run(tool('train.py', config, '--amp', '--work-dir',
                    tmp_path / 'work'))
    assert_one_line_error(proc, '--amp needs a CUDA GPU', 'drop --amp')
    assert not (tmp_path / 'work').exists()


# --------------------------------------------------------------------------
# --precision
# --------------------------------------------------------------------------
SHAPES_CONFIG = osp.join(REPO, 'configs', 'bundled_data',
                         'nextvit_s_shapes-cpu.py')
SHAPES_CHECKPOINT = """
import sys, torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
import mmnextvit
init_default_scope('mmdet')
torch.manual_seed(0)
model = MODELS.build(Config.fromfile(sys.argv[1]).model)
model.init_weights()
torch.save(dict(meta=dict(), state_dict=model.state_dict()), sys.argv[2])
"""


@pytest.fixture(scope='module')
def shapes_init(tmp_path_factory):
    """Two held-out images of the bundled shapes data and a checkpoint of
    the shapes config's freshly initialised Mask R-CNN; the config options
    pointing the config at that data."""
    from mmnextvit.bundled_data.shapes import (ShapesConfig, config_options,
                                               generate)
    folder = tmp_path_factory.mktemp('shapes_init')
    root = str(folder / 'shapes')
    generate(root, ShapesConfig(num_train=1, num_val=2), progress=False)
    checkpoint = folder / 'init.pth'
    ok(run([PYTHON, '-c', SHAPES_CHECKPOINT, SHAPES_CONFIG, checkpoint]))
    yield checkpoint, config_options(root)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU autocast')
def test_test_tool_bf16_on_the_shapes_config(shapes_init, tmp_path):
    """The bundled shapes config tested under CPU autocast (mmengine's
    TestLoop with fp16=True, bf16 on a CPU) on two held-out images, with
    freshly initialised weights: the backbone's features come out in bf16
    from fp32 weights (the tool's log line, read off the backbone's
    forward), and the whole Mask R-CNN, mmcv's NMS and RoIAlign included,
    runs and is evaluated."""
    checkpoint, options = shapes_init
    proc = ok(run(tool('test.py', SHAPES_CONFIG, checkpoint, '--work-dir',
                       tmp_path / 'work', '--precision', 'bf16',
                       '--cfg-options', *options)))
    assert backbone_dtype_line(proc) == (
        '--precision bf16: the backbone ran in bfloat16 (weights in float32)')
    assert 'coco/bbox_mAP' in proc.output
    assert 'coco/segm_mAP' in proc.output


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU autocast')
def test_precision_error_reports_each_stage(shapes_init):
    """precision_error.py measures bf16 against fp32 on the config's test
    images, autocast and cast model alike: four stages, errors that bf16's
    8-bit mantissa makes non-zero but small (measured 8e-3 to 2e-2 with
    these weights)."""
    checkpoint, options = shapes_init
    proc = ok(run(tool(osp.join('analysis_tools', 'precision_error.py'),
                       SHAPES_CONFIG, checkpoint, '--images', 2, '--deploy',
                       '--cfg-options', *options)))
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.split()[:2] == ['stage', 'autocast'])
    rows = [line.split() for line in lines[header + 1:header + 5]]
    assert [row[0] for row in rows] == ['1', '2', '3', '4']
    errors = [float(v) for row in rows for v in row[1:]]
    assert all(0 < e < 0.1 for e in errors), proc.stdout


def test_test_tool_refuses_fp16_on_the_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('fp16 autocast is available on this machine')
    proc = run(tool('test.py', SHAPES_CONFIG, tmp_path / 'none.pth',
                    '--precision', 'fp16'))
    assert_one_line_error(proc, '--precision fp16', 'bf16')


@pytest.mark.parametrize('script', ['precision_error.py',
                                    'inference_memory.py'])
def test_analysis_tools_bad_input(shapes_init, tmp_path, script):
    """The README's one-line errors for the analysis tools: a missing
    config, and (precision_error.py) a missing checkpoint."""
    checkpoint, options = shapes_init
    path = osp.join('analysis_tools', script)
    missing = tmp_path / 'none.py'
    args = [missing, checkpoint] if script == 'precision_error.py' \
        else [missing]
    assert_one_line_error(run(tool(path, *args)), missing, 'does not exist')
    if script == 'precision_error.py':
        missing = tmp_path / 'none.pth'
        assert_one_line_error(
            run(tool(path, SHAPES_CONFIG, missing, '--cfg-options',
                     *options)), missing)
