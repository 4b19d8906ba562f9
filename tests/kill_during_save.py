"""Train a toy model with mmengine's Runner, saving every iteration, and
die (SIGKILL) half-way through writing the checkpoint of iteration 2: the
moment a crash, an out-of-memory kill or a pre-empted job can hit.

    python tests/kill_during_save.py WORK_DIR HOOK BACKEND

HOOK: CheckpointHook (mmengine's) or mmnextvit.SafeCheckpointHook;
BACKEND: local (mmengine's LocalBackend) or atomic_local. The checkpoint
hook keeps one file (``max_keep_ckpts=1``), the setting of the bundled CPU
config. Nothing here changes how either backend writes: every file write of
the process goes through its usual code, and the one that writes
``iter_2.pth`` (or its temporary file) stops after half of its bytes.
"""
import builtins
import io
import os
import signal
import sys

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmnextvit  # noqa: F401  (the hook, the backend, safe loading)

VICTIM = 'iter_2.pth'


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
        if 'w' in mode and 'b' in mode and VICTIM in os.path.basename(
                _name_of(handle)):
            return _DiesHalfway(handle)
        return handle

    return opener


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 64)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


def main(work_dir: str, hook: str, backend: str) -> None:
    builtins.open = _wrap(builtins.open)
    io.open = _wrap(io.open)  # os.fdopen (AtomicLocalBackend) opens here
    data = [dict(inputs=torch.randn(64), labels=torch.randn(64))
            for _ in range(8)]
    runner = Runner(
        model=ToyModel(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=3),
        default_hooks=dict(
            checkpoint=dict(
                type=hook,
                by_epoch=False,
                interval=1,
                max_keep_ckpts=1,
                backend_args=dict(backend=backend))),
        randomness=dict(seed=0),
        default_scope='mmengine')
    runner.train()


if __name__ == '__main__':
    main(*sys.argv[1:4])
