# Copyright (c) mmnextvit contributors. All rights reserved.
"""Checks of COCO-format detection data, run by the tools before anything is
built or written, each failing with one line that names the file and the fix.

What mmdet 3.3 does without them:

- an annotation file without images builds an empty dataset, and training
  fails in the sampler with ``need at least one array to concatenate``;
- an image named in the annotation file but missing on disk fails inside a
  data-loader worker when (and only when) the shuffle reaches it, possibly
  hours into a run;
- an annotation whose ``category_id`` is not among the file's categories is
  dropped without a word, and a class name of the config that the file does
  not have makes the model's classes and the data's disagree.
"""
import json
import os.path as osp
from typing import Dict, List, Sequence

from .dataset_paths import distinct_datasets, is_local, join_root

__all__ = ['DetDataError', 'check_coco_dataset', 'check_det_files']


class DetDataError(ValueError):
    """Detection data that cannot be trained or evaluated on."""


def _coco_class(type_name):
    """The dataset class if it reads COCO-format files, else None."""
    try:
        from mmdet.datasets import CocoDataset
        from mmdet.registry import DATASETS
    except ImportError:  # mmdet is optional for segmentation-only use
        return None
    cls = DATASETS.get(type_name) if isinstance(type_name, str) else type_name
    if isinstance(cls, type) and issubclass(cls, CocoDataset):
        return cls
    return None


def check_coco_dataset(dataset: dict, key: str = 'dataset') -> int:
    """Check one COCO-format dataset config against its files.

    Returns:
        int: How many images the dataset will use.

    Raises:
        DetDataError: the annotation file is not COCO instances, a class of
            the config is not among its categories, an annotation names a
            category the file does not define, an image is missing, or no
            image is left to train on.
    """
    cls = _coco_class(dataset.get('type'))
    root = dataset.get('data_root') or ''
    ann_file = dataset.get('ann_file') or ''
    backend_args = dataset.get('backend_args')
    if cls is None or not ann_file:
        return 0
    ann_path = join_root(root, ann_file)
    if not (is_local(ann_path, backend_args) and osp.isfile(ann_path)):
        return 0  # missing files are reported by check_data_paths
    try:
        with open(ann_path, encoding='utf-8') as f:
            coco = json.load(f)
        images, annotations, categories = (coco['images'],
                                           coco['annotations'],
                                           coco['categories'])
        cat_names: Dict[int, str] = {c['id']: c['name'] for c in categories}
    except (ValueError, KeyError, TypeError) as err:
        raise DetDataError(
            f"annotation file '{ann_path}' ({key}.ann_file) is not a COCO "
            f'instances file ({type(err).__name__}: {err}); it needs '
            f"'images', 'annotations' and 'categories' lists") from None

    metainfo = dataset.get('metainfo') or {}
    classes = tuple(metainfo.get('classes') or cls.METAINFO['classes'])
    unknown = [c for c in classes if c not in set(cat_names.values())]
    if unknown:
        raise DetDataError(
            f"class(es) {unknown} of {key}.metainfo.classes are not "
            f"categories of '{ann_path}' (it has "
            f'{sorted(cat_names.values())[:10]}); name the classes as the '
            f'file does')

    for ann in annotations:
        if ann.get('category_id') not in cat_names:
            raise DetDataError(
                f"annotation id {ann.get('id')} (image "
                f"{ann.get('image_id')}) in '{ann_path}' has category_id "
                f"{ann.get('category_id')!r}, which is not among the file's "
                f'categories {sorted(cat_names)}; fix the label or add the '
                f'category')

    if not images:
        raise DetDataError(
            f"dataset {key} is empty: '{ann_path}' lists no images; point "
            f'{key}.ann_file at a file with images')

    img_prefix = (dataset.get('data_prefix') or {}).get('img', '')
    img_dir = join_root(root, img_prefix)
    if is_local(img_dir, backend_args):
        missing: List[str] = [
            osp.join(img_dir, image['file_name']) for image in images
            if not osp.isfile(osp.join(img_dir, image['file_name']))
        ]
        if missing:
            more = (f' (and {len(missing) - 1} more)'
                    if len(missing) > 1 else '')
            raise DetDataError(
                f"image '{missing[0]}'{more}, listed in '{ann_path}', does "
                f'not exist; add it, or remove it from the annotation file, '
                f'or set {key}.data_prefix.img')

    # What mmdet's CocoDataset.filter_data keeps for training.
    filter_cfg = dataset.get('filter_cfg') or {}
    if dataset.get('test_mode', False) or not filter_cfg:
        return len(images)
    selected = {cid for cid, name in cat_names.items() if name in classes}
    with_objects = {
        ann['image_id']
        for ann in annotations if ann['category_id'] in selected
    }
    min_size = filter_cfg.get('min_size', 0)
    kept = [
        image for image in images
        if min(image.get('width', 0), image.get('height', 0)) >= min_size
        and (not filter_cfg.get('filter_empty_gt', False)
             or image['id'] in with_objects)
    ]
    if not kept:
        raise DetDataError(
            f"dataset {key} is empty after filtering: none of the "
            f"{len(images)} images of '{ann_path}' has an object of the "
            f'classes {list(classes)} and a side of at least {min_size} '
            f'pixels; check the annotations or {key}.filter_cfg')
    return len(kept)


def check_det_files(cfg, loaders: Sequence[str] = ('train_dataloader',
                                                   'val_dataloader',
                                                   'test_dataloader')
                    ) -> int:
    """Run :func:`check_coco_dataset` on every COCO-format dataset of the
    named dataloaders of a config; other datasets are skipped. Call it after
    the task package's modules are registered.

    Returns:
        int: How many images the checked datasets use in all.
    """
    return sum(
        check_coco_dataset(dataset, key)
        for key, dataset in distinct_datasets(cfg, loaders))
