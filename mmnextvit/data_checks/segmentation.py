# Copyright (c) mmnextvit contributors. All rights reserved.
"""Checks of semantic-segmentation data that fail with one line naming the
file and the fix, instead of a deep traceback (a missing label map) or a
silently wrong result (label values outside the classes: the cross-entropy
loss fails on them, mmseg's IoU metric drops them without a word).

- :func:`check_seg_files`: before anything is built, every image of every
  segmentation dataset of a config has its label map (the tools call it).
- :func:`check_label_values`: the values of one label map fit the model's
  classes (``mmnextvit.SegDataCheckHook`` calls it on every batch).
"""
import os
import os.path as osp
from typing import Iterator, Optional, Sequence

import numpy as np

from .dataset_paths import distinct_datasets, is_local, join_root

__all__ = [
    'SegDataError', 'check_seg_files', 'check_seg_pairs',
    'check_label_values'
]


class SegDataError(ValueError):
    """Segmentation data that cannot be trained or evaluated on."""


def _images(img_dir: str, suffix: str) -> Iterator[str]:
    """Images under ``img_dir`` as mmseg's datasets find them (recursive,
    by suffix), relative to it, sorted."""
    found = []
    for folder, _, files in os.walk(img_dir):
        for name in files:
            if name.endswith(suffix):
                found.append(osp.relpath(osp.join(folder, name), img_dir))
    return iter(sorted(found))


def check_seg_pairs(dataset: dict, key: str = 'dataset') -> int:
    """Check that every image of one mmseg dataset config has its label map.

    Understands the ``BaseSegDataset`` layout: ``data_root``,
    ``data_prefix=dict(img_path=..., seg_map_path=...)``, ``img_suffix``,
    ``seg_map_suffix`` and an optional ``ann_file`` listing image names.
    Datasets without ``seg_map_path`` (inference-only) and remote storage are
    skipped.

    Returns:
        int: How many images were checked.

    Raises:
        SegDataError: a folder is missing or an image has no label map.
    """
    prefixes = dataset.get('data_prefix') or {}
    if not isinstance(prefixes, dict) or not prefixes.get('seg_map_path'):
        return 0
    root = dataset.get('data_root') or ''
    backend_args = dataset.get('backend_args')
    img_dir = join_root(root, prefixes.get('img_path') or '')
    seg_dir = join_root(root, prefixes['seg_map_path'])
    if not (is_local(img_dir, backend_args)
            and is_local(seg_dir, backend_args)):
        return 0
    for name, folder in (('img_path', img_dir), ('seg_map_path', seg_dir)):
        if not osp.isdir(folder):
            raise SegDataError(
                f"data folder '{folder}' ({key}.data_prefix.{name}) does not "
                f'exist; put the data there or pass --cfg-options '
                f'{key}.data_root=PATH')
    # BaseSegDataset's defaults.
    img_suffix = dataset.get('img_suffix', '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    ann_file = dataset.get('ann_file') or ''
    if ann_file:
        ann_path = join_root(root, ann_file)
        if not osp.isfile(ann_path):
            raise SegDataError(
                f"image list '{ann_path}' ({key}.ann_file) does not exist; "
                f"create it or set {key}.ann_file=''")
        with open(ann_path, encoding='utf-8') as f:
            stems = [line.strip() for line in f if line.strip()]
    else:
        stems = [name[:-len(img_suffix)]
                 for name in _images(img_dir, img_suffix)]
        if not stems:
            raise SegDataError(
                f"no '*{img_suffix}' images in '{img_dir}' "
                f'({key}.data_prefix.img_path); put the images there or set '
                f'{key}.img_suffix to their extension')
    missing = [stem for stem in stems
               if not osp.isfile(osp.join(seg_dir, stem + seg_suffix))]
    if missing:
        first = missing[0]
        more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
        raise SegDataError(
            f"image '{osp.join(img_dir, first + img_suffix)}' has no label "
            f"map '{osp.join(seg_dir, first + seg_suffix)}'{more}; add the "
            f'label map or move the image out of {img_dir}')
    return len(stems)


def check_seg_files(cfg, loaders: Sequence[str] = ('train_dataloader',
                                                   'val_dataloader',
                                                   'test_dataloader')
                    ) -> int:
    """Run :func:`check_seg_pairs` on every dataset of the named dataloaders
    of a config (a ``Config`` or dict). Dataloaders that a config does not
    have, and datasets that are not segmentation datasets, are skipped.

    Returns:
        int: How many images were checked in all.
    """
    return sum(
        check_seg_pairs(dataset, key)
        for key, dataset in distinct_datasets(cfg, loaders))


def check_label_values(label, num_classes: int, ignore_index: int = 255,
                       seg_map_path: Optional[str] = None,
                       reduce_zero_label: bool = False) -> None:
    """Check a loaded label map (after ``LoadAnnotations``, i.e. with
    ``reduce_zero_label`` already applied) against the model's classes.

    Raises:
        SegDataError: values other than ``0..num_classes-1`` and
            ``ignore_index``, reported as the values in the file.
    """
    values = np.unique(np.asarray(label))
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size == 0:
        return
    if reduce_zero_label:
        # LoadAnnotations maps file value v to v - 1 (0 to ignore).
        in_file = bad + 1
        valid = (f'1..{num_classes} (0 and 255 are ignored: '
                 f'reduce_zero_label)')
    else:
        in_file = bad
        valid = f'0..{num_classes - 1} ({ignore_index} is ignored)'
    shown = ', '.join(str(int(v)) for v in in_file[:5])
    if in_file.size > 5:
        shown += ', ...'
    where = f"label map '{seg_map_path}'" if seg_map_path else 'a label map'
    raise SegDataError(
        f'{where} has values {shown} outside the {num_classes} classes of '
        f'the model (valid: {valid}); fix the file, or set the model\'s '
        f'num_classes and the dataset\'s metainfo classes to cover them')
