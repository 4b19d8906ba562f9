#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Run a model exported by ``tools/deployment/deploy.py`` in an application
that has neither torch nor mmdeploy: numpy, OpenCV and ONNX Runtime or
OpenVINO only.

    python demo/deployed_app.py WORK_DIR IMAGE [--out result.png]
        [--score-thr 0.3]

``WORK_DIR`` is the tool's ``--work-dir``. Its ``deploy.json`` names the
model file and the backend, its ``pipeline.json`` the preprocessing (the
model config's test pipeline and data preprocessor, as mmdeploy describes
them) and the post-processing parameters; this file follows them. See
docs/deploy_app.md for the model's inputs and outputs. Copy this file into
an application as it is: it imports nothing from this repository.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np

SDK_FILES = ('deploy.json', 'pipeline.json')
# Steps of pipeline.json with nothing to do here: reading the image, and
# the layout changes and bookkeeping of mmdeploy's own runtime.
NO_OP_STEPS = ('LoadImageFromFile', 'DefaultFormatBundle', 'ImageToTensor',
               'Collect')


class DeployedModelError(ValueError):
    """A work dir, image or backend this example cannot run."""


def _read_json(work_dir: str, name: str) -> dict:
    path = osp.join(work_dir, name)
    if not osp.isfile(path):
        raise DeployedModelError(
            f"'{path}' does not exist; pass the --work-dir of "
            f'tools/deployment/deploy.py, which writes '
            f'{", ".join(SDK_FILES)} beside the model (re-export an older '
            f'work dir)')
    with open(path) as f:
        return json.load(f)


class DeployedModel:
    """A detector or segmentor exported into ``work_dir``.

    Calling it with a BGR uint8 image (``cv2.imread``) gives, for a
    detector, ``boxes`` (N x 4 float32, x1 y1 x2 y2 in image pixels),
    ``scores`` (N), ``labels`` (N, int) and ``masks`` (N x H x W bool, at
    the image's size) when the model has masks; for a segmentor,
    ``label_map`` (H x W int64, at the image's size).
    """

    def __init__(self, work_dir: str):
        if not osp.isdir(work_dir):
            raise DeployedModelError(
                f"work dir '{work_dir}' does not exist; pass the --work-dir "
                f'of tools/deployment/deploy.py')
        model = _read_json(work_dir, 'deploy.json')['models'][0]
        # The first and last tasks; the tool may write steps for
        # mmdeploy's own runtime between (they change no values).
        tasks = _read_json(work_dir, 'pipeline.json')['pipeline']['tasks']
        preprocess, postprocess = tasks[0], tasks[-1]
        net = next(task for task in tasks if task['module'] == 'Net')
        self.task = postprocess['module']  # 'mmdet' or 'mmseg'
        self.transforms = preprocess['transforms']
        self.params = postprocess['params']
        self.input_name = net['input_map']['img']
        model_file = osp.join(work_dir, model['net'])
        if not osp.isfile(model_file):
            raise DeployedModelError(
                f"'{model_file}' (named by deploy.json) does not exist; "
                f'export the work dir again with tools/deployment/deploy.py')
        self.run = _backend(model['backend'], model_file)

    def preprocess(self, image: np.ndarray) -> Tuple[np.ndarray, dict]:
        """The network's input (1 x 3 x h x w float32) and what the
        post-processing needs to go back to the image."""
        ori_h, ori_w = image.shape[:2]
        meta = dict(ori_shape=(ori_h, ori_w), scale_factor=(1.0, 1.0))
        for step in self.transforms:
            kind = step['type']
            if kind == 'Resize':
                image = _resize(image, step)
                meta['scale_factor'] = (image.shape[1] / ori_w,
                                        image.shape[0] / ori_h)
            elif kind == 'Normalize':
                if step.get('to_rgb', False):
                    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                image = (image.astype(np.float32) -
                         np.float32(step['mean'])) / np.float32(step['std'])
            elif kind == 'Pad':
                image = _pad(image, step)
            elif kind not in NO_OP_STEPS:
                raise DeployedModelError(
                    f"pipeline.json has a preprocessing step '{kind}' this "
                    f'example does not implement; add it to preprocess()')
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        return tensor.astype(np.float32), meta

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        tensor, meta = self.preprocess(image)
        outputs = self.run({self.input_name: tensor})
        if self.task == 'mmseg':
            return dict(label_map=self._label_map(outputs, meta))
        return self._detections(outputs, meta)

    def _detections(self, outputs: dict, meta: dict) -> dict:
        dets, labels = outputs['dets'][0], outputs['labels'][0]
        keep = dets[:, 4] > 0  # the graph pads its output with zero scores
        sx, sy = meta['scale_factor']
        result = dict(
            boxes=dets[keep, :4] / np.float32([sx, sy, sx, sy]),
            scores=dets[keep, 4],
            labels=labels[keep])
        if 'masks' in outputs:
            height, width = meta['ori_shape']
            # The detector's own threshold (mmdet keeps probabilities at or
            # above it); the top-level one is written for mmdeploy's runtime.
            threshold = self.params.get('rcnn', self.params).get(
                'mask_thr_binary', 0.5)
            result['masks'] = np.stack([
                paste_mask(mask, box, height, width) >= threshold
                for mask, box in zip(outputs['masks'][0][keep],
                                     result['boxes'])
            ]) if keep.any() else np.zeros((0, height, width), bool)
        return result

    def _label_map(self, outputs: dict, meta: dict) -> np.ndarray:
        scores = next(iter(outputs.values()))[0]  # C x h x w
        labels = scores[0] if self.params.get('with_argmax', True) else \
            scores.argmax(0)
        # Nearest neighbour: output pixel i reads input pixel
        # floor(i * in / out), as torch's 'nearest' interpolation.
        (h, w), (height, width) = labels.shape, meta['ori_shape']
        rows = np.minimum(np.arange(height) * h // height, h - 1)
        cols = np.minimum(np.arange(width) * w // width, w - 1)
        return labels[np.ix_(rows, cols)].astype(np.int64)


def _resize(image: np.ndarray, step: dict) -> np.ndarray:
    """mmcv's Resize: ``size`` is (width, height); with ``keep_ratio`` the
    image is scaled as large as fits the long side into max(size) and the
    short side into min(size)."""
    h, w = image.shape[:2]
    if step.get('keep_ratio', False):
        scale = min(max(step['size']) / max(h, w),
                    min(step['size']) / min(h, w))
        size = (int(w * scale + 0.5), int(h * scale + 0.5))
    else:
        size = tuple(step['size'])
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def _pad(image: np.ndarray, step: dict) -> np.ndarray:
    """Zeros at the bottom and the right (after normalisation, as mmdet's
    data preprocessor pads), to ``size`` (width, height) or up to a
    multiple of ``size_divisor``."""
    h, w = image.shape[:2]
    if step.get('size'):
        width, height = step['size']
    else:
        divisor = step.get('size_divisor', 1)
        height, width = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w,
                              cv2.BORDER_CONSTANT, value=0)


def _sampling_matrix(size: int, start: float, end: float,
                     cells: int) -> np.ndarray:
    """size x cells weights that sample a row of ``cells`` values spread
    over [start, end) at the pixel centres 0.5 ... size - 0.5, bilinearly,
    zero outside (grid_sample with align_corners=False)."""
    pos = (np.arange(size) + 0.5 - start) / max(end - start, 1e-6) * cells
    pos -= 0.5
    low = np.floor(pos)
    weights = np.zeros((size, cells), np.float32)
    rows = np.arange(size)
    for index, weight in ((low, 1 - (pos - low)), (low + 1, pos - low)):
        inside = (index >= 0) & (index < cells)
        weights[rows[inside], index[inside].astype(int)] += weight[inside]
    return weights


def paste_mask(mask: np.ndarray, box: np.ndarray, height: int,
               width: int) -> np.ndarray:
    """A mask head's M x M probabilities for ``box`` as a height x width
    probability map of the image (bilinear, zero outside the box)."""
    x1, y1, x2, y2 = box
    rows = _sampling_matrix(height, y1, y2, mask.shape[0])
    cols = _sampling_matrix(width, x1, x2, mask.shape[1])
    return rows @ mask.astype(np.float32) @ cols.T


def _backend(backend: str, model_file: str):
    """A function from {input name: array} to {output name: array}."""
    if backend == 'onnxruntime':
        try:
            import onnxruntime
        except ImportError:
            raise DeployedModelError(
                f"'{model_file}' needs ONNX Runtime; pip install "
                f'onnxruntime') from None
        session = onnxruntime.InferenceSession(
            model_file, providers=['CPUExecutionProvider'])
        names = [out.name for out in session.get_outputs()]
        return lambda inputs: dict(zip(names, session.run(names, inputs)))
    if backend == 'openvino':
        try:
            import openvino
        except ImportError:
            raise DeployedModelError(
                f"'{model_file}' needs OpenVINO; pip install "
                f'openvino') from None
        # fp32, as exported: OpenVINO would pick bf16 on CPUs that have it.
        compiled = openvino.Core().compile_model(
            model_file, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
        names = [out.get_any_name() for out in compiled.outputs]
        return lambda inputs: dict(
            zip(names, compiled(inputs).to_tuple()))
    raise DeployedModelError(
        f"deploy.json of '{model_file}' names backend '{backend}'; this "
        f'example runs onnxruntime and openvino work dirs')


def draw(image: np.ndarray, result: dict, score_thr: float) -> np.ndarray:
    """Boxes and masks scoring at least ``score_thr``, or the label map,
    over ``image``, one colour per label."""
    palette = np.random.default_rng(0).integers(0, 255, (256, 3))
    picture = image.copy()
    if 'label_map' in result:
        colours = palette[result['label_map'] % 256].astype(np.uint8)
        return cv2.addWeighted(picture, 0.5, colours, 0.5, 0)
    for i in np.flatnonzero(result['scores'] >= score_thr):
        colour = palette[result['labels'][i] % 256]
        if 'masks' in result:
            picture[result['masks'][i]] = (
                picture[result['masks'][i]] * 0.5 + colour * 0.5)
        x1, y1, x2, y2 = result['boxes'][i].astype(int)
        cv2.rectangle(picture, (x1, y1), (x2, y2), colour.tolist(), 1)
    return picture


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', help='--work-dir of deploy.py')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', help='draw the prediction into this file')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections to print and draw (default: 0.3)')
    args = parser.parse_args(argv)
    try:
        image = cv2.imread(args.image)
        if image is None:
            raise DeployedModelError(
                f"image '{args.image}' does not exist or is not an image "
                f'OpenCV reads; pass an image file')
        result = DeployedModel(args.work_dir)(image)
    except DeployedModelError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    if 'label_map' in result:
        labels, counts = np.unique(result['label_map'], return_counts=True)
        print('pixels per label: ' + ', '.join(
            f'{label}: {count}' for label, count in zip(labels, counts)))
    else:
        for i in np.flatnonzero(result['scores'] >= args.score_thr):
            print(f'label {result["labels"][i]} score '
                  f'{result["scores"][i]:.3f} box '
                  f'{np.round(result["boxes"][i], 1).tolist()}')
    if args.out:
        cv2.imwrite(args.out, draw(image, result, args.score_thr))
        print(f'drawn to {args.out}')


if __name__ == '__main__':
    main()
