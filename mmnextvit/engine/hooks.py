# Copyright (c) mmnextvit contributors. All rights reserved.
"""Training hooks."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook

from mmnextvit.registry import HOOKS


@HOOKS.register_module()
class StopOnInvalidLossHook(Hook):
    """Stop training as soon as the loss is NaN or infinite.

    It runs before every other hook after an iteration (so before the
    checkpoint hook can save weights updated from that loss) and raises a
    ``FloatingPointError`` naming the iteration, the loss value and the
    usual remedies. The last checkpoint written before it stays the newest
    one, so ``--resume`` restarts from weights that were still finite.

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
