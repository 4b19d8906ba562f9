# UperNet with a Next-ViT-S backbone on ADE20K, 512x512 crops, 160k
# iterations at a total batch of 16: the recipe of the Next-ViT paper
# (arXiv 2207.05501), as the upstream repository's mmseg 0.x configs set it.
#
# This is the one primitive config of the folder: the base and large
# variants change only the backbone.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

custom_imports = dict(imports=['mmnextvit'], allow_failed_imports=False)

# ImageNet-1K 224 weights of the upstream release, in any layout that
# mmnextvit.models.checkpoint_layouts reads (the upstream ``model`` dict, a converted file or
# the timm safetensors). Another path: --cfg-options
#   model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/nextvit_small_in1k_224.pth'

crop_size = (512, 512)
# Synchronised across GPUs, as upstream (the heads' SyncBN comes from the base
# config); single-process and CPU runs turn it into plain BN.
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    # The base config points this at a ResNet checkpoint.
    pretrained=None,
    backbone=dict(
        _delete_=True,
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
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # Next-ViT's stage widths, not ResNet-50's; the auxiliary FCN head reads
    # stage 3 (512 channels).
    decode_head=dict(in_channels=[96, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))

train_dataloader = dict(batch_size=2)  # 8 GPUs x 2 = 16

# SegDataCheckHook stops at the first image without a label map or label
# value outside the classes, with one line naming the file (mmseg itself
# fails deep inside a data-loader worker, or silently drops the values from
# the metric). StopOnInvalidLossHook stops a run whose loss turns NaN/inf,
# naming the iteration, before a checkpoint is written from it.
custom_hooks = [
    dict(type='mmnextvit.SegDataCheckHook'),
    dict(type='mmnextvit.StopOnInvalidLossHook'),
]

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

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # No weight decay on any parameter whose name contains 'norm' or 'bn'
    # (keys match as substrings of the full parameter name): the backbone's
    # batch norms and the heads' ConvModule norms, as upstream.
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.),
            'bn': dict(decay_mult=0.),
        }),
    clip_grad=None)

# Upstream (mmcv 1.x) multiplies a linear warmup over the first 1500
# iterations onto a poly decay that runs over all 160k iterations; two
# mmengine schedulers active together compose the same way. mmengine's
# LinearLR and PolyLR reach their final values at iteration end - 1, mmcv
# 1.x's at warmup_iters and max_iters: end + 1 gives upstream's curve
# exactly.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=1501),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.,
        begin=0,
        end=160001,
        by_epoch=False),
]

# lr 6e-5 belongs to a total batch of 16; --auto-scale-lr rescales from it.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# A killed run resumes where it stopped (random state included) and never
# meets a half-written checkpoint (docs/reliability.md).
default_hooks = dict(
    checkpoint=dict(
        type='mmnextvit.SafeCheckpointHook',
        backend_args=dict(backend='atomic_local')))
