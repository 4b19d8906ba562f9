"""A tiny COCO-format instance-segmentation dataset and a Mask R-CNN config
that reads it, for tests of the tools.

The data is made at run time (deterministic for a seed): squares and discs
of random colour on a noisy background, with polygon masks, in the folder
layout of COCO (``train/``, ``val/``, ``annotations/instances_*.json``).
The config inherits ``configs/mask_rcnn/nextvit_s_1x.py`` and changes only
what a quick test on a CPU needs: the data, the image size, a short
schedule, fp32, no pretrained weights, fewer backbone blocks, a narrower box
head and a smaller proposal budget.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, Sequence

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_BASE = osp.join(REPO, 'configs', 'mask_rcnn', 'nextvit_s_1x.py')

CLASSES = ('square', 'disc')


def _polygon(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    if kind == 'square':
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r),
               (cx - r, cy + r)]
    else:
        pts = [(cx + r * math.cos(2 * math.pi * i / 16),
                cy + r * math.sin(2 * math.pi * i / 16)) for i in range(16)]
    return np.array(pts, dtype=np.float32)


def make_coco_instances(root: str,
                        splits: Dict[str, int] = None,
                        size: int = 96,
                        seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root``; returns the annotation file of
    each split. Every image holds one to three non-overlapping objects."""
    splits = splits or {'train': 4, 'val': 2}
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = {}
    for split, count in splits.items():
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            taken = []
            for _ in range(int(rng.integers(1, 4))):
                for _attempt in range(20):
                    r = float(rng.uniform(size * 0.1, size * 0.2))
                    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
                    if all(math.hypot(cx - x, cy - y) > r + q + 2
                           for x, y, q in taken):
                        break
                else:
                    continue
                taken.append((cx, cy, r))
                label = int(rng.integers(0, len(CLASSES)))
                poly = _polygon(CLASSES[label], cx, cy, r)
                colour = [int(c) for c in rng.integers(120, 256, 3)]
                cv2.fillPoly(image, [np.round(poly).astype(np.int32)],
                             colour)
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=index + 1,
                        category_id=label + 1,
                        segmentation=[poly.flatten().round(2).tolist()],
                        area=float(cv2.contourArea(poly)),
                        bbox=[float(x0), float(y0),
                              float(x1 - x0), float(y1 - y0)],
                        iscrowd=0))
            name = f'{split}_{index:03d}.png'
            cv2.imwrite(osp.join(root, split, name), image)
            images.append(
                dict(id=index + 1, file_name=name, width=size, height=size))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(
                dict(
                    images=images,
                    annotations=annotations,
                    categories=[
                        dict(id=i + 1, name=name)
                        for i, name in enumerate(CLASSES)
                    ]), f)
        ann_files[split] = ann_file
    return ann_files


def write_det_config(path: str,
                     data_root: str,
                     size: int = 96,
                     max_epochs: int = 1,
                     base: str = DET_BASE,
                     extra: Sequence[str] = ()) -> str:
    """Write a config that trains ``base`` on the data in ``data_root`` for
    ``max_epochs`` epochs (two iterations each at the defaults) and
    validates after each; returns ``path``."""
    data_root = osp.abspath(data_root) + '/'
    text = f'''
_base_ = {base!r}

data_root = {data_root!r}
metainfo = dict(classes={CLASSES!r}, palette=[(220, 20, 60), (0, 128, 255)])
img_scale = ({size}, {size})

model = dict(
    # One block less per stage and a narrower box head than Next-ViT-S
    # Mask R-CNN: a third of the parameters and of the checkpoint size,
    # the same classes of layers and the same tool paths.
    backbone=dict(
        arch=dict(
            _delete_=True,
            stem_channels=(64, 32, 64), depths=(1, 1, 5, 1),
            drop_path_rate=0.1),
        init_cfg=None),
    roi_head=dict(
        bbox_head=dict(num_classes={len(CLASSES)}, fc_out_channels=256),
        mask_head=dict(num_classes={len(CLASSES)})),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=1))
randomness = dict(seed=0)
'''
    text += '\n'.join(extra) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return path
