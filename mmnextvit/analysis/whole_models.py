# Copyright (c) mmnextvit contributors. All rights reserved.
"""Whole detection and segmentation models in the latency benchmark
(:mod:`.latency_benchmark`): built from a config with the work of their
heads fixed (:func:`build_config_model`), fed a preprocessed input
(:func:`config_inputs`), exported with mmdeploy at a size and run in an
engine (:func:`prepare_whole_model`), and their time traced to their parts
(:func:`time_parts`)."""
import copy
import os
import os.path as osp
import time
from typing import Callable, Tuple

from mmnextvit.cli.errors import ToolError
from mmnextvit.config_resolver import config_root, resolve_any
from mmnextvit.deploy import engines, quantize
from .engine_setup import int8_file

__all__ = [
    'DEPLOY_SIZES', 'build_config_model', 'backbone_name', 'config_label',
    'config_inputs', 'prepare_whole_model', 'time_parts'
]

# Whole models are exported with the static deploy config of their task
# (configs/deploy/), resized to each --sizes entry.
DEPLOY_SIZES = {'instance-seg': '800x1344', 'segmentation': '512x512'}


def build_config_model(path: str, free_work: bool):
    """``(model, scope, cfg)``: the model of the config ``path`` in eval
    mode with random weights (the backbone's ``init_cfg`` dropped, nothing
    downloaded); unless ``free_work``, a Mask R-CNN keeps all its proposals
    through NMS and its 100 best detections whatever their score.

    Raises:
        ToolError: the config does not read, or is neither mmdet's nor
            mmseg's.
    """
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    import mmnextvit  # noqa: F401  (mmnextvit:: paths)
    try:
        cfg = Config.fromfile(resolve_any(path))
    except Exception as error:
        raise ToolError(f"cannot read config '{path}': "
                        f'{str(error).splitlines()[0]}') from None
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ToolError(f"config '{path}' has default_scope={scope!r}; use "
                        'an mmdet or mmseg config')
    init_default_scope(scope)
    cfg.model.backbone.init_cfg = None
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    test_cfg = cfg.model.get('test_cfg') or {}
    if not free_work and test_cfg.get('rpn') and test_cfg.get('rcnn'):
        test_cfg.rpn.nms.iou_threshold = 1.
        test_cfg.rcnn.score_thr = 0.
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.eval()
    return model, scope, cfg


def backbone_name(cfg) -> str:
    """What a config's backbone is, e.g. ``ResNetV1c-101``: printed and
    recorded beside each whole model, so that a config whose name and
    backbone disagree shows (mmseg 1.2.2's Semantic FPN "r101" config
    builds a ResNet-50, see configs/semfpn/fpn_r101_ade20k-512x512.py)."""
    backbone = cfg.model.backbone
    kind = str(backbone.type).split('.')[-1]
    size = backbone.get('depth') or backbone.get('arch')
    return f'{kind}-{size}' if size else kind


def config_label(path: str) -> str:
    """The name a whole model's rows go by: its config file's stem."""
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def config_inputs(model, scope: str, batch: int, height: int, width: int,
                  device: str, dtype):
    """``(inputs, data_samples)`` of ``model.predict``: a random
    preprocessed batch and the samples of an image of exactly that size."""
    import torch
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    meta = dict(
        img_shape=(height, width),
        ori_shape=(height, width),
        pad_shape=(height, width),
        batch_input_shape=(height, width),
        padding_size=[0, 0, 0, 0],
        scale_factor=(1., 1.))
    samples = [Sample(metainfo=meta) for _ in range(batch)]
    inputs = torch.randn(batch, 3, height, width, device=device, dtype=dtype)
    return inputs, samples


def prepare_whole_model(engine: str, precision: str, cfg, model, scope: str,
                        height: int, width: int, inputs, workdir: str,
                        label: str, calib_images: int = 0
                        ) -> Tuple[Callable, float, str, str]:
    """``(run, ready_s, onnx_file, timed_file)`` for the whole model of
    ``cfg`` (weights of ``model``) exported with mmdeploy at ``height`` x
    ``width`` and run in ``engine`` at ``precision`` on ``inputs`` (the
    preprocessed input): the exported float file, and the file timed (for
    int8 the one quantized from it, post-processing kept in float).

    Raises:
        ToolError: the int8 quantization fails.
    """
    import cv2
    import numpy as np
    import torch

    from mmnextvit.deploy import pipeline
    start = time.perf_counter()
    task = 'instance-seg' if scope == 'mmdet' else 'segmentation'
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(config_root(), 'deploy', f'{task}_onnxruntime_static-'
                 f'{DEPLOY_SIZES[task]}.py'))
    deploy_cfg.onnx_config.input_shape = [width, height]
    if task == 'instance-seg' and cfg.model.test_cfg.rcnn.score_thr == 0:
        # The fixed work of the PyTorch rows: 100 detections always.
        deploy_cfg.codebase_config.post_processing.score_threshold = 0.
    folder = osp.join(workdir, f'{label}-{height}x{width}')
    os.makedirs(folder, exist_ok=True)
    checkpoint = osp.join(folder, 'weights.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    image = osp.join(folder, 'image.png')
    cv2.imwrite(image, np.zeros((height, width, 3), np.uint8))
    # The ONNX Runtime deploy config's backend file is the ONNX file, which
    # OpenVINO reads as well.
    (onnx_file, ) = pipeline.export(cfg, deploy_cfg, checkpoint, image,
                                    osp.join(folder, 'export'))
    options = None
    if precision == 'int8':
        # The settings of the task's int8 deploy config for this engine.
        options = quantize.settings(
            pipeline.load_deploy_config(
                osp.join(config_root(), 'deploy', f'{task}_{engine}-int8_'
                         f'static-{DEPLOY_SIZES[task]}.py')))
    timed_file = int8_file(engine, precision, onnx_file, inputs.shape,
                           calib_images, engines.head_scopes(model), options)
    run = engines.runner(engine, precision, timed_file, inputs.cpu().numpy())
    run()
    return run, time.perf_counter() - start, onnx_file, timed_file


def time_parts(engine: str, precision: str, onnx_file: str, feed, model,
               backbone_file: str, calib_images: int = 0) -> dict:
    """Milliseconds of the exported whole model spent in its backbone,
    neck + head and post-processing (:func:`engines.time_by_part`), and of
    its backbone exported alone at the same size (deployed where it can
    be, as mmdeploy exports it inside the model), profiled alike; for int8
    also the node time by kind of kernel (:func:`engines.int8_share`)."""
    import torch
    parts = engines.time_by_part(engine, precision, onnx_file, feed,
                                 engines.head_scopes(model))
    backbone = copy.deepcopy(model.backbone)
    backbone.eval()  # mmdet / mmseg ResNets' train() returns None
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy()
    engines.export_onnx(backbone, torch.from_numpy(feed), backbone_file)
    backbone_file = int8_file(engine, precision, backbone_file, feed.shape,
                              calib_images)
    alone = engines.time_by_part(engine, precision, backbone_file, feed,
                                 None)['backbone']
    found = dict(parts_ms=parts, backbone_alone_ms=alone)
    if precision == 'int8':
        found['kernels_ms'] = engines.int8_share(engine, precision,
                                                 onnx_file, feed)
    return found
