# What every Next-ViT segmentation recipe of this repository shares: ADE20K,
# mmseg's runtime, the backbone, the multi-scale + flip test pipeline and the
# hooks. A recipe lists it beside the stock head and schedule bases, e.g.
#   _base_ = ['mmseg::_base_/models/fpn_r50.py',
#             'mmseg::_base_/schedules/schedule_40k.py',
#             '../_base_/nextvit_seg.py']
# mmengine refuses a key defined by two sibling bases, so the pieces that
# land in the stock bases' ``model`` and ``default_hooks`` are given here as
# ``nextvit_backbone`` and ``nextvit_checkpoint_hook`` for the recipe to
# place.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmnextvit'], allow_failed_imports=False)

# ImageNet-1K 224 weights of the upstream release, in any layout that
# mmnextvit.models.checkpoint_layouts reads (the upstream ``model`` dict, a
# converted file or the timm safetensors). Another path: --cfg-options
#   model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/nextvit_small_in1k_224.pth'

nextvit_backbone = dict(
    type='mmnextvit.NextViT',
    arch='small',
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_eval=False,
    # The released segmentation models normalise every stage's output
    # (stage 4 with the ImageNet classifier's norm).
    with_extra_norm=True,
    # Upstream's segmentation code uses 0.2 for all three variants
    # (0.1 for small in classification and detection).
    drop_path_rate=0.2,
    # Synchronised across GPUs, as upstream (the heads' SyncBN comes from the
    # stock model bases); single-process and CPU runs turn it into plain BN.
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))

# SegDataCheckHook stops at the first image without a label map or label
# value outside the classes, with one line naming the file (mmseg itself
# fails deep inside a data-loader worker, or silently drops the values from
# the metric). StopOnInvalidLossHook stops a run whose loss turns NaN/inf,
# naming the iteration, before a checkpoint is written from it.
custom_hooks = [
    dict(type='mmnextvit.SegDataCheckHook'),
    dict(type='mmnextvit.StopOnInvalidLossHook'),
]

# A killed run resumes where it stopped (random state included) and never
# meets a half-written checkpoint (docs/reliability.md).
nextvit_checkpoint_hook = dict(
    type='mmnextvit.SafeCheckpointHook',
    backend_args=dict(backend='atomic_local'))

# Multi-scale + flip testing (the "ms" column): upstream's mmseg 0.x scales
# the (2048, 512) test scale by each ratio and resizes within it; mmseg's
# stock TTA pipeline would scale the original image instead.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(2048 * r), int(512 * r)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
