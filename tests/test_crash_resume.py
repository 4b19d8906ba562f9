"""Crash and resume (docs/reliability.md, "Crash and resume").

* The bundled CPU config (Next-ViT-S Mask R-CNN on the shapes data, shrunk
  on the command line to 64-pixel images and two iterations) is killed with
  SIGKILL while it writes its second checkpoint; ``tools/train.py --resume``
  continues from the first and ends with the same weights, optimizer and
  scheduler state as a run that was never interrupted.
* What each checkpoint hook / file backend pair leaves behind when the
  process dies half-way through a save (a toy model, so all four
  combinations take seconds).
* Two gloo processes, one killed: the job ends with an error within a
  bounded time, and resumes from its last checkpoint.
"""
import os
import os.path as osp
import pytest
import signal
import subprocess
import time
import torch
from reliability_helpers import (PYTHON, REPO, SHAPES_CONFIG, TOOLS,
                                 last_checkpoint, make_shapes, ok, read, run,
                                 run_until, shapes_options, temp_files, tool)

from mmnextvit.cli.resume import find_resume_checkpoint, is_complete_checkpoint
from mmnextvit.engine.safe_loading import CheckpointError, read_checkpoint


def _equal_nested(a, b, where=''):
    """Every tensor and number of two checkpoint parts is identical."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _equal_nested(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal_nested(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


# --------------------------------------------------------------------------
# The bundled config: SIGKILL during a save, resume, same final weights
# --------------------------------------------------------------------------
def test_sigkill_during_save_then_resume_matches_uninterrupted(tmp_path):
    data = make_shapes(str(tmp_path / 'shapes'))
    options = shapes_options(data, max_iters=2)

    # Reference: two iterations in one go, one checkpoint at the end.
    whole = tmp_path / 'whole'
    ok(run(tool('train.py', SHAPES_CONFIG, '--work-dir', whole,
                '--cfg-options', *options,
                'default_hooks.checkpoint.interval=2')))

    # The same run saving every iteration, killed while the checkpoint of
    # iteration 2 is being written: its temporary file exists, the file
    # itself does not yet.
    killed = tmp_path / 'killed'
    killed.mkdir()
    saving_2 = (lambda: bool(temp_files(killed, 'iter_2.pth'))
                and not (killed / 'iter_2.pth').exists())
    result = run_until(
        tool('train.py', SHAPES_CONFIG, '--work-dir', killed,
             '--cfg-options', *options, 'default_hooks.checkpoint.interval=1'),
        saving_2, log=str(tmp_path / 'killed.log'))
    assert result['returncode'] == -signal.SIGKILL
    # The last good checkpoint is whole, named by last_checkpoint, and loads;
    # of the one being written only the hidden temporary file is left.
    assert last_checkpoint(killed) == str(killed / 'iter_1.pth')
    assert read(killed / 'iter_1.pth')['meta']['iter'] == 1
    assert not (killed / 'iter_2.pth').exists()
    assert temp_files(killed, 'iter_2.pth')

    resumed = ok(run(tool('train.py', SHAPES_CONFIG, '--work-dir', killed,
                          '--resume', '--cfg-options', *options,
                          'default_hooks.checkpoint.interval=1')))
    assert f"resuming from '{killed / 'iter_1.pth'}'" in resumed.output
    assert 'resumed epoch: 0, iter: 1' in resumed.output
    assert not temp_files(killed, 'iter_2.pth')  # cleaned up
    assert last_checkpoint(killed) == str(killed / 'iter_2.pth')
    # max_keep_ckpts=1 (the config's): only the newest file is kept.
    assert not (killed / 'iter_1.pth').exists()

    a, b = read(whole / 'iter_2.pth'), read(killed / 'iter_2.pth')
    assert a['meta']['iter'] == b['meta']['iter'] == 2
    # Bit-identical on the CPU: weights, AdamW moments and step counts,
    # the warm-up/step schedulers' state.
    _equal_nested(a['state_dict'], b['state_dict'], 'state_dict')
    _equal_nested(a['optimizer'], b['optimizer'], 'optimizer')
    _equal_nested(a['param_schedulers'], b['param_schedulers'],
                  'param_schedulers')
    # and the random state the next iteration would start from.
    _equal_nested(a['rng_state'], b['rng_state'], 'rng_state')


# --------------------------------------------------------------------------
# Death half-way through a save: hook x backend (toy model, seconds each)
# --------------------------------------------------------------------------
@pytest.mark.parametrize('hook, backend, survivor', [
    # mmengine's hook deletes the previous file before writing the next one
    # (max_keep_ckpts=1): nothing is left to resume from.
    ('CheckpointHook', 'local', None),
    ('CheckpointHook', 'atomic_local', None),
    # SafeCheckpointHook deletes it only after the new file is complete.
    ('mmnextvit.SafeCheckpointHook', 'local', 'iter_1.pth'),
    ('mmnextvit.SafeCheckpointHook', 'atomic_local', 'iter_1.pth'),
])
def test_kill_half_way_through_a_save(tmp_path, hook, backend, survivor):
    work = tmp_path / 'work'
    proc = _toy(work, hook, backend)
    assert proc.returncode == -signal.SIGKILL, proc.output[-3000:]

    partial = work / 'iter_2.pth'
    if backend == 'local':
        # mmengine's LocalBackend writes in place: a truncated iter_2.pth,
        # which is refused with one line, never half-loaded.
        assert partial.exists() and not is_complete_checkpoint(str(partial))
        with pytest.raises(CheckpointError, match='truncated') as info:
            read_checkpoint(str(partial))
        assert len(str(info.value).splitlines()) == 1
    else:
        # AtomicLocalBackend: no iter_2.pth at all, only its temporary file.
        assert not partial.exists()
        assert temp_files(work, 'iter_2.pth')

    found, how = find_resume_checkpoint(str(work))
    if survivor is None:
        assert not (work / 'iter_1.pth').exists()
        assert found is None and 'starting from scratch' in how
    else:
        assert found == str(work / survivor)
        checkpoint = read_checkpoint(found)
        assert checkpoint['meta']['iter'] == 1
        assert len(checkpoint['rng_state']) == 1


def _toy(*args):
    return run([PYTHON, osp.join(REPO, 'tests', 'kill_during_save.py'),
                *args], timeout=300)


@pytest.fixture(scope='module')
def toy_epochs_reference(tmp_path_factory):
    """Three epochs of the toy model (dropout, shuffled data) in one go."""
    work = tmp_path_factory.mktemp('toy_reference')
    ok(_toy(work, 'mmnextvit.SafeCheckpointHook', 'atomic_local',
            '--victim', '', '--by-epoch'))
    return read(work / 'epoch_3.pth')


@pytest.mark.parametrize('hook, repeats', [
    ('mmnextvit.SafeCheckpointHook', True),
    # Control: mmengine's hook keeps no random state, so the resumed run
    # draws other dropout masks and ends elsewhere.
    ('CheckpointHook', False),
])
def test_epoch_based_resume_repeats_the_run(tmp_path, toy_epochs_reference,
                                            hook, repeats):
    """The epoch-based loop (the COCO 1x/3x configs' loop) puts the random
    state back at the start of the next epoch."""
    work = tmp_path / 'work'
    proc = _toy(work, hook, 'atomic_local', '--victim', 'epoch_2.pth',
                '--by-epoch', '--keep', 2)
    assert proc.returncode == -signal.SIGKILL, proc.output[-3000:]
    ok(_toy(work, hook, 'atomic_local', '--victim', '', '--by-epoch',
            '--keep', 2, '--resume'))
    resumed = read(work / 'epoch_3.pth')
    weights = toy_epochs_reference['state_dict']['linear.weight']
    assert torch.equal(resumed['state_dict']['linear.weight'],
                       weights) == repeats


def test_resume_pointer_falls_back_to_newest_complete_file(tmp_path):
    """An empty or stale last_checkpoint does not hide a good file."""
    good = tmp_path / 'iter_4.pth'
    torch.save({'meta': {'iter': 4}}, good)
    cut = tmp_path / 'iter_6.pth'
    cut.write_bytes(good.read_bytes()[:100])
    os.utime(good, (1, 1))  # older than the truncated one
    pointer = tmp_path / 'last_checkpoint'

    pointer.write_text(str(cut))
    assert find_resume_checkpoint(str(tmp_path)) == (
        str(good), f"last_checkpoint names '{cut}', which is incomplete; "
        f"resuming from '{good}', the newest complete checkpoint in "
        f'{tmp_path}')
    pointer.write_text('')
    found, how = find_resume_checkpoint(str(tmp_path))
    assert found == str(good) and how.startswith('last_checkpoint is empty')
    pointer.write_text(str(tmp_path / 'iter_8.pth'))
    found, how = find_resume_checkpoint(str(tmp_path))
    assert found == str(good) and 'which is missing' in how
    # A work dir moved elsewhere: the pointer's file name is found beside it.
    pointer.write_text('/elsewhere/work/iter_4.pth')
    assert find_resume_checkpoint(str(tmp_path))[0] == str(good)
    assert find_resume_checkpoint(str(tmp_path / 'none'))[0] is None


# --------------------------------------------------------------------------
# Two processes, one killed
# --------------------------------------------------------------------------
def _children(pid: int):
    """(pid, environment) of the direct children of ``pid`` (Linux)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f'/proc/{entry}/environ', 'rb') as f:
                env = dict(
                    item.split(b'=', 1) for item in f.read().split(b'\0')
                    if b'=' in item)
            found.append((int(entry), env))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _free_port() -> str:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU (gloo) launch path')
def test_two_processes_one_killed_ends_the_job_then_resumes(tmp_path):
    from det_data import make_coco_instances, write_det_config
    make_coco_instances(str(tmp_path / 'data'))
    config = write_det_config(str(tmp_path / 'det.py'),
                              str(tmp_path / 'data'))
    work = tmp_path / 'work'
    args = ['bash', osp.join(TOOLS, 'dist_train.sh'), config, 2,
            '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=50',
            'train_cfg.val_interval=100']
    env = dict(os.environ, PYTHON=PYTHON, PORT=_free_port())
    log = open(tmp_path / 'dist.log', 'w')
    # Its own process group, so that nothing outlives the test.
    launcher = subprocess.Popen([str(a) for a in args], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while last_checkpoint(work) is None:
            assert launcher.poll() is None, open(tmp_path / 'dist.log').read()
            assert time.monotonic() < deadline, 'no checkpoint in time'
            time.sleep(0.2)
        workers = _children(launcher.pid)  # torchrun's worker processes
        assert len(workers) == 2, workers
        rank1 = [pid for pid, env in workers
                 if env.get(b'LOCAL_RANK') == b'1']
        assert rank1, workers
        os.kill(rank1[0], signal.SIGKILL)
        killed_at = time.monotonic()
        status = launcher.wait(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        log.close()
    output = open(tmp_path / 'dist.log').read()
    assert status != 0, output[-3000:]
    # torchrun notices the dead worker and stops the other one; the bound
    # is generous for a loaded machine (measured: a few seconds).
    assert took < 60, (took, output[-3000:])
    print(f'job ended {took:.1f}s after rank 1 was killed, status {status}')
    assert not [pid for pid, _ in workers if _alive(pid)]  # rank 0 too

    last = last_checkpoint(work)
    epoch = read(last)['meta']['epoch']
    resumed = ok(run(args[:6] + ['--resume', '--cfg-options',
                                 f'train_cfg.max_epochs={epoch + 1}',
                                 'train_cfg.val_interval=100'],
                     PYTHON=PYTHON, PORT=_free_port()))
    assert f"resuming from '{last}'" in resumed.output
    assert f'resumed epoch: {epoch}' in resumed.output
    assert read(work / f'epoch_{epoch + 1}.pth')['meta']['epoch'] == epoch + 1
