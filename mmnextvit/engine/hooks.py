# Copyright (c) mmnextvit contributors. All rights reserved.
"""Training hooks."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook

from mmnextvit.registry import HOOKS


@HOOKS.register_module()
class StopOnInvalidLossHook(Hook):
    """mmdet's ``CheckInvalidLossHook`` (same argument), made to stop a run
    cleanly. An mmengine hook of its own, so that the package imports
    without mmdet (segmentation, or the backbone alone).

    What it adds: it runs before every other hook after an iteration
    (priority ``VERY_HIGH``, so before the checkpoint hook can save weights
    updated from that loss), checks every iteration by default, and raises
    a ``FloatingPointError`` naming the iteration, the loss and its parts
    and the usual remedies (mmdet's hook fails an ``assert`` with no
    message), which the tools turn into one line and exit status 1. The
    last checkpoint written before it stays the newest one, so ``--resume``
    restarts from weights that were still finite. It ignores iterations
    whose outputs carry no ``loss``.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1.
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        if not self.every_n_train_iters(runner, self.interval):
            return
        loss = outputs['loss']
        value = float(loss.detach()) if isinstance(loss,
                                                   torch.Tensor) else loss
        if math.isfinite(value):
            return
        parts = ', '.join(
            f'{name}={float(v.detach()):.4g}' for name, v in outputs.items()
            if name != 'loss' and isinstance(v, torch.Tensor)
            and v.numel() == 1)
        raise FloatingPointError(
            f'Training stopped at iteration {runner.iter + 1}: the loss is '
            f'{value} ({parts}); no checkpoint was written from it. Lower '
            f'the learning rate, enable gradient clipping '
            f'(optim_wrapper.clip_grad) or check the annotations, then '
            f'resume from the last checkpoint with --resume.')
