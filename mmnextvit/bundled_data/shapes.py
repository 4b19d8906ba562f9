# Copyright (c) mmnextvit contributors. All rights reserved.
"""A small synthetic instance-segmentation dataset in COCO format.

Each image is a noisy, shaded, greyish background with a few filled shapes
of random size, position and rotation: circles, squares and triangles, the
three classes. Each class also has its own colour family (reddish circles,
greenish squares, bluish triangles, with random hue, saturation and
brightness within the family): a Next-ViT trained from scratch on a CPU for
a few minutes tells the classes apart with both cues, while shape alone
took it far longer (600 iterations: bbox AP 0.20-0.30, most errors class
confusions). Objects do not overlap, so the polygon of an object is exactly
its instance mask.

The data are made at run time and are a pure function of the parameters:
the same :class:`ShapesConfig` gives the same images and annotation files on
every machine (numpy's PCG64 stream per image; objects are painted on the
pixels of pycocotools' rasterisation of their polygon; lossless PNG).
Layout written under ``root``::

    root/
      train/000000.png ...      val/000000.png ...
      annotations/instances_train.json
      annotations/instances_val.json
      shapes_meta.json          # the parameters; makes regeneration a no-op

Command line::

    python -m mmnextvit.bundled_data.shapes [--root data/shapes] \\
        [--num-train N]
"""
import dataclasses
import json
import math
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .generated import dataclass_main, generate_dataset

CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle')
# Bumped whenever the drawing changes, so stale folders get regenerated.
GENERATOR_VERSION = 2
META_FILE = 'shapes_meta.json'
SPLITS = ('train', 'val')


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Parameters of a shapes dataset.

    Args:
        num_train (int): Training images. Defaults to 300.
        num_val (int): Held-out images. Defaults to 50.
        img_size (int): Side of the square images in pixels. Defaults to 256.
        min_objects (int): Fewest objects per image. Defaults to 1.
        max_objects (int): Most objects per image. Defaults to 4.
        min_size (int): Smallest object diameter in pixels. Defaults to 40.
        max_size (int): Largest object diameter in pixels. Defaults to 112.
        seed (int): Seed of the whole dataset. Defaults to 0.
    """
    num_train: int = 300
    num_val: int = 50
    img_size: int = 256
    min_objects: int = 1
    max_objects: int = 4
    min_size: int = 40
    max_size: int = 112
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the offending options."""
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f'shapes: num_train={self.num_train}, num_val='
                             f'{self.num_val}; both need at least one image '
                             '(--num-train, --num-val)')
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f'shapes: min_objects={self.min_objects}, max_objects='
                f'{self.max_objects}; need 1 <= min_objects <= max_objects '
                '(--min-objects, --max-objects)')
        if not 8 <= self.min_size <= self.max_size <= self.img_size // 2:
            raise ValueError(
                f'shapes: min_size={self.min_size}, max_size={self.max_size}'
                f', img_size={self.img_size}; need 8 <= min_size <= max_size'
                ' <= img_size / 2 (--min-size, --max-size, --img-size)')

    def as_meta(self) -> dict:
        return dict(
            generator_version=GENERATOR_VERSION,
            classes=list(CLASSES),
            **dataclasses.asdict(self))


# ----------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------
def _outline(kind: str, cx: float, cy: float, radius: float,
             angle: float) -> np.ndarray:
    """Vertices (N, 2) of a shape inscribed in a circle of ``radius``."""
    if kind == 'circle':
        n, angle = 48, 0.
    elif kind == 'square':
        n = 4
    elif kind == 'triangle':
        n = 3
    else:
        raise ValueError(f'shapes: unknown shape {kind!r}')
    t = angle + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)


def _polygon_mask(polygon: List[float], size: int) -> np.ndarray:
    rle = mask_utils.frPyObjects([polygon], size, size)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, slightly tinted grey gradient, coarse blotches and pixel
    noise (float RGB in 0..255)."""
    corners = (rng.uniform(50, 200, size=(2, 2, 1)) +
               rng.normal(0, 10, size=(2, 2, 3))).astype(np.float32)
    img = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
    blotches = rng.normal(0, 20, size=(8, 8, 1)).astype(np.float32)
    img += cv2.resize(
        blotches, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
    img += rng.normal(0, 12, size=(size, size, 3)).astype(np.float32)
    return np.clip(img, 0, 255)


# Centre of each class's hue family on OpenCV's 0..179 hue scale (red,
# green, blue); a colour's hue lies within HUE_SPREAD of it.
CLASS_HUES = (0, 60, 120)
HUE_SPREAD = 12


def _class_colour(rng: np.random.Generator, category: int,
                  local_mean: np.ndarray) -> np.ndarray:
    """A saturated colour of the class's family, at least 80 (L2, 0..255
    RGB) away from the background under the object, so every object shows.
    """
    for _ in range(100):
        hue = (CLASS_HUES[category] +
               rng.uniform(-HUE_SPREAD, HUE_SPREAD)) % 180
        hsv = np.array(
            [[[hue, rng.uniform(150, 255),
               rng.uniform(120, 255)]]], np.float32)
        colour = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        if np.linalg.norm(colour - local_mean) >= 80:
            return colour.astype(np.float64)
    hsv = np.array([[[CLASS_HUES[category], 255, 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _place(rng: np.random.Generator, cfg: ShapesConfig,
           boxes: List[Tuple[float, float, float, float]]):
    """A centre and radius whose bounding square keeps 4 px from the image
    border and from every box already placed; None after 50 tries."""
    for _ in range(50):
        radius = rng.uniform(cfg.min_size, cfg.max_size) / 2
        cx, cy = rng.uniform(radius + 4, cfg.img_size - radius - 4, size=2)
        box = (cx - radius - 4, cy - radius - 4, cx + radius + 4,
               cy + radius + 4)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1]
               or b[3] <= box[1] for b in boxes):
            return cx, cy, radius, box
    return None


def draw_image(cfg: ShapesConfig, split: str,
               index: int) -> Tuple[np.ndarray, List[dict]]:
    """Image ``index`` of ``split``: an RGB uint8 array and its objects as
    dicts with ``category`` (index into :data:`CLASSES`), ``polygon``
    (flat list of pixel coordinates) and ``mask`` (bool array)."""
    # One independent stream per image: an image never depends on how many
    # images were made before it.
    rng = np.random.default_rng(
        [cfg.seed, SPLITS.index(split), index, GENERATOR_VERSION])
    size = cfg.img_size
    img = _background(rng, size)
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects, boxes = [], []
    for _ in range(count):
        placed = _place(rng, cfg, boxes)
        if placed is None:
            break
        cx, cy, radius, box = placed
        boxes.append(box)
        category = int(rng.integers(len(CLASSES)))
        kind = CLASSES[category]
        angle = rng.uniform(0, 2 * math.pi)
        polygon = np.round(_outline(kind, cx, cy, radius, angle),
                           2).ravel().tolist()
        # Paint exactly the pixels of COCO's own rasterisation of the
        # polygon, so the annotation is the object and not an approximation.
        mask = _polygon_mask(polygon, size)
        colour = _class_colour(rng, category, img[mask].mean(0))
        shading = rng.normal(0, 8, size=(int(mask.sum()), 3))
        img[mask] = np.clip(colour + shading, 0, 255)
        objects.append(dict(category=category, polygon=polygon, mask=mask))
    return img.astype(np.uint8), objects


# ----------------------------------------------------------------------
# COCO files
# ----------------------------------------------------------------------
def _coco_annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    # COCO's convention: the box is the polygon's extent, the area that of
    # its rasterisation (the painted pixels).
    xy = np.asarray(obj['polygon']).reshape(-1, 2)
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['category'] + 1,
        segmentation=[obj['polygon']],
        area=float(obj['mask'].sum()),
        bbox=[float(x0), float(y0),
              float(x1 - x0),
              float(y1 - y0)],
        iscrowd=0)


def _write_split(cfg: ShapesConfig, root: str, split: str,
                 progress: bool) -> dict:
    num = cfg.num_train if split == 'train' else cfg.num_val
    os.makedirs(osp.join(root, split))
    images, annotations = [], []
    for index in range(num):
        img, objects = draw_image(cfg, split, index)
        file_name = f'{index:06d}.png'
        # cv2 writes BGR; the generator thinks in RGB.
        cv2.imwrite(osp.join(root, split, file_name), img[..., ::-1])
        image_id = index + 1
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                width=cfg.img_size,
                height=cfg.img_size))
        for obj in objects:
            annotations.append(
                _coco_annotation(obj,
                                 len(annotations) + 1, image_id))
        if progress and ((index + 1) % 100 == 0 or index + 1 == num):
            print(f'[shapes] {split}: {index + 1}/{num} images', flush=True)
    return dict(
        info=dict(
            description='mmnextvit synthetic shapes',
            version=str(GENERATOR_VERSION)),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES)
        ])


def annotation_file(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'instances_{split}.json')


def config_options(root: str) -> List[str]:
    """``--cfg-options`` arguments that point the dataloaders and metrics of
    ``configs/bundled_data/nextvit_s_shapes-cpu.py`` at the data in ``root``
    (the config reads ``data/shapes/``)."""
    ann = annotation_file(root, 'val')
    return [
        f'{loader}.dataset.data_root={root}/'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [f'{metric}.ann_file={ann}'
         for metric in ('val_evaluator', 'test_evaluator')]


def _last_files(cfg: ShapesConfig) -> List[str]:
    """Per split, its annotation file and its last image (written last, so
    their presence implies the rest), relative to the dataset folder."""
    files = []
    for split in SPLITS:
        num = cfg.num_train if split == 'train' else cfg.num_val
        files += [annotation_file('', split), f'{split}/{num - 1:06d}.png']
    return files


def generate(root: str = 'data/shapes',
             cfg: Optional[ShapesConfig] = None,
             progress: bool = True) -> bool:
    """Write the dataset described by ``cfg`` to ``root``, all at once,
    unless ``root`` already holds it (see
    :func:`~mmnextvit.bundled_data.generated.generate_dataset`). Returns
    whether files were written."""
    cfg = cfg or ShapesConfig()

    def write(folder: str) -> None:
        for split in SPLITS:
            coco = _write_split(cfg, folder, split, progress)
            os.makedirs(osp.join(folder, 'annotations'), exist_ok=True)
            with open(
                    annotation_file(folder, split), 'w',
                    encoding='utf-8') as f:
                json.dump(coco, f)

    return generate_dataset(
        root,
        cfg,
        'shapes',
        META_FILE,
        _last_files(cfg),
        write,
        fix='choose another folder for the data or empty this one',
        summary=f'{cfg.num_train} train + {cfg.num_val} val images',
        progress=progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return dataclass_main(
        ShapesConfig, generate,
        'Generate the synthetic shapes instance-segmentation dataset (COCO '
        'format). A second run with the same arguments is a no-op.',
        'data/shapes', argv)


if __name__ == '__main__':
    sys.exit(main())
