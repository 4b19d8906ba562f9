"""The bundled semantic-segmentation data (mmnextvit.bundled_data.seg_shapes)
and the checks that turn bad segmentation data into one clear line."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import assert_one_line_error
from mmengine.config import Config

from mmnextvit.bundled_data import seg_shapes
from mmnextvit.data_checks.segmentation import (SegDataError,
                                                check_label_values,
                                                check_seg_files)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CPU_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                      'nextvit_s_seg-shapes-cpu.py')
SMALL = seg_shapes.SegShapesConfig(num_train=6, num_val=3)


def files(root):
    return sorted(
        osp.relpath(osp.join(folder, name), root)
        for folder, _, names in os.walk(root) for name in names)


def read_label(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------
def test_generator_writes_the_ade20k_layout(tmp_path):
    root = str(tmp_path / 'seg_shapes')
    assert seg_shapes.generate(root, SMALL, progress=False) is True
    expected = [seg_shapes.META_FILE]
    for split, num in (('training', 6), ('validation', 3)):
        for i in range(num):
            expected += [f'images/{split}/{i:06d}.jpg',
                         f'annotations/{split}/{i:06d}.png']
    assert files(root) == sorted(expected)
    label = read_label(osp.join(root, 'annotations/training/000000.png'))
    image = cv2.imread(osp.join(root, 'images/training/000000.jpg'))
    assert label.dtype == np.uint8 and label.shape == (64, 64)
    assert image.shape == (64, 64, 3)
    # A second call with the same parameters writes nothing.
    stamp = os.stat(osp.join(root, seg_shapes.META_FILE)).st_mtime_ns
    assert seg_shapes.generate(root, SMALL, progress=False) is False
    assert os.stat(osp.join(root,
                            seg_shapes.META_FILE)).st_mtime_ns == stamp


def test_generator_is_deterministic(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    seg_shapes.generate(a, SMALL, progress=False)
    seg_shapes.generate(b, SMALL, progress=False)
    for name in files(a):
        with open(osp.join(a, name), 'rb') as fa, \
                open(osp.join(b, name), 'rb') as fb:
            assert fa.read() == fb.read(), name
    # An image depends on its index and the seed only, not on how many
    # images the dataset has.
    more = seg_shapes.SegShapesConfig(num_train=8, num_val=3)
    img, label = seg_shapes.draw_sample(more, 'training', 5)
    img_small, label_small = seg_shapes.draw_sample(SMALL, 'training', 5)
    assert np.array_equal(img, img_small)
    assert np.array_equal(label, label_small)
    other = seg_shapes.draw_sample(
        seg_shapes.SegShapesConfig(seed=1), 'training', 5)[1]
    assert not np.array_equal(label, other)


def test_labels_follow_ade20k_conventions():
    """Values 0 ("other", ignored) and 1..4; each shape class has its own
    colour family, as the module documents."""
    cfg = seg_shapes.SegShapesConfig()
    counts = np.zeros(5, np.int64)
    hues = {k: [] for k in range(2, 5)}
    for index in range(30):
        img, label = seg_shapes.draw_sample(cfg, 'training', index)
        counts += np.bincount(label.ravel(), minlength=5)[:5]
        assert label.max() <= 4
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        for value in hues:
            if (label == value).any():
                hues[value].append(np.median(hsv[..., 0][label == value]))
    assert (counts > 0).all(), counts
    assert counts[1] == counts.max()  # background
    for value, family_hue in zip((2, 3, 4), seg_shapes.FAMILY_HUES):
        distance = np.abs((np.array(hues[value]) - family_hue + 90) % 180
                          - 90)
        assert distance.max() <= seg_shapes.HUE_JITTER + 2, value


def test_cpu_config_reads_the_data_with_reduce_zero_label(tmp_path):
    root = str(tmp_path / 'seg_shapes')
    seg_shapes.generate(root, SMALL, progress=False)
    cfg = Config.fromfile(CPU_CONFIG)
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.data_root = root
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 3
    assert dataset.metainfo['classes'] == seg_shapes.CLASSES
    sample = dataset[0]['data_samples']
    loaded = sample.gt_sem_seg.data.numpy()[0]
    raw = read_label(osp.join(root, 'annotations/validation/000000.png'))
    # File value v becomes class v - 1; "other" (0) becomes ignored (255).
    expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    assert np.array_equal(loaded, expected)
    assert cfg.model.decode_head.num_classes == len(seg_shapes.CLASSES)


def test_generator_command_line(tmp_path):
    root = str(tmp_path / 'cli')
    result = subprocess.run(
        [sys.executable, '-m', 'mmnextvit.bundled_data.seg_shapes', '--root',
         root, '--num-train', '2', '--num-val', '1'],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(files(osp.join(root, 'images'))) == 3
    bad = subprocess.run(
        [sys.executable, '-m', 'mmnextvit.bundled_data.seg_shapes', '--root',
         str(tmp_path / 'bad'), '--img-size', '16'],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2
    assert assert_one_line_error(bad.stderr).startswith(
        'error: seg_shapes: img_size must be >= 32')
    assert not osp.exists(str(tmp_path / 'bad'))


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
@pytest.fixture
def small_data(tmp_path):
    root = str(tmp_path / 'seg_shapes')
    seg_shapes.generate(root, SMALL, progress=False)
    cfg = Config.fromfile(CPU_CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    return root, cfg


def test_check_seg_files_accepts_good_data(small_data):
    _, cfg = small_data
    # train and val; test_dataloader is the val loader again.
    assert check_seg_files(cfg) == 9


def test_missing_data_folder_is_named(small_data):
    root, cfg = small_data
    shutil.rmtree(osp.join(root, 'annotations', 'validation'))
    with pytest.raises(SegDataError) as err:
        check_seg_files(cfg)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(
        f"data folder '{root}/annotations/validation' "
        f'(val_dataloader.dataset.data_prefix.seg_map_path) does not exist')


def test_image_without_label_map_is_named(small_data):
    root, cfg = small_data
    os.remove(osp.join(root, 'annotations', 'training', '000004.png'))
    os.remove(osp.join(root, 'annotations', 'training', '000002.png'))
    with pytest.raises(SegDataError) as err:
        check_seg_files(cfg)
    assert str(err.value) == (
        f"image '{root}/images/training/000002.jpg' has no label map "
        f"'{root}/annotations/training/000002.png' (and 1 more); add the "
        f'label map or move the image out of {root}/images/training')


def test_label_values_outside_the_classes_are_named():
    label = np.array([[0, 1, 255], [3, 7, 9]], np.uint8)
    with pytest.raises(SegDataError) as err:
        check_label_values(label, 4, 255, 'ann/a.png')
    assert str(err.value).startswith(
        "label map 'ann/a.png' has values 7, 9 outside the 4 classes of the "
        'model (valid: 0..3 (255 is ignored))')
    # With reduce_zero_label the message gives the values in the file.
    with pytest.raises(SegDataError) as err:
        check_label_values(label, 4, 255, 'ann/a.png',
                           reduce_zero_label=True)
    assert 'has values 8, 10 outside the 4 classes' in str(err.value)
    assert 'valid: 1..4 (0 and 255 are ignored' in str(err.value)
    check_label_values(np.array([[0, 3, 255]]), 4, 255)


def test_hook_stops_training_at_the_first_bad_label_map(small_data, tmp_path):
    """End to end through mmseg's stock train.py: a label map with a value
    past the classes stops the run before the model sees it, with the
    file's name; without the hook the loss would fail with an index
    error."""
    root, cfg = small_data
    for name in os.listdir(osp.join(root, 'annotations', 'training')):
        path = osp.join(root, 'annotations', 'training', name)
        label = read_label(path)
        # Class 6 after reduce_zero_label; there are 4. The whole map, so
        # that every random crop of the unseeded pipeline keeps it.
        label[:] = 7
        cv2.imwrite(path, label)
    import mmseg
    train_py = osp.join(
        osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    result = subprocess.run(
        [sys.executable, train_py, CPU_CONFIG, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options',
         f'train_dataloader.dataset.data_root={root}',
         f'val_dataloader.dataset.data_root={root}',
         f'test_dataloader.dataset.data_root={root}',
         'train_cfg.max_iters=2'],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode != 0
    # mmseg's stock train.py prints the traceback of what stops it: the
    # hook's error must be the one, and no error of the loss besides it.
    errors = [line for line in result.stderr.splitlines()
              if re.match(r'^[\w.]*(Error|Exception)\b', line)]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(
        'mmnextvit.data_checks.segmentation.SegDataError: '
        f"label map '{root}/annotations/training/")
    assert 'has values 7 outside the 4 classes' in errors[0]
    assert errors[0] == result.stderr.strip().splitlines()[-1]


def test_hook_checks_files_and_labels_of_every_loop(small_data):
    """The hook's parts without a training run: the built dataset's label
    maps before a loop, and a test batch's labels (nested one list per view
    under test-time augmentation, the segmentor inside a wrapper)."""
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.registry import DATASETS
    from mmseg.structures import SegDataSample
    from types import SimpleNamespace

    from mmnextvit.engine import SegDataCheckHook

    root, cfg = small_data
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    head = SimpleNamespace(num_classes=4, ignore_index=255)
    segmentor = SimpleNamespace(decode_head=head)
    runner = SimpleNamespace(
        model=SimpleNamespace(module=segmentor),  # like SegTTAModel
        test_loop=SimpleNamespace(
            dataloader=SimpleNamespace(dataset=dataset)))
    hook = SegDataCheckHook()
    hook.before_test(runner)  # all label maps there

    def sample(value):
        data = SegDataSample(metainfo=dict(
            seg_map_path='x.png', reduce_zero_label=True))
        data.gt_sem_seg = PixelData(
            data=torch.full((1, 4, 4), value, dtype=torch.uint8))
        return data

    good = dict(data_samples=[[sample(3), sample(255)], [sample(0)]])
    hook.before_test_iter(runner, 0, good)
    bad = dict(data_samples=[[sample(3)], [sample(4)]])
    with pytest.raises(SegDataError, match="label map 'x.png' has values 5"):
        hook.before_test_iter(runner, 1, bad)

    os.remove(osp.join(root, 'annotations', 'validation', '000001.png'))
    with pytest.raises(SegDataError, match='000001.jpg.* has no label map'):
        SegDataCheckHook().before_test(runner)


@pytest.mark.parametrize('missing', [
    'images/validation/000002.jpg', 'annotations/training/000005.png'
])
def test_generator_rewrites_an_incomplete_folder(tmp_path, missing):
    root = str(tmp_path / 'seg_shapes')
    seg_shapes.generate(root, SMALL, progress=False)
    os.remove(osp.join(root, missing))
    assert seg_shapes.generate(root, SMALL, progress=False) is True
    assert osp.isfile(osp.join(root, missing))
    # Other parameters: the folder is made again with them.
    assert seg_shapes.generate(
        root, seg_shapes.SegShapesConfig(num_train=2, num_val=1),
        progress=False) is True
    assert not osp.exists(osp.join(root, 'images/training/000002.jpg'))
