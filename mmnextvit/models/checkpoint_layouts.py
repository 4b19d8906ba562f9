# Copyright (c) mmnextvit contributors. All rights reserved.
"""Next-ViT checkpoint layouts: recognising where the backbone weights sit
in a file and under which names, and loading them into
:class:`~mmnextvit.models.NextViT`. Files are read with
:func:`mmnextvit.engine.safe_loading.read_checkpoint`.

Layouts recognised by content (never by file name alone):

==========================  ===================================================
``upstream-imagenet``       ``{'model': {...}}`` from the upstream ImageNet
                            training (``features.{i}.*``, ``norm.*``,
                            ``proj_head.0.*``).
``mmengine-model``          ``{'state_dict': {'backbone.…': ...},
                            'meta': ...}``:
                            upstream Mask R-CNN / Semantic FPN / UperNet files
                            and detectors or segmentors trained with this
                            package.
``mmengine-backbone``       ``{'state_dict': {...}}`` with backbone keys only,
                            as written by ``tools/model_converters``.
``timm``                    flat ``stages.{s}.blocks.{j}.*`` keys (safetensors
                            or ``.pth``), renamed by name to the upstream
                            layout.
``upstream-flat``           a flat state dict in the upstream layout.
==========================  ===================================================
"""
import re
from collections import OrderedDict
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

import torch
from mmengine.logging import print_log

from mmnextvit.engine.safe_loading import CheckpointError, read_checkpoint

__all__ = [
    'to_backbone_state', 'timm_to_upstream', 'upstream_to_timm',
    'arch_of_state', 'diff_state',
    'summarise_keys', 'match_backbone_state', 'load_backbone_weights'
]

# Number of blocks (``features.{i}``) of each released variant.
_BLOCKS_PER_ARCH = {20: 'small', 30: 'base', 40: 'large'}


_TIMM_BLOCK = re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.(.+)$')
# timm's name prefixes -> upstream's, within a block and for the head.
_TIMM_RENAMES = (('mlp.fc1.', 'mlp.conv1.'), ('mlp.fc2.', 'mlp.conv2.'))
_TIMM_HEAD = (('head.fc.', 'proj_head.0.'), )
_UPSTREAM_BLOCK = re.compile(r'^features\.(\d+)\.(.+)$')


def _swap_prefix(name: str, pairs, reverse: bool = False) -> str:
    """``name`` with the first matching ``(old, new)`` prefix of ``pairs``
    replaced (``new`` by ``old`` with ``reverse``)."""
    for old, new in pairs:
        if reverse:
            old, new = new, old
        if name.startswith(old):
            return new + name[len(old):]
    return name


def timm_to_upstream(state: Mapping[str, torch.Tensor]
                     ) -> 'OrderedDict[str, torch.Tensor]':
    """Rename timm's Next-ViT keys to the upstream layout, by name.

    ``stages.{s}.blocks.{j}`` becomes ``features.{i}`` where ``i`` is ``j``
    plus the number of blocks of the stages before ``s`` (counted from the
    names themselves), ``mlp.fc1/fc2`` become ``mlp.conv1/conv2`` and
    ``head.fc`` becomes ``proj_head.0``. Every other key is already in the
    upstream layout.
    """
    depths: Dict[int, int] = {}
    for key in state:
        found = _TIMM_BLOCK.match(key)
        if found:
            stage, block = int(found.group(1)), int(found.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if depths and sorted(depths) != list(range(len(depths))):
        raise CheckpointError(
            f'Next-ViT weights: timm keys name stages {sorted(depths)}, '
            f'expected consecutive stages from 0.')
    offsets = [sum(depths[s] for s in range(stage)) for stage in depths]
    converted = OrderedDict()
    for key, value in state.items():
        found = _TIMM_BLOCK.match(key)
        if found:
            stage, block, rest = found.groups()
            rest = _swap_prefix(rest, _TIMM_RENAMES)
            key = f'features.{offsets[int(stage)] + int(block)}.{rest}'
        else:
            key = _swap_prefix(key, _TIMM_HEAD)
        converted[key] = value
    return converted


def upstream_to_timm(state: Mapping[str, torch.Tensor],
                     depths: Sequence[int]
                     ) -> 'OrderedDict[str, torch.Tensor]':
    """The inverse of :func:`timm_to_upstream`: upstream-layout keys (those
    of :class:`~mmnextvit.models.NextViT`'s state dict) renamed by name to
    timm's, for a model of ``depths`` blocks per stage.

    ``features.{i}`` becomes ``stages.{s}.blocks.{j}`` (``j`` counted from
    the first block of stage ``s``), ``mlp.conv1/conv2`` become
    ``mlp.fc1/fc2`` and ``proj_head.0`` becomes ``head.fc``.
    """
    starts = [sum(depths[:stage]) for stage in range(len(depths))]
    total = sum(depths)
    converted = OrderedDict()
    for key, value in state.items():
        found = _UPSTREAM_BLOCK.match(key)
        if found:
            index, rest = int(found.group(1)), found.group(2)
            if index >= total:
                raise CheckpointError(
                    f'Next-ViT weights: {key} is past the {total} blocks of '
                    f'depths {tuple(depths)}; pass the depths of the '
                    f'variant the weights belong to.')
            stage = max(s for s, start in enumerate(starts) if start <= index)
            rest = _swap_prefix(rest, _TIMM_RENAMES, reverse=True)
            key = f'stages.{stage}.blocks.{index - starts[stage]}.{rest}'
        else:
            key = _swap_prefix(key, _TIMM_HEAD, reverse=True)
        converted[key] = value
    return converted


def _strip(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    return OrderedDict((k[len(prefix):], v) for k, v in state.items()
                       if k.startswith(prefix))


def to_backbone_state(checkpoint: Mapping,
                      prefix: Optional[str] = None
                      ) -> Tuple['OrderedDict[str, torch.Tensor]', str]:
    """Find the backbone weights in a checkpoint of any supported layout.

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        prefix: Take only keys starting with it (and strip it). By default
            ``backbone.`` is taken when the file holds a whole model.

    Returns:
        The backbone state dict in the upstream key layout and the name of
        the layout that was recognised.
    """
    if 'state_dict' in checkpoint and isinstance(checkpoint['state_dict'],
                                                 Mapping):
        state, layout = checkpoint['state_dict'], 'mmengine-backbone'
    elif 'model' in checkpoint and isinstance(checkpoint['model'], Mapping):
        state, layout = checkpoint['model'], 'upstream-imagenet'
    else:
        state, layout = checkpoint, 'upstream-flat'
    tensors = [k for k, v in state.items() if isinstance(v, torch.Tensor)]
    if len(tensors) != len(state):
        raise CheckpointError(
            'Next-ViT weights: the state dict holds non-tensor entries '
            f'{[k for k in state if k not in set(tensors)][:3]}; it is not a '
            'model state dict.')
    if all(k.startswith('module.') for k in state):
        state = _strip(state, 'module.')  # saved from a DDP wrapper
    if prefix:
        state = _strip(state, prefix)
    elif any(k.startswith('backbone.') for k in state):
        state, layout = _strip(state, 'backbone.'), 'mmengine-model'
    if any(_TIMM_BLOCK.match(k) for k in state):
        state, layout = timm_to_upstream(state), 'timm'
    return OrderedDict(state), layout


def arch_of_state(state: Mapping[str, Any]) -> Optional[str]:
    """The released variant whose block count the upstream-layout
    ``state`` has, or None."""
    blocks = {
        int(k.split('.')[1])
        for k in state if re.match(r'^features\.\d+\.', k)
    }
    return _BLOCKS_PER_ARCH.get(max(blocks) + 1) if blocks else None


# --------------------------------------------------------------------------
# Matching against a model
# --------------------------------------------------------------------------
# Keys that released files carry but a backbone may not use: the ImageNet
# classifier, the classifier norm (used only by the segmentation mode) and
# the extra norms (``extra_norm_list.3`` is never used).
_UNUSED_PREFIXES = ('proj_head.', 'head.', 'norm.', 'extra_norm_list.')


def summarise_keys(keys: Iterable[str], limit: int = 3) -> str:
    """The first ``limit`` of ``keys`` in sorted order, for one-line
    messages."""
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (', ...' if len(keys) > limit else '')


def _groups(keys: Iterable[str]) -> str:
    groups = sorted({re.sub(r'\.(weight|bias|running_\w+|num_batches_'
                            r'tracked)$', '.*', k)
                     for k in keys})
    return summarise_keys(groups, limit=4)


def diff_state(expected: Mapping[str, Tuple[int, ...]],
               state: Mapping[str, Any]
               ) -> Tuple[List[str], List[str], List[str]]:
    """Keys of ``expected`` (name -> shape) that ``state`` lacks, keys of
    ``state`` that ``expected`` lacks, and keys whose shapes differ (entries
    of ``state`` without a shape are not compared)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        k for k, shape in expected.items()
        if k in state and hasattr(state[k], 'shape')
        and tuple(state[k].shape) != tuple(shape)
    ]
    return missing, unexpected, mismatched


def match_backbone_state(
        expected: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor],
        describe: str = 'the backbone'
) -> Tuple['OrderedDict[str, torch.Tensor]', List[str], List[str]]:
    """Check ``state`` against the backbone's own ``expected`` state dict.

    Returns:
        The entries to load, the unused keys that were skipped and the keys
        left at their initial values (the extra norms of the segmentation
        mode when the file has none of them, and the ``num_batches_tracked``
        counters when the file has none of them).

    Raises:
        CheckpointError: keys are missing or unexpected beyond those, or
            shapes differ. The message gives the counts and examples.
    """
    missing, unexpected, mismatched_keys = diff_state(
        {k: tuple(v.shape) for k, v in expected.items()}, state)
    skipped = [k for k in unexpected if k.startswith(_UNUSED_PREFIXES)]
    unexpected = [k for k in unexpected if k not in set(skipped)]

    file_has_extra_norms = any(
        k.startswith('extra_norm_list.') for k in state)
    # Some exports leave out the batch counters; they do not change outputs.
    file_has_counters = any(k.endswith('num_batches_tracked') for k in state)
    kept_initial = [
        k for k in missing
        if (k.endswith('num_batches_tracked') and not file_has_counters) or (
            k.startswith('extra_norm_list.') and not file_has_extra_norms)
    ]
    all_missing = missing
    missing = [k for k in missing if k not in set(kept_initial)]
    mismatched = [
        f'{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}'
        for k in mismatched_keys
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f'missing e.g. {summarise_keys(missing)}')
        if unexpected:
            details.append(f'unexpected e.g. {summarise_keys(unexpected)}')
        if mismatched:
            details.append(
                f'shape mismatch e.g. {summarise_keys(mismatched, 2)}')
        raise CheckpointError(
            f'{describe} does not fit the weights: {len(all_missing)} '
            f'missing, {len(unexpected)} unexpected and {len(mismatched)} '
            f'mis-shaped keys ({"; ".join(details)}); use weights of the '
            f'same Next-ViT variant (arch) or convert them with '
            f'tools/model_converters/nextvit2mmengine.py.')
    to_load = OrderedDict((k, v) for k, v in state.items() if k in expected)
    return to_load, skipped, kept_initial


def load_backbone_weights(model: torch.nn.Module,
                          path: str,
                          prefix: Optional[str] = None) -> None:
    """Load a weight file of any supported layout into a ``NextViT``.

    Nothing is loaded unless every backbone tensor is found with the right
    shape (see :func:`match_backbone_state`); the one log line says what was
    skipped or left at its initial value.
    """
    checkpoint = read_checkpoint(path)
    state, layout = to_backbone_state(checkpoint, prefix)
    mode = 'segmentation' if model.with_extra_norm else 'detection'
    model_arch = _BLOCKS_PER_ARCH.get(len(model.features), 'custom')
    file_arch = arch_of_state(state)
    found = f'Next-ViT-{file_arch} weights' if file_arch else 'weights'
    to_load, skipped, kept_initial = match_backbone_state(
        model.state_dict(), state,
        f"Next-ViT-{model_arch} ({mode} mode) loading {found} from '{path}' "
        f'({layout} layout)')
    model.load_state_dict(to_load, strict=False)
    message = (f"Next-ViT: loaded {len(to_load)} tensors from '{path}' "
               f'({layout} layout)')
    if skipped:
        message += f'; skipped {len(skipped)} unused ({_groups(skipped)})'
    if kept_initial:
        message += (f'; kept {len(kept_initial)} at their initial values '
                    f'({_groups(kept_initial)})')
    print_log(message, logger='current')
