"""The bridges that let detectors run under autocast (mmnextvit/compat/mmcv.py
and mmdet.py): each test shows what the dependency does without the bridge
(so that the test fails once a new release makes the bridge unneeded) and
what the bridge gives instead."""
import pytest
import torch
from mmengine.config import ConfigDict

import mmnextvit  # noqa: F401  (installs the bridges)
from mmnextvit.compat import mmdet as mmdet_compat

IMAGE = (256, 320)
METAS = [dict(img_shape=IMAGE, scale_factor=(1., 1.))]


def cpu_bf16():
    return torch.autocast('cpu', dtype=torch.bfloat16)


def unbridged(owner):
    return owner.predict_by_feat.__wrapped__


@pytest.fixture(scope='module')
def rpn_head():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    head = MODELS.build(
        dict(
            type='RPNHead',
            in_channels=8,
            feat_channels=8,
            anchor_generator=dict(
                type='AnchorGenerator',
                scales=[8],
                ratios=[0.5, 1.0, 2.0],
                strides=[4, 8]),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[1.0, 1.0, 1.0, 1.0]),
            test_cfg=ConfigDict(
                nms_pre=200,
                max_per_img=100,
                nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0)))
    return head.eval()


def rpn_outputs():
    generator = torch.Generator().manual_seed(1)
    shapes = [(IMAGE[0] // 4, IMAGE[1] // 4), (IMAGE[0] // 8, IMAGE[1] // 8)]
    scores = [torch.randn(1, 3, *s, generator=generator) for s in shapes]
    deltas = [torch.randn(1, 12, *s, generator=generator) * 0.2
              for s in shapes]
    # bf16 outputs, as the head's convolutions give them under autocast.
    return ([s.bfloat16() for s in scores], [d.bfloat16() for d in deltas])


def test_mmdet_still_decodes_boxes_in_the_outputs_dtype(rpn_head):
    """Without the bridge mmdet makes its anchors in the outputs' dtype
    and decodes in bf16: proposals on a 1-pixel grid above 128."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    scores, deltas = rpn_outputs()
    with torch.no_grad(), cpu_bf16():
        (result, ) = unbridged(BaseDenseHead)(
            rpn_head, scores, deltas, batch_img_metas=METAS, rescale=False)
    assert result.bboxes.dtype == torch.bfloat16
    large = result.bboxes[result.bboxes > 128]
    assert large.numel() and torch.equal(large, large.round())


def test_bridge_decodes_rpn_boxes_in_fp32(rpn_head):
    """The bridged RPN under autocast gives what the fp32 head gives on
    the same outputs."""
    scores, deltas = rpn_outputs()
    with torch.no_grad():
        with cpu_bf16():
            (bridged, ) = rpn_head.predict_by_feat(
                scores, deltas, batch_img_metas=METAS, rescale=False)
        (fp32, ) = rpn_head.predict_by_feat([s.float() for s in scores],
                                            [d.float() for d in deltas],
                                            batch_img_metas=METAS,
                                            rescale=False)
    assert bridged.bboxes.dtype == torch.float32
    assert torch.equal(bridged.bboxes, fp32.bboxes)
    assert torch.equal(bridged.scores, fp32.scores)


def test_bridge_decodes_roi_head_boxes_in_fp32():
    from mmdet.models.roi_heads.bbox_heads import (BBoxHead,
                                                   Shared2FCBBoxHead)
    torch.manual_seed(0)
    head = Shared2FCBBoxHead(
        in_channels=8,
        fc_out_channels=16,
        roi_feat_size=7,
        num_classes=3,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=[0.1, 0.1, 0.2, 0.2])).eval()
    generator = torch.Generator().manual_seed(2)
    rois = torch.cat([
        torch.zeros(20, 1),
        torch.rand(20, 2, generator=generator) * 150,
        torch.rand(20, 2, generator=generator) * 100 + 155
    ], 1)
    cls_score = torch.randn(20, 4, generator=generator).bfloat16()
    bbox_pred = torch.randn(20, 12, generator=generator).bfloat16()
    cfg = ConfigDict(
        score_thr=0., nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100)
    args = ((rois.bfloat16(), ), (cls_score, ), (bbox_pred, ), METAS)
    with torch.no_grad():
        with cpu_bf16():
            (plain, ) = unbridged(BBoxHead)(
                head, *args, rcnn_test_cfg=cfg)
            (bridged, ) = head.predict_by_feat(*args, rcnn_test_cfg=cfg)
        (fp32, ) = head.predict_by_feat(
            (rois.bfloat16().float(), ), (cls_score.float(), ),
            (bbox_pred.float(), ), METAS, rcnn_test_cfg=cfg)
    assert plain.bboxes.dtype == torch.bfloat16
    assert bridged.bboxes.dtype == torch.float32
    assert torch.equal(bridged.bboxes, fp32.bboxes)


def test_without_autocast_nothing_changes(rpn_head):
    scores, deltas = rpn_outputs()
    scores, deltas = [s.float() for s in scores], [d.float() for d in deltas]
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    with torch.no_grad():
        (plain, ) = unbridged(BaseDenseHead)(
            rpn_head, scores, deltas, batch_img_metas=METAS, rescale=False)
        (bridged, ) = rpn_head.predict_by_feat(
            scores, deltas, batch_img_metas=METAS, rescale=False)
    assert torch.equal(plain.bboxes, bridged.bboxes)


def test_bridges_cover_the_classes_mask_rcnn_uses():
    """RPNHead and Shared2FCBBoxHead inherit the bridged methods (a head
    overriding predict_by_feat would not)."""
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
    owners = mmdet_compat.post_processing_owners()
    assert RPNHead.predict_by_feat is owners[0].predict_by_feat
    assert Shared2FCBBoxHead.predict_by_feat is owners[1].predict_by_feat
    mmdet_compat.install()  # idempotent: no second wrapper
    assert not hasattr(owners[0].predict_by_feat.__wrapped__, '__wrapped__')


def test_mmcv_nms_still_refuses_bf16_on_the_cpu():
    """mmcv's CPU NMS takes fp32 only: without the bridge a bf16 RPN stops
    there; with it, NMS under autocast keeps what the fp32 NMS keeps."""
    from mmcv.ops import nms
    from mmcv.ops.nms import NMSop
    generator = torch.Generator().manual_seed(3)
    corners = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([corners, corners + 20], 1).bfloat16()
    scores = torch.rand(50, generator=generator).bfloat16()
    with pytest.raises(RuntimeError):
        NMSop.forward.__wrapped__(None, boxes, scores, 0.5, 0, -1, -1)
    with cpu_bf16():
        _, bridged = nms(boxes, scores, 0.5)
    _, fp32 = nms(boxes.float(), scores.float(), 0.5)
    assert torch.equal(bridged, fp32)
