# Copyright (c) mmnextvit contributors. All rights reserved.
"""The synthetic shapes dataset: deterministic, idempotent, valid COCO whose
polygons are the objects that were drawn."""
import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmnextvit.bundled_data import shapes
from mmnextvit.bundled_data.shapes import ShapesConfig, draw_image, generate

SMALL = ShapesConfig(
    num_train=6, num_val=3, img_size=96, min_size=16, max_size=40, seed=3)


def _files(root):
    return sorted(
        osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root)
        for f in fs)


def test_same_parameters_give_identical_files(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    assert generate(a, SMALL, progress=False)
    assert generate(b, SMALL, progress=False)
    names = _files(a)
    assert names == _files(b)
    assert len([n for n in names if n.endswith('.png')]) == 9
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors


def test_an_image_does_not_depend_on_the_dataset_size():
    img_a, objs_a = draw_image(SMALL, 'train', 2)
    bigger = ShapesConfig(**{**SMALL.__dict__, 'num_train': 50})
    img_b, objs_b = draw_image(bigger, 'train', 2)
    assert np.array_equal(img_a, img_b)
    assert [o['polygon'] for o in objs_a] == [o['polygon'] for o in objs_b]
    # ... but the seed and the split do change it.
    other_seed = ShapesConfig(**{**SMALL.__dict__, 'seed': 4})
    assert not np.array_equal(img_a, draw_image(other_seed, 'train', 2)[0])
    assert not np.array_equal(img_a, draw_image(SMALL, 'val', 2)[0])


def test_second_run_is_a_no_op_and_new_parameters_regenerate(tmp_path):
    root = str(tmp_path / 'shapes')
    assert generate(root, SMALL, progress=False)
    ann = shapes.annotation_file(root, 'train')
    stamp = os.stat(ann).st_mtime_ns
    assert not generate(root, SMALL, progress=False)
    assert os.stat(ann).st_mtime_ns == stamp

    more = ShapesConfig(**{**SMALL.__dict__, 'num_val': 4})
    assert generate(root, more, progress=False)
    assert len(os.listdir(osp.join(root, 'val'))) == 4
    # An incomplete folder (a lost image) is made again as well.
    os.remove(osp.join(root, 'val', '000003.png'))
    assert generate(root, more, progress=False)
    assert osp.isfile(osp.join(root, 'val', '000003.png'))


def test_annotations_are_valid_coco_matching_the_pixels(tmp_path):
    cfg = ShapesConfig(
        num_train=2,
        num_val=12,
        img_size=128,
        min_size=20,
        max_size=60,
        max_objects=4,
        seed=0)
    root = str(tmp_path / 'shapes')
    generate(root, cfg, progress=False)
    coco = COCO(shapes.annotation_file(root, 'val'))
    assert [c['name']
            for c in coco.loadCats(coco.getCatIds())] == list(shapes.CLASSES)
    assert len(coco.getImgIds()) == 12
    seen = set()
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        pixels = cv2.imread(osp.join(root, 'val', info['file_name']))
        assert pixels.shape == (128, 128, 3)
        _, objects = draw_image(cfg, 'val', image_id - 1)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(anns) == len(objects) <= 4
        for ann, obj in zip(anns, objects):
            seen.add(ann['category_id'])
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
            assert 16 <= max(w, h) <= 62
            # The mask the COCO tools read from the polygon is exactly the
            # painted object.
            gt = coco.annToMask(ann).astype(bool)
            assert np.array_equal(gt, obj['mask'])
            assert ann['area'] == gt.sum()
    assert seen == {1, 2, 3}


def test_objects_do_not_overlap_and_stand_out():
    for index in range(10):
        img, objects = draw_image(SMALL, 'train', index)
        union = np.zeros(img.shape[:2], int)
        for obj in objects:
            union += obj['mask']
        assert union.max() <= 1
        background = img[union == 0].astype(float).mean(0)
        for obj in objects:
            colour = img[obj['mask']].astype(float).mean(0)
            assert np.linalg.norm(colour - background) > 30


def test_refuses_a_folder_it_did_not_make_and_bad_parameters(tmp_path):
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not made by this generator'):
        generate(str(foreign), SMALL, progress=False)
    assert os.listdir(foreign) == ['keep.txt']
    with pytest.raises(ValueError, match='--min-size'):
        generate(
            str(tmp_path / 'x'),
            ShapesConfig(min_size=150, img_size=192),
            progress=False)
    assert not (tmp_path / 'x').exists()


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes.json, 'dump', fail)
    with pytest.raises(KeyboardInterrupt):
        generate(str(tmp_path / 'shapes'), SMALL, progress=False)
    assert os.listdir(tmp_path) == []


def test_command_line(tmp_path, capsys):
    root = str(tmp_path / 'cli')
    assert shapes.main(['--root', root, '--num-train', '2', '--num-val',
                        '1']) == 0
    with open(osp.join(root, shapes.META_FILE)) as f:
        meta = json.load(f)
    assert meta['num_train'] == 2 and meta['classes'] == list(shapes.CLASSES)
    assert shapes.main(['--root', root, '--num-train', '2', '--num-val',
                        '1']) == 0
    assert 'up to date' in capsys.readouterr().out
    assert shapes.main(['--root', root, '--max-objects', '0']) == 2
    assert '--max-objects' in capsys.readouterr().err


@pytest.mark.parametrize(
    'missing', ['val/000002.png', 'annotations/instances_train.json'])
def test_an_incomplete_folder_is_written_again(tmp_path, missing):
    root = str(tmp_path / 'shapes')
    assert generate(root, SMALL, progress=False)
    os.remove(osp.join(root, missing))
    assert generate(root, SMALL, progress=False)
    assert osp.isfile(osp.join(root, missing))
    assert not generate(root, SMALL, progress=False)
