# Copyright (c) mmnextvit contributors. All rights reserved.
"""A small synthetic semantic-segmentation dataset in the ADE20K layout.

Each image is a grey, shaded, noisy background with a few filled circles,
squares and triangles of random size, position and rotation, crossed by a
few thin random strokes of clutter. The label maps follow ADE20K's
convention, so ``reduce_zero_label=True`` and mmseg's stock datasets apply
unchanged:

===========  =========================================================
label value  meaning
===========  =========================================================
0            "other": the clutter strokes; ignored in training and in
             the metric (``reduce_zero_label`` maps it to 255)
1            background
2, 3, 4      circle, square, triangle
===========  =========================================================

After ``reduce_zero_label`` the classes are :data:`CLASSES` in that order.
Every shape class has its own colour family (reddish circles, greenish
squares, bluish triangles, each with random hue, saturation and brightness
within its family) on a grey background, so a Next-ViT trained from scratch
for a few minutes on a CPU learns the classes; geometry alone would take far
longer. The hue families stay apart under mmseg's ``PhotoMetricDistortion``.

The data are made at run time and are a pure function of the parameters
(numpy's PCG64 stream per image, OpenCV drawing without anti-aliasing): the
same :class:`SegShapesConfig` gives the same pixels on every machine.
Layout written under ``root`` (ADE20K's ``ADEChallengeData2016`` layout)::

    root/
      images/training/000000.jpg ...     annotations/training/000000.png ...
      images/validation/000000.jpg ...   annotations/validation/000000.png ...
      seg_shapes_meta.json               # the parameters; regeneration no-op

Command line::

    python -m mmnextvit.bundled_data.seg_shapes [--root data/seg_shapes]
"""
import dataclasses
import math
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .generated import dataclass_main, generate_dataset

SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle')
CLASSES: Tuple[str, ...] = ('background', ) + SHAPES
# Label value of the ignored "other" pixels and of the background
# (ADE20K's convention: 0 is "other", classes count from 1).
OTHER, BACKGROUND = 0, 1
# OpenCV hue (0..180) at the centre of each shape's colour family: red,
# green, blue, 60 apart. A shape's hue lies within +-8 of it and
# PhotoMetricDistortion shifts hues by at most 18, so families never meet.
FAMILY_HUES = (0, 60, 120)
HUE_JITTER = 8
# Bumped whenever the drawing or the labelling changes, so stale folders
# get regenerated.
GENERATOR_VERSION = 2
META_FILE = 'seg_shapes_meta.json'
# ADE20K's split folder names, in the order used to seed the images.
SPLITS = ('training', 'validation')
IMG_SUFFIX, SEG_SUFFIX = '.jpg', '.png'
# High enough that compression noise stays below the generator's own pixel
# noise (sigma 8).
JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class SegShapesConfig:
    """Parameters of a semantic shapes dataset.

    Args:
        num_train (int): Training images. Defaults to 240.
        num_val (int): Held-out images. Defaults to 40.
        img_size (int): Side of the square images in pixels. Defaults to 64.
        min_objects (int): Fewest shapes per image. Defaults to 2.
        max_objects (int): Most shapes per image. Defaults to 4.
        min_size (int): Smallest shape diameter in pixels. Defaults to 16.
        max_size (int): Largest shape diameter in pixels. Defaults to 32.
        clutter (int): Most "other" strokes per image. Defaults to 2.
        seed (int): Seed of the whole dataset. Defaults to 0.
    """
    num_train: int = 240
    num_val: int = 40
    img_size: int = 64
    min_objects: int = 2
    max_objects: int = 4
    min_size: int = 16
    max_size: int = 32
    clutter: int = 2
    seed: int = 0

    def validate(self) -> None:
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(
                f'seg_shapes: num_train={self.num_train}, num_val='
                f'{self.num_val}; both need at least one image (--num-train, '
                '--num-val)')
        if self.img_size < 32:
            raise ValueError(
                f'seg_shapes: img_size must be >= 32 (the smallest input '
                f'Next-ViT takes), got {self.img_size}')
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                'seg_shapes: need 1 <= min_objects <= max_objects, got '
                f'{self.min_objects} and {self.max_objects}')
        if not 8 <= self.min_size <= self.max_size <= self.img_size // 2:
            raise ValueError(
                'seg_shapes: need 8 <= min_size <= max_size <= img_size / 2, '
                f'got {self.min_size}, {self.max_size} at img_size '
                f'{self.img_size}')
        if self.clutter < 0:
            raise ValueError('seg_shapes: clutter must be >= 0')

    def as_meta(self) -> dict:
        return dict(
            generator_version=GENERATOR_VERSION,
            classes=list(CLASSES),
            other_label=OTHER,
            **dataclasses.asdict(self))


# ----------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------
def _outline(kind: str, cx: float, cy: float, radius: float,
             angle: float) -> np.ndarray:
    """Integer vertices (N, 2) of a shape inscribed in a circle."""
    n = {'circle': 32, 'square': 4, 'triangle': 3}[kind]
    t = angle + 2 * math.pi * np.arange(n) / n
    xy = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)
    return np.round(xy).astype(np.int32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey (H, W, 3) float image: a brightness gradient, coarse blotches
    and a little colour noise."""
    corners = rng.uniform(50, 205, size=(2, 2)).astype(np.float32)
    grey = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
    blotches = rng.normal(0, 20, size=(8, 8)).astype(np.float32)
    grey += cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.repeat(grey[..., None], 3, axis=2)
    img += rng.normal(0, 8, size=(size, size, 3)).astype(np.float32)
    return img


def _family_colour(rng: np.random.Generator, shape: int) -> np.ndarray:
    """An RGB colour of the family of shape class ``shape``."""
    hue = (FAMILY_HUES[shape] +
           rng.integers(-HUE_JITTER, HUE_JITTER + 1)) % 180
    hsv = np.array([[[hue, rng.integers(150, 256),
                      rng.integers(110, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _place(rng: np.random.Generator, cfg: 'SegShapesConfig',
           boxes: List[Tuple[float, ...]]) -> Optional[Tuple[float, ...]]:
    """Centre and radius of a shape whose bounding square stays 2 px from
    the border and from the shapes already placed; None after 50 tries."""
    for _ in range(50):
        radius = rng.uniform(cfg.min_size, cfg.max_size) / 2
        cx, cy = rng.uniform(radius + 2, cfg.img_size - radius - 2, size=2)
        box = (cx - radius - 2, cy - radius - 2, cx + radius + 2,
               cy + radius + 2)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1]
               or b[3] <= box[1] for b in boxes):
            boxes.append(box)
            return cx, cy, radius
    return None


def draw_sample(cfg: 'SegShapesConfig', split: str,
                index: int) -> Tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of ``split`` (``'training'`` or ``'validation'``):
    an RGB uint8 image and its uint8 label map in ADE20K values (see the
    module docstring)."""
    # One independent stream per image: an image never depends on how many
    # images were made before it.
    rng = np.random.default_rng(
        [cfg.seed, SPLITS.index(split), index, GENERATOR_VERSION])
    size = cfg.img_size
    img = _background(rng, size)
    label = np.full((size, size), BACKGROUND, np.uint8)
    boxes: List[Tuple[float, ...]] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        placed = _place(rng, cfg, boxes)
        if placed is None:
            break
        shape = int(rng.integers(len(SHAPES)))
        pts = _outline(SHAPES[shape], *placed,
                       angle=rng.uniform(0, 2 * math.pi))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8)
        mask = mask.astype(bool)
        img[mask] = _family_colour(rng, shape) + rng.normal(
            0, 6, size=(int(mask.sum()), 3))
        label[mask] = BACKGROUND + 1 + shape
    for _ in range(int(rng.integers(0, cfg.clutter + 1))):
        stroke = np.zeros((size, size), np.uint8)
        start, end = rng.integers(0, size, size=(2, 2))
        cv2.line(stroke, (int(start[0]), int(start[1])),
                 (int(end[0]), int(end[1])), 1, int(rng.integers(1, 4)),
                 lineType=cv2.LINE_8)
        # Strokes lie on the background only: a shape stays whole.
        stroke = (stroke > 0) & (label == BACKGROUND)
        img[stroke] = rng.uniform(0, 255, size=3)
        label[stroke] = OTHER
    return np.clip(img, 0, 255).astype(np.uint8), label


def _write_split(cfg: SegShapesConfig, root: str, split: str,
                 progress: bool) -> None:
    num = cfg.num_train if split == 'training' else cfg.num_val
    img_dir = osp.join(root, 'images', split)
    seg_dir = osp.join(root, 'annotations', split)
    os.makedirs(img_dir)
    os.makedirs(seg_dir)
    for index in range(num):
        img, label = draw_sample(cfg, split, index)
        name = f'{index:06d}'
        # cv2 writes BGR; the generator thinks in RGB.
        cv2.imwrite(
            osp.join(img_dir, name + IMG_SUFFIX), img[..., ::-1],
            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        cv2.imwrite(osp.join(seg_dir, name + SEG_SUFFIX), label)
        if progress and ((index + 1) % 100 == 0 or index + 1 == num):
            print(f'[seg_shapes] {split}: {index + 1}/{num} images',
                  flush=True)


def _last_files(cfg: SegShapesConfig) -> List[str]:
    """Per split, its last image and label map (written last, so their
    presence implies the rest), relative to the dataset folder."""
    files = []
    for split in SPLITS:
        num = cfg.num_train if split == 'training' else cfg.num_val
        last = f'{num - 1:06d}'
        files += [
            f'images/{split}/{last}{IMG_SUFFIX}',
            f'annotations/{split}/{last}{SEG_SUFFIX}'
        ]
    return files


def generate(root: str = 'data/seg_shapes',
             cfg: Optional[SegShapesConfig] = None,
             progress: bool = True) -> bool:
    """Write the dataset described by ``cfg`` to ``root``, all at once,
    unless ``root`` already holds it (see
    :func:`~mmnextvit.bundled_data.generated.generate_dataset`). Returns
    whether files were written."""
    cfg = cfg or SegShapesConfig()

    def write(folder: str) -> None:
        for split in SPLITS:
            _write_split(cfg, folder, split, progress)

    return generate_dataset(
        root,
        cfg,
        'seg_shapes',
        META_FILE,
        _last_files(cfg),
        write,
        fix='pass another --root or remove it',
        summary=f'{cfg.num_train} training + {cfg.num_val} validation images',
        progress=progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return dataclass_main(
        SegShapesConfig, generate,
        'Generate the synthetic semantic-segmentation shapes dataset (ADE20K '
        'layout). A second run with the same arguments is a no-op.',
        'data/seg_shapes', argv)


if __name__ == '__main__':
    sys.exit(main())
