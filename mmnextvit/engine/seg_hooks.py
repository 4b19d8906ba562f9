# Copyright (c) mmnextvit contributors. All rights reserved.
"""Hooks for semantic-segmentation runs."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from typing import Optional

from mmnextvit.data_checks.segmentation import (SegDataError,
                                                check_label_values,
                                                check_seg_pairs)
from mmnextvit.data_checks.dataset_paths import leaf_datasets
from mmnextvit.registry import HOOKS


@HOOKS.register_module()
class SegDataCheckHook(Hook):
    """Stop a segmentation run at the first bad input with one line naming
    the file and the fix.

    - Before training, validation or testing: every image of the loop's
      dataset has its label map (the stock tools build the datasets without
      looking at the label maps; a missing one otherwise fails deep inside a
      data-loader worker).
    - On every batch: the label values fit the decode head's classes (out of
      range values otherwise stop the cross-entropy loss with an index error,
      and mmseg's IoU metric silently drops them).

    Checking a batch's labels costs one ``unique`` per label map, nothing
    next to a forward pass.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._checked_loops = set()

    # ------------------------------------------------------------------
    def _check_files(self, runner, loop_name: str) -> None:
        if loop_name in self._checked_loops:
            return
        self._checked_loops.add(loop_name)
        loop = getattr(runner, loop_name, None)
        dataloader = getattr(loop, 'dataloader', None)
        if dataloader is None:
            return
        for _, dataset in leaf_datasets(dataloader.dataset):
            prefix = getattr(dataset, 'data_prefix', None)
            if not isinstance(prefix, dict) or 'seg_map_path' not in prefix:
                continue
            check_seg_pairs(
                dict(
                    data_root='',
                    data_prefix=prefix,
                    img_suffix=getattr(dataset, 'img_suffix', '.jpg'),
                    seg_map_suffix=getattr(dataset, 'seg_map_suffix',
                                           '.png'),
                    ann_file=getattr(dataset, 'ann_file', '') or '',
                    backend_args=getattr(dataset, 'backend_args', None)),
                key=f'{loop_name.lstrip("_")}.dataset')

    def _check_batch(self, runner, data_batch: Optional[dict]) -> None:
        if not isinstance(data_batch, dict):
            return
        samples = data_batch.get('data_samples') or []
        model = runner.model
        # DDP wrappers and the test-time-augmentation model keep the
        # segmentor as ``module``.
        while is_model_wrapper(model) or (not hasattr(model, 'decode_head')
                                          and hasattr(model, 'module')):
            model = model.module
        head = getattr(model, 'decode_head', None)
        if head is None:
            return
        num_classes = head.num_classes
        ignore_index = getattr(head, 'ignore_index', 255)
        # Test-time augmentation nests one list of samples per view.
        while samples and isinstance(samples[0], (list, tuple)):
            samples = [s for group in samples for s in group]
        for sample in samples:
            gt = getattr(sample, 'gt_sem_seg', None)
            if gt is None:
                continue
            check_label_values(
                gt.data.cpu().numpy(),
                num_classes,
                ignore_index,
                seg_map_path=sample.metainfo.get('seg_map_path'),
                reduce_zero_label=bool(
                    sample.metainfo.get('reduce_zero_label', False)))

    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self._check_files(runner, 'train_loop')

    def before_val(self, runner) -> None:
        self._check_files(runner, 'val_loop')

    def before_test(self, runner) -> None:
        self._check_files(runner, 'test_loop')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        self._check_batch(runner, data_batch)

    def before_val_iter(self, runner, batch_idx: int,
                        data_batch: Optional[dict] = None) -> None:
        self._check_batch(runner, data_batch)

    def before_test_iter(self, runner, batch_idx: int,
                         data_batch: Optional[dict] = None) -> None:
        self._check_batch(runner, data_batch)


__all__ = ['SegDataCheckHook', 'SegDataError']
