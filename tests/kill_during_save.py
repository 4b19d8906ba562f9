"""Train a toy model with mmengine's Runner, saving after every iteration
(or epoch), and die (SIGKILL) half-way through writing one checkpoint: the
moment a crash, an out-of-memory kill or a pre-empted job can hit.

    python tests/kill_during_save.py WORK_DIR HOOK BACKEND
        [--victim iter_2.pth] [--by-epoch] [--resume] [--keep 1]

HOOK: CheckpointHook (mmengine's) or mmnextvit.SafeCheckpointHook;
BACKEND: local (mmengine's LocalBackend) or atomic_local. The checkpoint
hook keeps one file (``max_keep_ckpts=1``, ``--keep``), the setting of the
bundled CPU config. Nothing here changes how either backend writes: every
file write of the process goes through its usual code, and the one that
writes the victim file (or its temporary file) stops after half of its
bytes. ``--victim ''`` trains to the end. The model has dropout and the
sampler shuffles, so the weights depend on the random state as well as on
the data.
"""
import argparse
import builtins
import io
import os
import signal

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmnextvit  # noqa: F401  (the hook, the backend, safe loading)

VICTIM = ''


class _DiesHalfway:
    """A writable file that writes half of the first write, then dies."""

    def __init__(self, file):
        self._file = file

    def write(self, data):
        self._file.write(bytes(data)[:len(data) // 2])
        self._file.flush()
        os.fsync(self._file.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def _name_of(file) -> str:
    try:
        return os.readlink(f'/proc/self/fd/{file.fileno()}')
    except (OSError, ValueError, AttributeError):
        return ''


def _wrap(real_open):
    def opener(file, mode='r', *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if VICTIM and 'w' in mode and 'b' in mode and VICTIM in \
                os.path.basename(_name_of(handle)):
            return _DiesHalfway(handle)
        return handle

    return opener


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 64)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(self.dropout(inputs))
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


def main(argv=None) -> None:
    global VICTIM
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('hook')
    parser.add_argument('backend')
    parser.add_argument('--victim', default='iter_2.pth')
    parser.add_argument('--by-epoch', action='store_true')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--keep', type=int, default=1,
                        help='max_keep_ckpts')
    args = parser.parse_args(argv)
    VICTIM = args.victim
    builtins.open = _wrap(builtins.open)
    io.open = _wrap(io.open)  # os.fdopen (AtomicLocalBackend) opens here
    generator = torch.Generator().manual_seed(1)  # the same data every run
    data = [dict(inputs=torch.randn(64, generator=generator),
                 labels=torch.randn(64, generator=generator))
            for _ in range(8)]
    loop = dict(by_epoch=True, max_epochs=3) if args.by_epoch else dict(
        by_epoch=False, max_iters=3)
    torch.manual_seed(0)  # the model is built before the Runner seeds
    runner = Runner(
        model=ToyModel(),
        work_dir=args.work_dir,
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=loop,
        default_hooks=dict(
            checkpoint=dict(
                type=args.hook,
                by_epoch=args.by_epoch,
                interval=1,
                max_keep_ckpts=args.keep,
                backend_args=dict(backend=args.backend))),
        randomness=dict(seed=0),
        resume=args.resume,
        default_scope='mmengine')
    runner.train()


if __name__ == '__main__':
    main()
