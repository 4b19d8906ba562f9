# Copyright (c) mmnextvit contributors. All rights reserved.
"""A checkpoint hook after which a killed run resumes as if never stopped."""
import glob
import os
import os.path as osp
import random
from collections import deque
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmnextvit.compat.mmengine import built_train_loop, is_resuming
from mmnextvit.registry import HOOKS

from .fileio import AtomicLocalBackend

__all__ = ['SafeCheckpointHook', 'get_random_state', 'set_random_state']

# Key of the per-process random states in a checkpoint.
RNG_KEY = 'rng_state'


def get_random_state() -> Dict[str, Any]:
    """The state of every random generator a training process draws from
    (Python's ``random``, numpy's global one, torch's CPU and CUDA ones), in
    types that ``torch.load(weights_only=True)`` reads back."""
    numpy_state = np.random.get_state(legacy=False)
    state = dict(
        python=random.getstate(),
        numpy=dict(
            bit_generator=numpy_state['bit_generator'],
            key=[int(v) for v in numpy_state['state']['key']],
            pos=int(numpy_state['state']['pos']),
            has_gauss=int(numpy_state['has_gauss']),
            gauss=float(numpy_state['gauss'])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Dict[str, Any]) -> None:
    """Put back what :func:`get_random_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state['numpy']
    np.random.set_state(
        dict(
            bit_generator=numpy_state['bit_generator'],
            state=dict(
                key=np.asarray(numpy_state['key'], dtype=np.uint32),
                pos=numpy_state['pos']),
            has_gauss=numpy_state['has_gauss'],
            gauss=numpy_state['gauss']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreBeforeFetch:
    """Wraps the iteration-based loop's data iterator: on resume the loop
    first re-reads the ``skip`` batches it already trained on (so that the
    sampler and the loader workers are where they were), then fetches the
    next one. The random state of the killed run is put back right before
    that fetch: the point at which the checkpoint recorded it."""

    def __init__(self, loop, skip: int, state: Dict[str, Any]):
        self._loop = loop
        self._inner = loop.dataloader_iterator
        self._skip = skip
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0:
            set_random_state(self._state)
            self._loop.dataloader_iterator = self._inner
            return next(self._inner)
        self._skip -= 1
        return next(self._inner)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments), changed where a
    killed run could lose work or resume differently.

    * A new checkpoint is complete before an old one is deleted.
      mmengine deletes the oldest file of ``max_keep_ckpts`` first, so with
      ``max_keep_ckpts=1`` a process killed while saving leaves no
      checkpoint at all.
    * ``last_checkpoint`` (what ``--resume`` without a path reads) is
      replaced in one step, never left empty.
    * The random state of every process is saved with the checkpoint and
      put back on resume, at the point where it was taken. mmengine keeps
      only the seed, so a resumed run draws other dropout masks, drop-path
      decisions and RoI samples than the run it continues; with this hook
      and a fixed seed, a resumed CPU run ends with the same weights as an
      uninterrupted one.
    * Validation leaves the training random state as it found it (creating
      the validation loader draws a seed from the global generator), so
      where validations fall does not change the training that follows.

    Write the files all-or-nothing too with
    ``backend_args=dict(backend='atomic_local')``
    (:class:`~mmnextvit.engine.AtomicLocalBackend`).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gathered: Optional[List[Dict[str, Any]]] = None
        self._val_state: Optional[Dict[str, Any]] = None
        self._pending: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------ saving
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        # Temporary files of an AtomicLocalBackend write (or of
        # last_checkpoint) that a killed run left behind.
        for folder, pattern in ((self.out_dir, '.*.pth.*.tmp'),
                                (runner.work_dir, '.last_checkpoint.*.tmp')):
            if '://' in str(folder):
                continue
            for stale in glob.glob(osp.join(glob.escape(str(folder)),
                                            pattern)):
                os.remove(stale)
                print_log(f'Removed {stale}, left by an interrupted save.',
                          logger='current')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # Overrides a private method of CheckpointHook (see
        # mmnextvit.compat.mmengine, item 4).
        stale = []
        if self.max_keep_ckpts > 0:
            # The same bookkeeping as mmengine, but the files that fall out
            # of the window are deleted only after the new one is written.
            if not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step:
                ids = list(self.keep_ckpt_ids) + [step]
                stale = ids[:-self.max_keep_ckpts]
                self.keep_ckpt_ids = deque(ids[-self.max_keep_ckpts:],
                                           self.max_keep_ckpts)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        # Every process takes part (a collective); rank 0 writes them all.
        self._gathered = all_gather_object(get_random_state())
        try:
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        finally:
            self._gathered = None
        if not is_main_process():
            return
        # Through a temporary file and a rename, so a reader sees the old
        # pointer or the new one, nothing in between.
        AtomicLocalBackend.write_file(
            self.last_ckpt.encode('utf-8'),
            osp.join(runner.work_dir, 'last_checkpoint'))
        for old in stale:
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # A save outside _save_checkpoint_with_step (the best checkpoint)
        # runs on rank 0 only, so it cannot gather the other ranks' states.
        states = self._gathered
        if states is None and get_world_size() == 1:
            states = [get_random_state()]
        if states is not None:
            checkpoint[RNG_KEY] = states

    # ---------------------------------------------------------- resuming
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # load_from (fine-tuning, testing) keeps the fresh random state.
        if not is_resuming(runner):
            return
        states = checkpoint.get(RNG_KEY)
        if not states:
            print_log(
                'Resuming from a checkpoint without random states (not '
                'written by SafeCheckpointHook): the run continues from the '
                'seed, so it will not repeat the interrupted run exactly.',
                logger='current')
            return
        if len(states) != get_world_size():
            print_log(
                f'The checkpoint holds the random states of {len(states)} '
                f'process(es), this run has {get_world_size()}: the run '
                f'continues from the seed instead.',
                logger='current')
            return
        state = states[get_rank()]
        loop = built_train_loop(runner)
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is not None and 'iter' in checkpoint.get('meta', {}):
            # Iteration-based loop: after re-reading the trained batches.
            loop.dataloader_iterator = _RestoreBeforeFetch(
                loop, int(checkpoint['meta']['iter']), state)
        else:
            # Epoch-based loop: before the next epoch's loader starts.
            self._pending = state

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None:
            set_random_state(self._pending)
            self._pending = None

    # ------------------------------------------------------- validation
    def before_val(self, runner) -> None:
        self._val_state = get_random_state()

    def after_val(self, runner) -> None:
        if self._val_state is not None:
            set_random_state(self._val_state)
            self._val_state = None
