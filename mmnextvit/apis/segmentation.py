# Copyright (c) mmnextvit contributors. All rights reserved.
"""Segmentation inference helpers."""
from pathlib import Path
from typing import Optional, Union

import torch
from mmengine.config import Config


def _config_metainfo(cfg: Config) -> Optional[dict]:
    """Class names and palette of the config's test (else val) dataset:
    its ``metainfo`` override, else its dataset class's ``METAINFO``."""
    from mmseg.registry import DATASETS

    from mmnextvit.data_checks.dataset_paths import loader_datasets
    for loader in ('test_dataloader', 'val_dataloader'):
        # The first dataset that reads files, through RepeatDataset etc.
        dataset = next(iter(loader_datasets(cfg, loader)), (None, None))[1]
        if not isinstance(dataset, dict):
            continue
        meta = dataset.get('metainfo') or {}
        if 'classes' in meta:
            return dict(
                classes=tuple(meta['classes']), palette=meta.get('palette'))
        dataset_cls = DATASETS.get(dataset.get('type', ''))
        meta = getattr(dataset_cls, 'METAINFO', None) or {}
        if 'classes' in meta:
            return dict(
                classes=tuple(meta['classes']), palette=meta.get('palette'))
    return None


def init_segmentor(config: Union[str, Path, Config],
                   checkpoint: Optional[str] = None,
                   device: str = 'cpu',
                   cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """:func:`mmseg.apis.init_model` for every checkpoint a user brings.

    mmseg 1.2's ``init_model`` reads ``checkpoint['meta']`` unconditionally
    and so raises ``KeyError`` on a file with only a ``state_dict`` (or a
    bare state dict), and without class names in the file it guesses them
    from the number of classes. This builds the model the same way, loads
    the weights with MMEngine's ``load_checkpoint`` (reporting missing and
    unexpected keys as it does), and takes the class names and palette from
    the file's ``meta`` (mmseg 1.x ``dataset_meta`` or 0.x ``CLASSES``)
    or, when it has none, from the config's test dataset. The result works
    with :func:`mmseg.apis.inference_model` and ``show_result_pyplot``.

    Args:
        config: Config file or object.
        checkpoint: Weights to load; None leaves the model initialised by
            its constructors.
        device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'``. Defaults to
            ``'cpu'``.
        cfg_options: Overrides merged into the config.
    """
    from mmengine.runner import load_checkpoint
    from mmseg.apis import init_model

    if not isinstance(config, Config):
        config = Config.fromfile(str(config))
    if cfg_options:
        config.merge_from_dict(cfg_options)
    model = init_model(config, None, device='cpu')
    if checkpoint is not None:
        loaded = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = loaded.get('meta') or {}
        if 'dataset_meta' in meta:
            dataset_meta = dict(
                classes=meta['dataset_meta'].get('classes'),
                palette=meta['dataset_meta'].get('palette'))
        elif 'CLASSES' in meta:
            dataset_meta = dict(
                classes=meta['CLASSES'], palette=meta.get('PALETTE'))
        else:
            dataset_meta = _config_metainfo(config)
        num_classes = model.decode_head.num_classes
        if dataset_meta and len(dataset_meta['classes']) == num_classes:
            model.dataset_meta = dataset_meta
    model.to(device)
    model.eval()
    return model
