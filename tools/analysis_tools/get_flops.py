#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Parameters and FLOPs of a detection or segmentation config, next to the
Next-ViT paper's numbers.

    python tools/analysis_tools/get_flops.py configs/mask_rcnn/nextvit_s_1x.py
    python tools/analysis_tools/get_flops.py configs/upernet/nextvit_s_160k.py
    python tools/analysis_tools/get_flops.py CONFIG --shape 800 1216

The input defaults to the size the paper counted at: 1280x800 (width x
height) for detection and 512x2048 for segmentation. The model is built
without loading any weights, so no checkpoint is needed.

Counting conventions. MMEngine's counter (``mmengine.analysis.FlopAnalyzer``,
the counter behind ``get_model_complexity_info``, traced with ``torch.jit``)
counts one multiply-add as one FLOP, like the MMCV 1.x counter upstream used.
This tool adds one rule to it: fused attention
(``F.scaled_dot_product_attention``, which MMEngine does not know) counts its
two matrix products, as the unfused form would be counted. The two counters
differ in coverage: MMEngine counts the attention matrix products and batch
norms and ignores ReLU and plain pooling; MMCV 1.x hooked modules only, so it
missed functional matrix products and counted norms, activations and pooling
element-wise. Upstream also counted only parameters that require gradients
(the frozen stem and stage 1 of the detectors were left out) and its backbone
still carried the unused ImageNet classifier (BN 1024 + Linear 1024x1000).
Like upstream's, the count runs the box head on 1000 proposals and the mask
head on 100 (the proposal NMS is switched off for counting, so the number does
not depend on the random input). The row "as counted upstream" applies
those rules to the built model: trainable parameters plus the classifier, and
the FLOPs without the attention matrix products.
"""
import argparse
import os.path as osp
from functools import partial
from typing import Dict, Optional, Tuple

from mmengine.config import Config

from mmnextvit.analysis.flops import complexity
from mmnextvit.cli import add_cfg_options, fail

# Where the numbers come from: the upstream README of bytedance/Next-ViT
# (the tables of the Next-ViT paper, arXiv 2207.05501). Params in M, FLOPs in
# G at the paper's input size.
PAPER_SOURCE = 'upstream README / Next-ViT paper (arXiv 2207.05501)'
PAPER_MODELS: Dict[Tuple[str, str], Tuple[float, float]] = {
    ('Mask R-CNN', 'small'): (51.8, 290.),
    ('Mask R-CNN', 'base'): (64.9, 340.),
    ('Mask R-CNN', 'large'): (77.9, 391.),
    ('Semantic FPN', 'small'): (36.3, 208.),
    ('Semantic FPN', 'base'): (49.3, 260.),
    ('Semantic FPN', 'large'): (62.4, 331.),
    ('UperNet', 'small'): (66.3, 968.),
    ('UperNet', 'base'): (79.3, 1020.),
    ('UperNet', 'large'): (92.4, 1072.),
}
# ImageNet classifiers (with the classification head), at 224x224.
PAPER_BACKBONES: Dict[str, Tuple[float, float]] = {
    'small': (31.7, 5.8),
    'base': (44.8, 8.3),
    'large': (57.8, 10.8),
}
BACKBONE_PAPER_SHAPE = (224, 224)
# (height, width) the paper counted at, per task scope.
PAPER_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 2048)}
DATA_SAMPLES = {
    'mmdet': ('mmdet.structures', 'DetDataSample'),
    'mmseg': ('mmseg.structures', 'SegDataSample'),
}
ARCH_ALIASES = {'s': 'small', 'b': 'base', 'l': 'large'}
# The upstream backbone's unused ImageNet classifier: BN(1024) weight and
# bias, Linear(1024 -> 1000), and in segmentation mode a fourth extra norm.
CLASSIFIER_NORM = 2 * 1024
CLASSIFIER_HEAD = 1024 * 1000 + 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of a config next to the Next-ViT '
        "paper's numbers.")
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input height and width (one value: square); default: the '
        "paper's size, 800 1280 for detection, 512 2048 for segmentation")
    add_cfg_options(parser, 'model.backbone.arch=base')
    return parser.parse_args()


def model_kind(model_cfg) -> Optional[str]:
    """The paper's name for the model a config builds, if it has one."""
    if model_cfg.get('type') == 'MaskRCNN':
        return 'Mask R-CNN'
    head = model_cfg.get('decode_head') or {}
    return {
        'FPNHead': 'Semantic FPN',
        'UPerHead': 'UperNet'
    }.get(head.get('type'))


def backbone_arch(backbone_cfg) -> Optional[str]:
    if 'NextViT' not in str(backbone_cfg.get('type', '')):
        return None
    arch = backbone_cfg.get('arch', 'small')
    if not isinstance(arch, str):
        return None
    return ARCH_ALIASES.get(arch.lower(), arch.lower())


def count_upstream_style(model, backbone) -> int:
    """Parameters as upstream's counter reported them: trainable ones only,
    plus the classifier the upstream backbone kept but never used."""
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    count += CLASSIFIER_HEAD
    if getattr(backbone, 'norm', None) is None:
        count += CLASSIFIER_NORM
    if getattr(backbone, 'with_extra_norm', False):
        count += CLASSIFIER_NORM  # extra_norm_list.3
    return count


def fmt(value: Optional[float], unit: str, digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}{unit}'


def main() -> None:
    args = parse_args()
    if not osp.isfile(args.config):
        fail(f"config file '{args.config}' does not exist; pass the path of "
             'a config, e.g. configs/mask_rcnn/nextvit_s_1x.py')
    if args.shape is not None and len(args.shape) not in (1, 2):
        fail(f'--shape takes one or two ints (height [width]), got '
             f'{args.shape}')

    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if scope not in DATA_SAMPLES:
        fail(f"config '{args.config}' has default_scope={scope!r}; this "
             f'tool handles {sorted(DATA_SAMPLES)} configs')
    init_default_scope(scope)

    if args.shape is None:
        height, width = PAPER_SHAPES[scope]
    elif len(args.shape) == 1:
        height = width = args.shape[0]
    else:
        height, width = args.shape

    rpn_test_cfg = (cfg.model.get('test_cfg') or {}).get('rpn')
    if rpn_test_cfg and rpn_test_cfg.get('nms'):
        # The RoI heads' cost grows with the number of proposals, which after
        # NMS depends on the (random) input. Counting without the proposal
        # NMS feeds them max_per_img (1000 in the COCO configs) proposals, the
        # mask head the first 100: the fixed setting of upstream's counter.
        rpn_test_cfg.nms.iou_threshold = 1.
    # Built without init_weights(): nothing is read from the pretrained path.
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    module_name, class_name = DATA_SAMPLES[scope]
    sample_type = getattr(
        __import__(module_name, fromlist=[class_name]), class_name)
    sample = sample_type(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            scale_factor=(1., 1.)))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)
    inputs = data['inputs']

    backbone = model.backbone
    with torch.no_grad():
        whole_forward = model.forward
        model.forward = partial(
            whole_forward, data_samples=data['data_samples'], mode='tensor')
        whole_flops, whole_params, attention = complexity(model, (inputs, ))
        model.forward = whole_forward
        alone_flops, alone_params, _ = complexity(backbone, (inputs, ))

    kind = model_kind(cfg.model)
    arch = backbone_arch(cfg.model.backbone)
    paper_shape = PAPER_SHAPES[scope]
    input_hw = tuple(inputs.shape[-2:])
    paper_model = PAPER_MODELS.get((kind, arch))
    paper_backbone = PAPER_BACKBONES.get(arch)

    paper_backbone_params = paper_backbone_flops = None
    if paper_backbone:
        paper_backbone_params = paper_backbone[0]
        if input_hw == BACKBONE_PAPER_SHAPE:
            paper_backbone_flops = paper_backbone[1]
    paper_params = paper_flops = None
    if paper_model:
        paper_params = paper_model[0]
        if input_hw == paper_shape:
            paper_flops = paper_model[1]
    rows = [
        ('backbone', alone_params, alone_flops, paper_backbone_params,
         paper_backbone_flops),
        ('whole model', whole_params, whole_flops, paper_params, paper_flops),
    ]
    name = f'Next-ViT-{arch[0].upper()} ' if arch else ''
    print(f'{name}{kind or cfg.model.type}: {args.config}')
    print(f'input 1x3x{input_hw[0]}x{input_hw[1]} (HxW); FLOPs = '
          'multiply-adds (one multiply-add counted as one FLOP)')
    header = ('', 'params', 'FLOPs', 'paper params', 'paper FLOPs')
    line = '{:<24}{:>12}{:>12}{:>15}{:>15}'
    print(line.format(*header))
    for label, params, flops, p_params, p_flops in rows:
        print(
            line.format(label, fmt(params / 1e6, 'M'), fmt(flops / 1e9, 'G'),
                        fmt(p_params, 'M', 1), fmt(p_flops, 'G', 1)))
    upstream = ''
    if arch is not None:
        upstream = fmt(count_upstream_style(model, backbone) / 1e6, 'M')
    print(
        line.format('  as counted upstream*', upstream,
                    fmt((whole_flops - attention) / 1e9, 'G'), '', ''))
    print(f'paper: {PAPER_SOURCE}; backbone row = the ImageNet classifier '
          f'(FLOPs at {BACKBONE_PAPER_SHAPE[1]}x{BACKBONE_PAPER_SHAPE[0]}), '
          f'whole model FLOPs at {paper_shape[1]}x{paper_shape[0]} (WxH); '
          "'-' where the paper has no number for this input.")
    print("* upstream's MMCV 1.x counter saw only trainable parameters, on a "
          'backbone that kept its unused ImageNet classifier (1.03M), and '
          f'missed the attention matrix products ({attention / 1e9:.2f}G '
          'here; it counted activations and pooling, which are not counted '
          'here).')


if __name__ == '__main__':
    main()
