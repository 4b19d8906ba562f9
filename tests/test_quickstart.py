# Copyright (c) mmnextvit contributors. All rights reserved.
"""The "train on your own data" quick starts, run as a user runs them.

Each config is read from the docs themselves (the ``python`` block after a
``<!-- quickstart-config: NAME -->`` marker in README.md or docs/*.md) and
written, unchanged, into a project folder outside the repository. Generated
data are laid out where the config points (its ``data_root``, its
``ann_file`` / ``data_prefix``, its class names), an ImageNet checkpoint in
the upstream layout where it points, and this repository's
``tools/train.py`` trains a few iterations and evaluates from that folder.
The only thing added is a small overlay config (``_base_`` = the docs'
config) that shrinks the images, the batch and the schedule to seconds.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Dict

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MARKER = re.compile(
    r'<!-- quickstart-config: (\S+) -->\s*```python\n(.*?)```', re.S)


def docs_configs() -> Dict[str, str]:
    """Every quick-start config shown in README.md and docs/*.md, by the
    file name its marker gives."""
    files = [osp.join(REPO, 'README.md')]
    docs = osp.join(REPO, 'docs')
    files += sorted(
        osp.join(docs, f) for f in os.listdir(docs) if f.endswith('.md'))
    configs = {}
    for path in files:
        with open(path, encoding='utf-8') as f:
            for name, text in MARKER.findall(f.read()):
                assert name not in configs, f'{name} shown twice ({path})'
                configs[name] = text
    return configs


def test_the_docs_show_both_quickstart_configs():
    configs = docs_configs()
    assert set(configs) == {'my_detector.py', 'my_segmentor.py'}
    assert ("_base_ = 'mmnextvit::mask_rcnn/nextvit_s_1x.py'"
            in configs['my_detector.py'])
    assert "_base_ = 'mmnextvit::semfpn/" in configs['my_segmentor.py']


def write_project(tmp_path, name: str):
    """The docs' config in ``<tmp>/my_project/``; returns the project root
    (the folder the tools run in) and the config read back."""
    assert not str(tmp_path).startswith(REPO)
    text = docs_configs()[name]
    project = tmp_path / 'my_project'
    project.mkdir()
    (project / name).write_text(text, encoding='utf-8')
    import mmnextvit  # noqa: F401  (teaches Config the mmnextvit:: prefix)
    from mmengine.config import Config
    cfg = Config.fromfile(str(project / name))
    return tmp_path, cfg


def write_imagenet_checkpoint(root, cfg, with_extra_norm: bool) -> None:
    """A file in the upstream ImageNet layout (weights under ``model``)
    where the config's backbone reads its weights."""
    from mmnextvit.models import NextViT
    path = root / cfg.model.backbone.init_cfg.checkpoint
    assert not osp.isabs(cfg.model.backbone.init_cfg.checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = NextViT(arch='small', with_extra_norm=with_extra_norm).state_dict()
    torch.save(dict(model=state, epoch=299), path)


def train(root, overlay: str, name: str):
    """``python <repo>/tools/train.py my_project/<overlay>`` from ``root``
    with the overlay appended to the docs' config."""
    overlay_file = root / 'my_project' / f'small_{name}'
    overlay_file.write_text(f"_base_ = './{name}'\n" + overlay)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         f'my_project/small_{name}', '--work-dir', 'work'],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (root / 'work' / 'iter_2.pth').is_file(), proc.stdout[-3000:]
    return proc.stdout


# The backbone's log line for the ImageNet file the config names.
LOADED = re.compile(r"Next-ViT: loaded \d+ tensors from "
                    r"'checkpoints/nextvit_small_in1k_224\.pth' "
                    r"\(upstream-imagenet layout\)")

SCHEDULE = """
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=2)
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=2))
log_processor = dict(by_epoch=False)
"""

DET_OVERLAY = """
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(train_cfg=dict(rcnn=dict(sampler=dict(num=16))))
""" + SCHEDULE

SEG_OVERLAY = """
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=(64, 64)),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
""" + SCHEDULE


def test_coco_quickstart_trains_from_a_project_folder(tmp_path):
    from mmnextvit.bundled_data import shapes
    root, cfg = write_project(tmp_path, 'my_detector.py')
    classes = cfg.metainfo['classes']
    assert cfg.model.roi_head.bbox_head.num_classes == len(classes)
    assert cfg.model.roi_head.mask_head.num_classes == len(classes)
    assert len(classes) == len(shapes.CLASSES)

    # The generated data where the config looks for it, its categories
    # renamed to the config's classes.
    generated = tmp_path / 'generated'
    shapes.generate(
        str(generated),
        shapes.ShapesConfig(
            num_train=2, num_val=2, img_size=64, min_size=16, max_size=32),
        progress=False)
    data_root = root / cfg.data_root
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val')):
        dataset = cfg[loader].dataset
        assert dataset.data_root == cfg.data_root
        ann = data_root / dataset.ann_file
        ann.parent.mkdir(parents=True, exist_ok=True)
        coco = json.loads(
            open(shapes.annotation_file(str(generated), split)).read())
        for category, name in zip(coco['categories'], classes):
            category['name'] = name
        ann.write_text(json.dumps(coco))
        shutil.copytree(generated / split, data_root / dataset.data_prefix.img)
    assert (root / cfg.val_evaluator.ann_file ==
            data_root / cfg.val_dataloader.dataset.ann_file)
    write_imagenet_checkpoint(root, cfg, with_extra_norm=False)

    output = train(root, DET_OVERLAY, 'my_detector.py')
    assert LOADED.search(output), output[-3000:]
    assert 'coco/bbox_mAP' in output and 'coco/segm_mAP' in output


def test_segmentation_quickstart_trains_from_a_project_folder(tmp_path):
    from mmnextvit.bundled_data import seg_shapes
    root, cfg = write_project(tmp_path, 'my_segmentor.py')
    classes = cfg.train_dataloader.dataset.metainfo['classes']
    assert cfg.model.decode_head.num_classes == len(classes)
    # The generator's label values: 0 ignored, 1 background, 2.. shapes.
    assert len(classes) == len(seg_shapes.CLASSES)

    generated = tmp_path / 'generated'
    seg_shapes.generate(
        str(generated),
        seg_shapes.SegShapesConfig(num_train=4, num_val=2),
        progress=False)
    data_root = root / cfg.data_root
    for loader, split in (('train_dataloader', 'training'),
                          ('val_dataloader', 'validation')):
        dataset = cfg[loader].dataset
        assert dataset.data_root == cfg.data_root
        shutil.copytree(generated / 'images' / split,
                        data_root / dataset.data_prefix.img_path)
        shutil.copytree(generated / 'annotations' / split,
                        data_root / dataset.data_prefix.seg_map_path)
    write_imagenet_checkpoint(root, cfg, with_extra_norm=True)

    output = train(root, SEG_OVERLAY, 'my_segmentor.py')
    assert LOADED.search(output), output[-3000:]
    assert 'mIoU' in output


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))
