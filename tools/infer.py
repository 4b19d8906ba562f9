# Copyright (c) mmnextvit contributors. All rights reserved.
"""Run a trained model on images and save pictures of its predictions.

    python tools/infer.py CONFIG IMAGE_OR_FOLDER [...] --weights CKPT
        [--out-dir DIR] [--device cpu|cuda[:N]] [--score-thr 0.3]

Detection configs (``default_scope='mmdet'``) go through mmdet's
``DetInferencer`` and get boxes, labels and masks drawn; segmentation
configs (``'mmseg'``) through ``MMSegInferencer`` and get the label map
blended over the image. Each picture is written as ``<image name>.png`` to
the output folder. Every input is checked first: nothing is written when an
image, the config or the weights are missing.
"""
import argparse
import os
import os.path as osp
from typing import Callable, Dict, List

import numpy as np

import mmnextvit  # noqa: F401  (lets torch load mmengine checkpoints)
from mmnextvit.cli import (ToolError, build_model, check_checkpoint,
                           init_task, load_config, run_tool)

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')

# A painter takes an image path and returns the RGB picture to save.
Painter = Callable[[str], np.ndarray]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the predictions of a Next-ViT detector or '
        'segmentor on images.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'inputs', nargs='+', metavar='IMAGE_OR_FOLDER',
        help='image files, or folders whose images are all used')
    parser.add_argument(
        '--weights', required=True, help='checkpoint of the model')
    parser.add_argument(
        '--out-dir', default='outputs/infer',
        help='folder for the pictures (default: outputs/infer)')
    parser.add_argument(
        '--device', default=None,
        help='cpu, cuda or cuda:N (default: cuda when available, else cpu)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='detection: draw only predictions scoring at least this '
        '(default: 0.3)')
    return parser.parse_args(argv)


def collect_images(inputs: List[str]) -> List[str]:
    """The image files named by ``inputs`` (folders: their images, sorted
    by name)."""
    images = []
    for path in inputs:
        if osp.isdir(path):
            found = sorted(
                osp.join(path, name) for name in os.listdir(path)
                if name.lower().endswith(IMAGE_SUFFIXES)
                and osp.isfile(osp.join(path, name)))
            if not found:
                raise ToolError(
                    f"folder '{path}' holds no images "
                    f"({', '.join(IMAGE_SUFFIXES)}); pass another folder or "
                    f'image files')
            images += found
        elif osp.isfile(path):
            if not path.lower().endswith(IMAGE_SUFFIXES):
                raise ToolError(
                    f"'{path}' is not an image file "
                    f"({', '.join(IMAGE_SUFFIXES)}); pass an image or a "
                    f'folder of images')
            images.append(path)
        else:
            raise ToolError(
                f"image '{path}' does not exist; pass an image file or a "
                f'folder of images')
    return images


def resolve_device(device: str = None) -> str:
    import torch
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ToolError(
            f'--device {device}: no CUDA device is available here; use '
            f'--device cpu')
    if not device.startswith(('cpu', 'cuda')):
        raise ToolError(f'--device {device}: use cpu, cuda or cuda:N')
    return device


def detection_painter(cfg, weights: str, device: str,
                      args: argparse.Namespace) -> Painter:
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(
        model=cfg, weights=weights, device=device, show_progress=False)

    def paint(image: str) -> np.ndarray:
        result = inferencer(
            image,
            return_vis=True,
            no_save_vis=True,
            pred_score_thr=args.score_thr)
        return result['visualization'][0]

    return paint


def segmentation_painter(cfg, weights: str, device: str,
                         args: argparse.Namespace) -> Painter:
    from mmseg.apis import MMSegInferencer

    inferencer = MMSegInferencer(model=cfg, weights=weights, device=device)

    def paint(image: str) -> np.ndarray:
        # out_dir='' keeps the inferencer from writing files of its own.
        result = inferencer(image, return_vis=True, out_dir='')
        # MMSegInferencer returns the picture itself, not a list, when it
        # was given one image.
        picture = result['visualization']
        return picture[0] if isinstance(picture, list) else picture

    return paint


# The task package (the config's default_scope) -> how to paint.
PAINTERS: Dict[str, Callable[..., Painter]] = {
    'mmdet': detection_painter,
    'mmseg': segmentation_painter,
}


def output_names(images: List[str]) -> List[str]:
    """``<stem>.png`` for each image, numbered where two stems clash."""
    names, seen = [], {}
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f'{stem}.png' if count == 0 else f'{stem}_{count}.png')
    return names


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    images = collect_images(args.inputs)
    cfg = load_config(args.config)
    task = init_task(cfg)
    device = resolve_device(args.device)
    check_checkpoint(cfg, args.weights, flag='--weights',
                     model=build_model(cfg))

    import mmcv
    from mmengine.utils import ProgressBar

    paint = PAINTERS[task](cfg, args.weights, device, args)
    os.makedirs(args.out_dir, exist_ok=True)
    progress = ProgressBar(len(images))
    written = []
    for image, name in zip(images, output_names(images)):
        picture = paint(image)
        out_file = osp.join(args.out_dir, name)
        mmcv.imwrite(picture[..., ::-1], out_file)  # RGB -> BGR for cv2
        written.append(out_file)
        progress.update()
    print(f'\n{len(written)} picture(s) written to {args.out_dir}'
          + (f': {written[0]}' if len(written) == 1 else ''))


if __name__ == '__main__':
    main()
