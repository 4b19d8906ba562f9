# Copyright (c) mmnextvit contributors. All rights reserved.
"""The checks a tool runs before any work starts (before the Runner makes
its work dir): the data and weight files a config names exist and fit
(that the model builds is :func:`mmnextvit.cli.runner.build_model`'s
check). Each raises :class:`~mmnextvit.cli.errors.ToolError` with one line
that names the bad input and the fix."""
import os.path as osp
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import Config

from mmnextvit.data_checks.dataset_paths import (is_local, join_root,
                                                 loader_datasets)
from mmnextvit.engine.safe_loading import CheckpointError, read_checkpoint
from mmnextvit.models.checkpoint_layouts import (arch_of_state, diff_state,
                                                 summarise_keys)
from .errors import ToolError

__all__ = [
    'check_pretrained', 'check_fits', 'check_data_paths', 'check_data_files',
    'check_checkpoint'
]


def _pretrained(node, key: str) -> Iterator[Tuple[str, str]]:
    """(config key, path) of every ``Pretrained`` init_cfg in a model
    config."""
    if isinstance(node, dict):
        init_cfgs = node.get('init_cfg')
        for index, init in enumerate(init_cfgs if isinstance(
                init_cfgs, (list, tuple)) else [init_cfgs]):
            if (isinstance(init, dict)
                    and str(init.get('type', '')).split('.')[-1]
                    == 'Pretrained'
                    and isinstance(init.get('checkpoint'), str)):
                where = f'{key}.init_cfg' + (
                    f'.{index}' if isinstance(init_cfgs, (list, tuple))
                    else '')
                yield f'{where}.checkpoint', init['checkpoint']
        for name, value in node.items():
            if name != 'init_cfg':
                yield from _pretrained(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained(value, f'{key}.{index}')


def check_pretrained(cfg) -> None:
    """Every local ``Pretrained`` weight file the model starts from exists.

    The Runner loads them in ``init_weights``, after it has created the
    work dir, and also when resuming (it initialises before it loads the
    checkpoint).

    Raises:
        ToolError: naming the first missing file and its config key.
    """
    for key, path in _pretrained(cfg.get('model'), 'model'):
        if '://' in path or osp.isfile(osp.expanduser(path)):
            continue
        init_key = key[:key.rindex('.init_cfg') + len('.init_cfg')]
        raise ToolError(
            f"pretrained weights '{path}' ({key}) do not exist; download "
            f'them (see README.md), or pass --cfg-options {key}=PATH, or '
            f'{init_key}=None to start from random weights')


def check_data_files(cfg, loaders: Sequence[str]) -> None:
    """The content checks of the datasets the named loaders read: for
    COCO-format detection data the annotation file, its labels and every
    image it lists (:mod:`mmnextvit.data_checks.detection`); for
    segmentation data a label map for every image
    (:mod:`mmnextvit.data_checks.segmentation`).
    Call it after :func:`check_data_paths`.

    Raises:
        ToolError: the first problem, in one line.
    """
    from mmnextvit.data_checks.detection import DetDataError, check_det_files
    from mmnextvit.data_checks.segmentation import (SegDataError,
                                                    check_seg_files)
    try:
        check_det_files(cfg, loaders)
        check_seg_files(cfg, loaders)
    except (DetDataError, SegDataError) as err:
        raise ToolError(str(err)) from None


# --------------------------------------------------------------------------
# Data paths
# --------------------------------------------------------------------------
def check_data_paths(cfg: Config, loaders: Sequence[str]) -> None:
    """Check that the data each named dataloader reads is there: its
    ``data_root`` folder, its annotation file and its image/label folders,
    and the annotation file of the matching evaluator.

    Raises:
        ToolError: naming the first missing path, the config key that set
            it and how to point the config elsewhere.
    """
    for loader in loaders:
        # A dataloader the config lacks has nothing to check, nor has its
        # evaluator.
        if not isinstance(cfg.get(loader), dict):
            continue
        for key, dataset in loader_datasets(cfg, loader):
            backend_args = dataset.get('backend_args')
            root = dataset.get('data_root') or ''
            if root and is_local(root, backend_args) and not osp.isdir(root):
                raise ToolError(
                    f"dataset folder '{root}' ({key}.data_root) does not "
                    f'exist; put the data there or pass --cfg-options '
                    f'{key}.data_root=PATH')
            ann_file = dataset.get('ann_file') or ''
            if ann_file:
                path = join_root(root, ann_file)
                if is_local(path, backend_args) and not osp.isfile(path):
                    raise ToolError(
                        f"annotation file '{path}' ({key}.ann_file) does not "
                        f'exist; create it or pass --cfg-options '
                        f'{key}.ann_file=PATH')
            prefixes = dataset.get('data_prefix') or {}
            for name, prefix in (prefixes.items()
                                 if isinstance(prefixes, dict) else ()):
                if not isinstance(prefix, str) or not prefix:
                    continue
                path = join_root(root, prefix)
                if is_local(path, backend_args) and not osp.isdir(path):
                    raise ToolError(
                        f"data folder '{path}' ({key}.data_prefix.{name}) "
                        f'does not exist; create it or pass --cfg-options '
                        f'{key}.data_prefix.{name}=PATH')
        evaluator = loader.replace('_dataloader', '_evaluator')
        for index, metric in enumerate(_as_list(cfg.get(evaluator))):
            ann_file = metric.get('ann_file') if isinstance(metric,
                                                            dict) else None
            if (isinstance(ann_file, str) and ann_file
                    and is_local(ann_file, metric.get('backend_args'))
                    and not osp.isfile(ann_file)):
                key = evaluator if isinstance(cfg.get(evaluator), dict) \
                    else f'{evaluator}.{index}'
                raise ToolError(
                    f"annotation file '{ann_file}' ({key}.ann_file) does not "
                    f'exist; create it or pass --cfg-options '
                    f'{key}.ann_file=PATH')


def _as_list(value) -> List:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
def _variants(state: Mapping, expected: Mapping) -> str:
    """`` (a Next-ViT-X backbone where the config builds Next-ViT-Y)`` when
    the released variants of the file's and the model's backbones differ."""

    def arch(keys):
        return arch_of_state({k[len('backbone.'):]: None
                              for k in keys if k.startswith('backbone.')})

    found, wanted = arch(state), arch(expected)
    if found and wanted and found != wanted:
        return (f' (a Next-ViT-{found} backbone where the config builds '
                f'Next-ViT-{wanted})')
    return ''


def check_checkpoint(cfg: Config,
                     path: str,
                     flag: str = 'checkpoint',
                     model: Optional[nn.Module] = None) -> Mapping:
    """Check that ``path`` is a readable checkpoint and, when ``model`` (the
    model ``cfg`` builds, see :func:`~mmnextvit.cli.runner.build_model`) is
    given, that it is a checkpoint of that model; nothing from the file is
    executed.

    The file is read with
    :func:`mmnextvit.engine.safe_loading.read_checkpoint` (``weights_only``
    loading). Every tensor of ``model`` (the batch-norm counters aside) must
    be in the file with the same shape; extra entries in the file are
    allowed (released files carry unused heads).

    Returns:
        The checkpoint as read.

    Raises:
        ToolError: the file is missing or unreadable, or belongs to another
            model or variant.
    """
    if not osp.isfile(path):
        raise ToolError(
            f"{flag} '{path}' does not exist; pass a .pth file written by "
            f'tools/train.py (work_dirs/<config>/epoch_N.pth or iter_N.pth) '
            f'or a released model')
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        raise ToolError(f'{flag}: {err}') from None
    if model is not None:
        check_fits(cfg, checkpoint, path, model, flag)
    return checkpoint


def check_fits(cfg: Config, checkpoint: Mapping, path: str, model: nn.Module,
               flag: str = 'checkpoint') -> None:
    """Check that ``checkpoint`` (read from ``path``) holds every tensor of
    ``model`` (the batch-norm counters aside) with the same shape.

    Raises:
        ToolError: it belongs to another model or variant.
    """
    state = checkpoint.get('state_dict', checkpoint)
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in state.items()}
    expected = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    missing, _, other_shape = diff_state(expected, state)
    if missing or other_shape:
        problems = []
        if missing:
            problems.append(f'{len(missing)} of its {len(expected)} tensors '
                            f'are missing ({summarise_keys(missing)})')
        if other_shape:
            problems.append(f'{len(other_shape)} have another shape '
                            f'({summarise_keys(other_shape)})')
        problems[-1] += _variants(state, expected)
        raise ToolError(
            f"{flag} '{path}' does not fit the model of '{cfg.filename}': "
            f"{' and '.join(problems)}; pass a checkpoint trained with this "
            f'config (same model and variant)')
