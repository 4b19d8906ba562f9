# Copyright (c) mmnextvit contributors. All rights reserved.
"""Export rewrites for mmdeploy, imported by mmdeploy before it traces a
model (``codebase_config.module`` of every deploy config in
``configs/deploy/``).

Importing this module also applies the torch 2.x bridges of
:mod:`mmnextvit.compat.mmdeploy`.

Each rewrite computes what the module computes, from the traced input size
instead of Python ints (which tracing records as constants of the export
size), so a dynamic-shape export is right at every size:

- ``torch.nn.AdaptiveAvgPool2d`` (UperNet's pyramid pooling): two averaging
  matrix products (:func:`adaptive_avg_pool`). ONNX has no adaptive
  pooling, and mmdeploy's own rewrite of ``F.adaptive_avg_pool2d`` uses an
  average pooling whose window is taken from the export size, which is
  exact only where that size divides evenly into the grid.
- mmseg's ``Upsample`` with a scale factor (Semantic FPN's head):
  ``F.interpolate`` with the scale factor itself; mmseg turns it into an
  output size of Python ints first. Same output size, ``floor(side *
  factor)``.

Two rewrites compute what torch and mmdet compute where mmdeploy's rewrites
do not:

- ``F.scaled_dot_product_attention`` (ONNX Runtime, OpenVINO, TensorRT):
  :func:`scaled_dot_product_attention`. mmdeploy's rewrite for every
  backend divides the attention logits by ``scale``, where torch multiplies
  them by it (``scale`` defaults to ``1 / sqrt(head dim)``, which mmdeploy
  turns into the divisor ``sqrt(head dim)``, so only an explicit ``scale``
  goes wrong). Next-ViT's E-MHSA passes ``scale=32 ** -0.5``, so the
  exported logits were 32 times torch's. Seeded random weights give
  near-zero logits, where the softmax is almost uniform either way; the
  trained shapes model's backbone features differed by up to 1.4 (of 7.3)
  at stage 4, detections by 5.8 px and 0.18 in score, masks down to IoU 0.71,
  COCO AP by up to 0.011.

- mmdet's ``RPNHead`` proposals (ONNX Runtime and OpenVINO):
  :func:`rpn_head__predict_by_feat`. mmdet runs the RPN's NMS level by
  level (``batched_nms`` with the level as the class), drops boxes of at
  most ``min_bbox_size`` and applies no score threshold; mmdeploy's rewrite
  runs one NMS over all levels (a box of one level suppresses boxes of
  another), thresholds at the deploy config's ``score_threshold`` and hands
  the RoI head a zero padding row as one more proposal. Both change the
  proposal set, so detections differed from PyTorch wherever a level
  overlap or the padding row reached the 100-detection cut (15.9 px box
  difference, mask IoU 0.05 on a 96x128 input, at every export size).
  Here the levels are kept apart with mmcv's offsets (``level * (largest
  coordinate + 1)``) inside one ONNX ``NonMaxSuppression`` and the
  proposals are cut to the most any image kept.
"""
import torch
import torch.nn.functional as F
from mmdeploy.core import FUNCTION_REWRITER

import mmnextvit  # noqa: F401  (registers the backbone, loads checkpoints)
from mmnextvit.compat import mmdeploy as _bridges

__all__ = [
    'adaptive_avg_pool', 'pooling_matrix', 'rpn_head__predict_by_feat',
    'scaled_dot_product_attention'
]

_bridges.install()


def for_backends(func_name: str, *backends: str):
    """Register the decorated function as the export rewrite of
    ``func_name`` for each of ``backends``. A rewrite registered for a
    named backend takes precedence over mmdeploy's rewrite for every
    backend (``backend='default'``)."""

    def register(function):
        for backend in backends:
            function = FUNCTION_REWRITER.register_rewriter(
                func_name=func_name, backend=backend)(function)
        return function

    return register


def pooling_matrix(length, cells: int, like: torch.Tensor) -> torch.Tensor:
    """The ``(cells, length)`` matrix whose rows average the windows of
    adaptive average pooling along one axis of ``length`` elements: row
    ``i`` covers ``[floor(i * length / cells), ceil((i + 1) * length /
    cells))``. ``length`` may be a traced size."""
    index = torch.arange(cells, device=like.device)
    start = torch.div(index * length, cells, rounding_mode='floor')
    end = torch.div((index + 1) * length + cells - 1,
                    cells,
                    rounding_mode='floor')
    position = torch.arange(length, device=like.device)
    inside = ((position[None] >= start[:, None])
              & (position[None] < end[:, None]))
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as two matrix products
    built from ``x``'s (possibly traced) height and width."""
    rows, cols = output_size if isinstance(output_size,
                                           (tuple, list)) else (output_size,
                                                                output_size)
    rows = x.shape[-2] if rows is None else rows
    cols = x.shape[-1] if cols is None else cols
    pool_rows = pooling_matrix(x.shape[-2], rows, x)
    pool_cols = pooling_matrix(x.shape[-1], cols, x)
    return pool_rows @ x @ pool_cols.transpose(0, 1)


@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.nn.AdaptiveAvgPool2d.forward')
def adaptive_avg_pool2d__forward(self, x: torch.Tensor) -> torch.Tensor:
    """``AdaptiveAvgPool2d`` that follows the input size in the graph."""
    return adaptive_avg_pool(x, self.output_size)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmseg.models.utils.wrappers.Upsample.forward')
def upsample__forward(self, x: torch.Tensor) -> torch.Tensor:
    """mmseg's ``Upsample`` that keeps a scale factor a scale factor."""
    if self.size:
        return FUNCTION_REWRITER.get_context().origin_func(self, x)
    return F.interpolate(
        x,
        scale_factor=self.scale_factor,
        mode=self.mode,
        align_corners=self.align_corners)


@for_backends('torch.nn.functional.scaled_dot_product_attention',
              'onnxruntime', 'openvino', 'tensorrt')
def scaled_dot_product_attention(query: torch.Tensor,
                                 key: torch.Tensor,
                                 value: torch.Tensor,
                                 attn_mask=None,
                                 dropout_p: float = 0.,
                                 is_causal: bool = False,
                                 scale=None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` in ONNX-exportable operators:
    ``softmax(query @ key^T * scale + mask) @ value``, ``scale`` a
    multiplier as in torch (default ``1 / sqrt(query.size(-1))``)."""
    scale = query.size(-1)**-0.5 if scale is None else scale
    if enable_gqa:
        groups = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    logits = query @ key.transpose(-2, -1) * scale
    if is_causal:
        attn_mask = torch.ones(
            query.size(-2), key.size(-2), dtype=torch.bool,
            device=query.device).tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        logits = logits.masked_fill(~attn_mask, float('-inf'))
    elif attn_mask is not None:
        logits = logits + attn_mask
    weights = logits.softmax(-1)
    if dropout_p > 0:
        # torch drops attention weights whatever the module's mode.
        weights = F.dropout(weights, dropout_p)
    return weights @ value


def _level_offsets(boxes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """What mmcv's ``batched_nms`` adds to ``(B, N, 4)`` boxes so that one
    NMS never lets a box suppress one of another level: ``level * (largest
    coordinate of the image + 1)``."""
    largest = boxes.flatten(1).max(dim=1)[0]
    return (levels.to(boxes.dtype) * (largest[:, None] + 1))[..., None]


def _ranked_proposals(boxes: torch.Tensor, scores: torch.Tensor,
                      selected: torch.Tensor, max_per_img: int):
    """``(B, K, 5)`` proposals (box, score) and ``(B, K)`` zero labels from
    NMS's ``(S, 3)`` selected ``[image, class, box]`` indices: each image's
    boxes by descending score, ``K = min(max_per_img, most boxes kept in
    one image)`` (at least 1), so an image of a batch of one gets exactly
    its own boxes; the rest of a shorter image's rows are zeros."""
    batch = boxes.shape[0]
    image, index = selected[:, 0], selected[:, 2]
    dets = torch.cat([boxes[image, index], scores[image, index, None]], -1)
    dets = torch.cat([dets, dets.new_zeros(1, 5)])  # NMS may keep none
    image = torch.cat([image, image.new_full((1, ), -1)])
    own = image[None] == torch.arange(batch, device=image.device)[:, None]
    rank = torch.where(own, dets[None, :, 4], dets.new_full((1, ), -2.))
    kept = own.sum(1).max().clamp(1, max_per_img)
    order = rank.topk(kept, dim=1)[1]
    dets = torch.where(own[..., None], dets[None], dets.new_zeros(1))
    dets = dets.gather(1, order[..., None].expand(-1, -1, 5))
    return dets, dets.new_zeros(dets.shape[:2], dtype=torch.long)


@for_backends('mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
              'onnxruntime', 'openvino')
def rpn_head__predict_by_feat(self,
                              cls_scores,
                              bbox_preds,
                              score_factors=None,
                              batch_img_metas=None,
                              cfg=None,
                              rescale: bool = False,
                              with_nms: bool = True,
                              **kwargs):
    """RPN proposals as mmdet's ``RPNHead`` makes them, batched:
    ``(dets, labels)`` of shape ``(B, K, 5)`` and ``(B, K)``."""
    cfg = self.test_cfg if cfg is None else cfg
    batch = cls_scores[0].shape[0]
    priors = self.prior_generator.grid_priors(
        [score.shape[-2:] for score in cls_scores],
        dtype=cls_scores[0].dtype,
        device=cls_scores[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    all_scores, all_deltas, all_priors, all_levels = [], [], [], []
    for level, (score, delta, prior) in enumerate(
            zip(cls_scores, bbox_preds, priors)):
        score = score.permute(0, 2, 3, 1)
        if self.use_sigmoid_cls:
            score = score.reshape(batch, -1).sigmoid()
        else:
            score = score.reshape(batch, -1, 2).softmax(-1)[..., 0]
        delta = delta.permute(0, 2, 3, 1).reshape(batch, -1,
                                                  self.bbox_coder.encode_size)
        prior = prior[None].expand(batch, -1, -1)
        if nms_pre > 0:
            # mmdeploy's rewrite of topk keeps k at most the level's size.
            score, top = score.topk(nms_pre, dim=1)
            delta = delta.gather(1, top[..., None].expand(-1, -1,
                                                          delta.shape[-1]))
            prior = prior.gather(1, top[..., None].expand(-1, -1, 4))
        all_scores.append(score)
        all_deltas.append(delta)
        all_priors.append(prior)
        all_levels.append(torch.full_like(score, level, dtype=torch.long))
    scores = torch.cat(all_scores, 1)
    levels = torch.cat(all_levels, 1)
    boxes = self.bbox_coder.decode(
        torch.cat(all_priors, 1),
        torch.cat(all_deltas, 1),
        max_shape=batch_img_metas[0]['img_shape'])
    if not with_nms:
        return boxes, scores[..., None]
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        width = boxes[..., 2] - boxes[..., 0]
        height = boxes[..., 3] - boxes[..., 1]
        # Below the NMS score threshold: left out, as mmdet drops them.
        scores = torch.where((width > min_size) & (height > min_size),
                             scores, scores.new_full((1, ), -1.))
    from mmdeploy.mmcv.ops.nms import ONNXNMSop
    max_per_img = cfg.get('max_per_img', 1000)
    selected = ONNXNMSop.apply(
        boxes + _level_offsets(boxes, levels), scores[:, None],
        max_per_img, torch.tensor([float(cfg.nms.iou_threshold)]),
        torch.tensor([-0.5]))
    return _ranked_proposals(boxes, scores, selected, max_per_img)
