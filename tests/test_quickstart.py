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


TUTORIAL = osp.join(REPO, 'docs', 'tutorial.md')
# What the chain's test adds to the page's config (appended to the same
# file, so that every command runs as written): 64x64 images, no worker
# processes, fewer test-time proposals, one validation and one checkpoint
# (the 12th epoch's).
CHAIN_OVERLAY = """
# --- added by tests/test_quickstart.py: seconds, not hours ---
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
# The page's dicts are changed in place (a new dict of the same name in the
# same file would replace them before they are merged with _base_).
for loader, steps in ((train_dataloader, train_pipeline),
                      (val_dataloader, test_pipeline)):
    loader.update(num_workers=0, persistent_workers=False)
    loader['dataset']['pipeline'] = steps
model['train_cfg'] = dict(rcnn=dict(sampler=dict(num=16)))
# At most four objects in a 64x64 image: 100 proposals rather than 1000 and
# 20 detections rather than 100 (the RoI heads run on each: 4 of the 5
# commands evaluate or calibrate on these images).
model['test_cfg'] = dict(rpn=dict(max_per_img=100), rcnn=dict(max_per_img=20))
train_cfg = dict(val_interval=12)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=12))
"""
# Training images: one batch of 2 per process, one iteration per epoch.
CHAIN_TRAIN_IMAGES = 8


def tutorial_commands():
    """The shell commands of docs/tutorial.md, in order."""
    with open(TUTORIAL, encoding='utf-8') as f:
        text = f.read()
    return [
        line.strip()
        for block in re.findall(r'```bash\n(.*?)```', text, re.S)
        for line in block.splitlines() if line.strip()
    ]


def tutorial_work_dir_files():
    """The files the page's table says an int8 work dir holds."""
    with open(TUTORIAL, encoding='utf-8') as f:
        text = f.read()
    return {
        name.rstrip('/')
        for row in re.findall(r'^\| (`[^|]*`) \|', text, re.M)
        for name in re.findall(r'`([^`]+)`', row)
        if '.' in name or name.endswith('/')
    }


def run_as_written(command: str, root, port: str) -> str:
    """``command`` from the page, in ``root``: this checkout for
    /path/to/mmnextvit, this interpreter for python (and for the launcher
    of dist_train.sh)."""
    import shlex
    argv = [
        w.replace('/path/to/mmnextvit', REPO) for w in shlex.split(command)
    ]
    if argv[0] == 'python':
        argv[0] = sys.executable
    env = dict(os.environ, PYTHON=sys.executable, PORT=port,
               OMP_NUM_THREADS='1')
    proc = subprocess.run(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    errors = [line for line in proc.stdout.splitlines() if 'error' in line]
    assert proc.returncode == 0, '\n'.join(
        [command, proc.stdout[-3000:], 'error lines:'] + errors[:10])
    return proc.stdout


def test_the_tutorial_chain_runs_from_a_project_folder(tmp_path):
    """docs/tutorial.md from a folder outside the repository, command for
    command: 4 training processes (the CPU standing in for 4 GPUs) with
    --auto-scale-lr, the test tool, the OpenVINO int8 export calibrated on
    a folder of unlabelled images with --test, and the
    application on one of them; the work dir's files are the page's."""
    import socket

    import cv2
    import numpy as np

    from mmnextvit.bundled_data import shapes
    commands = tutorial_commands()
    assert commands[0] == 'cd my_project_root' and len(commands) == 5
    assert '--auto-scale-lr' in commands[1] and ' 4 ' in commands[1]
    root, cfg = write_project(tmp_path, 'my_detector.py')
    with open(root / 'my_project' / 'my_detector.py', 'a') as f:
        f.write(CHAIN_OVERLAY)
    classes = cfg.metainfo['classes']
    assert len(classes) == len(shapes.CLASSES)
    generated = tmp_path / 'generated'
    shapes.generate(
        str(generated),
        shapes.ShapesConfig(num_train=CHAIN_TRAIN_IMAGES, num_val=10,
                            img_size=64, min_size=16, max_size=32),
        progress=False)
    data_root = root / cfg.data_root
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val')):
        dataset = cfg[loader].dataset
        ann = data_root / dataset.ann_file
        ann.parent.mkdir(parents=True, exist_ok=True)
        coco = json.loads(
            open(shapes.annotation_file(str(generated), split)).read())
        for category, name in zip(coco['categories'], classes):
            category['name'] = name
        ann.write_text(json.dumps(coco))
        shutil.copytree(generated / split, data_root / dataset.data_prefix.img)
    # The unlabelled images: the held-out ones beyond the first two, as
    # JPEG files named as a camera might.
    own = root / 'data' / 'my_images'
    own.mkdir(parents=True)
    held_out = sorted((generated / 'val').glob('*.png'))
    for n, image in enumerate(held_out[2:], start=1):
        cv2.imwrite(str(own / f'{n:04d}.jpg'), cv2.imread(str(image)))
    write_imagenet_checkpoint(root, cfg, with_extra_norm=False)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = str(s.getsockname()[1])

    train_log = run_as_written(commands[1], root, port)
    assert LOADED.search(train_log), train_log[-3000:]
    assert ('LR is set based on batch size of 16 and the current batch '
            'size is 8. Scaling the original LR by 0.5.') in train_log
    work = root / 'work_dirs' / 'my_detector'
    assert (work / 'epoch_12.pth').is_file(), sorted(os.listdir(work))

    test_log = run_as_written(commands[2], root, port)
    assert re.search(r'coco/bbox_mAP: \S+ +coco/bbox_mAP_50', test_log)
    assert 'coco/segm_mAP:' in test_log

    deploy_log = run_as_written(commands[3], root, port)
    assert re.search(
        r'^int8: openvino model quantized on 8 images of data/my_images;',
        deploy_log, re.M), deploy_log[-3000:]
    assert len(re.findall(r'^int8 vs float coco/(bbox|segm)_mAP: ',
                          deploy_log, re.M)) == 2, deploy_log[-3000:]
    deployed = root / 'work_dirs' / 'my_detector_openvino_int8'
    assert set(os.listdir(deployed)) == tutorial_work_dir_files()

    app_log = run_as_written(commands[4], root, port)
    picture = cv2.imread(
        str(deployed / '0001_pred.jpg'))
    assert picture is not None and picture.shape[:2] == (64, 64)
    for line in app_log.splitlines()[:-1]:
        assert re.fullmatch(
            r'label [0-2] score (0\.[3-9]\d\d|1\.000) box \[.*\]', line)
    # The page's Python lines and the keys its table gives.
    sys.path.insert(0, osp.join(REPO, 'demo'))
    try:
        from deployed_app import DeployedModel
    finally:
        sys.path.pop(0)
    result = DeployedModel(str(deployed))(cv2.imread(str(own / '0001.jpg')))
    assert set(result) == {'boxes', 'scores', 'labels', 'masks'}
    count = len(result['scores'])
    assert result['boxes'].shape == (count, 4)
    assert result['boxes'].dtype == np.float32
    assert result['masks'].shape == (count, 64, 64)
    assert result['masks'].dtype == bool
    assert set(result['labels'].tolist()) <= {0, 1, 2}
    assert list(result['scores']) == sorted(result['scores'], reverse=True)


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
