# Copyright (c) mmnextvit contributors. All rights reserved.
"""The model a tool checks before any work starts is the model it runs.

mmengine's ``Runner`` builds the model from the config after it has made
the work dir and the log, so a tool that wants a bad model setting to end
with one line and nothing written must build the model first
(:func:`build_model`) and then hand that instance to the Runner
(:func:`build_runner`) instead of letting it build a second one.

The Runner seeds the random generators (``cfg.randomness``) right before it
builds the model. :func:`build_model` seeds them the same way before
building and records their state afterwards; the Runner built by
:func:`build_runner` puts that state back where it would have built the
model, so a run draws exactly the numbers it would have drawn had the
Runner built the model itself.
"""
import random
import weakref
from typing import Any, Dict

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from .errors import ToolError, first_line

__all__ = ['build_model', 'build_runner', 'log_backbone_dtype']

# Built model -> the random state right after it was built.
_STATE_AFTER_BUILD: 'weakref.WeakKeyDictionary[nn.Module, Dict[str, Any]]' \
    = weakref.WeakKeyDictionary()


def _random_state() -> Dict[str, Any]:
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: Dict[str, Any]) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state:
        torch.cuda.set_rng_state_all(state['cuda'])


def build_model(cfg: Config) -> nn.Module:
    """Build the config's model on the CPU as the Runner would, seeded by
    ``cfg.randomness`` (when it fixes a seed). Call it after
    :func:`~mmnextvit.cli.launcher.setup_launcher`, which may change the
    model's norms.

    Raises:
        ToolError: the model does not build (a bad ``arch``,
            ``out_indices``, ``frozen_stages`` or head setting).
    """
    from mmengine.registry import MODELS
    from mmengine.runner import set_random_seed

    randomness = dict(cfg.get('randomness') or {})
    if randomness.get('seed') is not None:
        set_random_seed(**randomness)
    try:
        model = MODELS.build(cfg.model)
    except Exception as err:  # the builders raise many kinds
        raise ToolError(
            f"the model of '{cfg.filename}' does not build "
            f'({type(err).__name__}: {first_line(err)}); fix the model '
            f'settings (--cfg-options model.KEY=VALUE)') from None
    if randomness.get('seed') is not None:
        _STATE_AFTER_BUILD[model] = _random_state()
    return model


def build_runner(cfg: Config, model: nn.Module):
    """The Runner of ``cfg`` (its ``runner_type`` or mmengine's ``Runner``)
    running ``model`` (from :func:`build_model`, possibly wrapped for
    test-time augmentation) instead of building the config's model again.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg \
        else Runner
    state = _STATE_AFTER_BUILD.get(getattr(model, 'module', model))

    class PrebuiltModelRunner(runner_cls):

        def build_model(self, model_cfg):
            if isinstance(model_cfg, nn.Module):
                return super().build_model(model_cfg)
            if state is not None:
                _set_random_state(state)
            return model

    PrebuiltModelRunner.__name__ = runner_cls.__name__
    return PrebuiltModelRunner.from_cfg(cfg)


def log_backbone_dtype(model: nn.Module, precision: str) -> None:
    """Log, at the model's first forward, the dtype the backbone's features
    came out in: what ``--precision`` did, as against what it asked for
    (autocast is set on the loop, not on the model, and a loop or a model
    wrapper that drops it would otherwise go unnoticed). Does nothing for a
    model without a ``backbone``."""
    from mmengine.logging import print_log

    backbone = getattr(getattr(model, 'module', model), 'backbone', None)
    if not isinstance(backbone, nn.Module):
        return

    def report(module, inputs, outputs):
        handle.remove()
        feats = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        dtypes = sorted({
            str(f.dtype).replace('torch.', '')
            for f in feats if isinstance(f, torch.Tensor)
        })
        weights = {
            str(p.dtype).replace('torch.', '')
            for p in module.parameters()
        }
        print_log(
            f"--precision {precision}: the backbone ran in "
            f"{' and '.join(dtypes)} (weights in "
            f"{' and '.join(sorted(weights)) or 'none'})",
            logger='current')

    handle = backbone.register_forward_hook(report)
