"""Bad input that the tools meet before (or at the start of) a run, each
ending in one line that names the input and the fix, with nothing written
(docs/reliability.md, "Bad input").

Complements tests/test_tools.py (missing or unparsable config, missing
dataset folder, annotation file or checkpoint, checkpoint of another model
or with other classes), tests/test_models/test_nextvit.py (the backbone's
own argument and input checks), tests/test_weights.py (weight files of
another variant) and tests/test_seg_data.py (segmentation label maps and
values). Here: the same backbone errors met through the tools, a whole-model
checkpoint of another Next-ViT variant, an input too small for the network
at test time, and the content of a COCO annotation file.
"""
import copy
import json
import os.path as osp
import runpy

import pytest
import torch
from helpers import assert_one_line_error
from reliability_helpers import REPO

import mmnextvit  # noqa: F401


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    from det_data import make_coco_instances, write_det_config
    root = tmp_path_factory.mktemp('bad_input')
    make_coco_instances(str(root / 'data'))
    config = write_det_config(str(root / 'det.py'), str(root / 'data'))
    return root, config


def _main(name):
    return runpy.run_path(osp.join(REPO, 'tools', name),
                          run_name='mmnextvit_tool')['main']


def fails_in_one_line(capsys, tool, argv, *words, status=2):
    """Run a tool's main() as the command line does; its stderr must be
    exactly one error line holding ``words``, with no traceback."""
    with pytest.raises(SystemExit) as info:
        _main(tool)([str(a) for a in argv])
    assert info.value.code == status
    return assert_one_line_error(capsys.readouterr().err, *words)


# --------------------------------------------------------------------------
# The model: the backbone's checks, met through tools/train.py
# --------------------------------------------------------------------------
@pytest.mark.parametrize('option, words', [
    ('model.backbone.arch=tiny', ["'tiny'", "'small'"]),
    ('model.backbone.arch.depths=[3,4,7,3]', ['multiple of 5']),
    ('model.backbone.out_indices=[0,5]', ['out_indices']),
    ('model.backbone.frozen_stages=7', ['frozen_stages=7']),
])
def test_bad_backbone_settings(det, tmp_path, capsys, option, words):
    _, config = det
    work = tmp_path / 'work'
    fails_in_one_line(capsys, 'train.py',
                      [config, '--work-dir', work, '--cfg-options', option],
                      'does not build', 'Next-ViT', *words)
    assert not work.exists()


def test_missing_pretrained_weights(det, tmp_path, capsys):
    """The primitive configs start from ImageNet weights under checkpoints/;
    without the file the Runner fails in init_weights, after creating the
    work dir (also when resuming)."""
    _, config = det
    missing = tmp_path / 'nextvit_small_in1k_224.pth'
    pretrained = tmp_path / 'pretrained.py'
    pretrained.write_text(
        f'_base_ = {config!r}\n'
        'model = dict(backbone=dict(init_cfg=dict(\n'
        f"    _delete_=True, type='Pretrained', checkpoint={str(missing)!r})))"
        '\n')
    work = tmp_path / 'work'
    fails_in_one_line(capsys, 'train.py', [pretrained, '--work-dir', work],
                      missing, 'model.backbone.init_cfg.checkpoint',
                      'model.backbone.init_cfg=None')
    assert not work.exists()


def test_checkpoint_of_another_variant(det, tmp_path, capsys):
    """A Next-ViT-B detector's backbone given to a Next-ViT-S config."""
    from mmnextvit.models import NextViT
    _, config = det
    base = tmp_path / 'base.pth'
    state = NextViT(arch='base', with_extra_norm=False).state_dict()
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in state.items()}}, str(base))
    work = tmp_path / 'work'
    fails_in_one_line(capsys, 'test.py',
                      [config, base, '--work-dir', work, '--cfg-options',
                       'model.backbone.arch=small'],
                      base, 'does not fit', 'a Next-ViT-base backbone',
                      'builds Next-ViT-small')
    assert not work.exists()


def test_input_too_small_for_the_network(det, tmp_path, capsys):
    """Images resized to 16 x 16 and not padded: the backbone's check names
    the size and the smallest one it takes; the tool stops in one line."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from mmdet.utils import register_all_modules
    _, config = det
    register_all_modules()
    weights = tmp_path / 'weights.pth'
    model = MODELS.build(Config.fromfile(config).model)
    torch.save({'state_dict': model.state_dict()}, str(weights))
    fails_in_one_line(capsys, 'test.py',
                      [config, weights, '--work-dir', tmp_path / 'work',
                       '--cfg-options',
                       'test_dataloader.dataset.pipeline.1.scale=(16,16)',
                       'model.data_preprocessor.pad_size_divisor=1'],
                      'Next-ViT cannot take a 16x16 input',
                      'at least 32x32')


# --------------------------------------------------------------------------
# COCO annotation files
# --------------------------------------------------------------------------
def _variant(det, name, change):
    """A copy of the training annotations with ``change`` applied."""
    root, _ = det
    with open(root / 'data' / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    changed = copy.deepcopy(coco)
    replaced = change(changed)  # edits in place, or returns a new object
    coco = changed if replaced is None else replaced
    path = root / 'data' / 'annotations' / f'{name}.json'
    path.write_text(json.dumps(coco))
    return path


def _no_images(coco):
    coco['images'], coco['annotations'] = [], []


def _missing_image(coco):
    coco['images'][1]['file_name'] = 'gone.png'


def _undefined_category(coco):
    coco['annotations'][0]['category_id'] = 7


def _no_objects(coco):
    coco['annotations'] = []


@pytest.mark.parametrize('name, change, options, words', [
    ('no_images', _no_images, [], ['is empty', 'lists no images']),
    ('missing_image', _missing_image, [],
     ['gone.png', 'does not exist', 'data_prefix.img']),
    ('undefined_category', _undefined_category, [],
     ['category_id 7', "not among the file's categories [1, 2]"]),
    ('no_objects', _no_objects,
     ['train_dataloader.dataset.filter_cfg.filter_empty_gt=True'],
     ['empty after filtering', "['square', 'disc']"]),
    ('other_classes', lambda coco: None,
     ["train_dataloader.dataset.metainfo.classes=['square','hexagon']"],
     ["['hexagon']", 'are not categories']),
    ('not_coco', lambda coco: {'info': 'no lists'}, [],
     ['is not a COCO instances file', 'KeyError']),
])
def test_annotation_file_problems(det, tmp_path, capsys, name, change,
                                  options, words):
    _, config = det
    ann = _variant(det, name, change)
    work = tmp_path / 'work'
    fails_in_one_line(capsys, 'train.py',
                      [config, '--work-dir', work, '--cfg-options',
                       f'train_dataloader.dataset.ann_file={ann}', *options],
                      *words)
    assert not work.exists()


def test_test_tool_checks_its_dataset_too(det, tmp_path, capsys):
    _, config = det
    ann = _variant(det, 'missing_image_test', _missing_image)
    work = tmp_path / 'work'
    fails_in_one_line(capsys, 'test.py',
                      [config, tmp_path / 'unused.pth', '--work-dir', work,
                       '--cfg-options',
                       f'test_dataloader.dataset.ann_file={ann}',
                       'test_dataloader.dataset.data_prefix.img=train/'],
                      'gone.png', 'does not exist')
    assert not work.exists()
