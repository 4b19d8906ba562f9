# Semantic FPN with a Next-ViT-S backbone on ADE20K, 512x512 crops,
# 40k iterations at a total batch of 32.
#
# The upstream repository calls this run "80k": its config halves mmseg's 80k
# iterations because it doubles the batch (8 GPUs x 4 instead of 8 x 2), so
# it sees as many samples as 80k iterations at 16. The name here states what
# it trains. This is the one primitive config of the folder: the base and
# large variants change only the backbone.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
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
    # Next-ViT's stage widths, not ResNet-50's.
    neck=dict(in_channels=[96, 256, 512, 1024]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=4)  # 8 GPUs x 4 = 32

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

# AdamW without per-parameter settings, as upstream.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)

# Poly decay to 1e-6 over the whole run, no warmup. mmengine's PolyLR
# reaches eta_min at iteration end - 1, mmcv 1.x's poly policy (upstream's)
# at max_iters: end = max_iters + 1 gives upstream's curve exactly.
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-6,
        begin=0,
        end=40001,
        by_epoch=False)
]
train_cfg = dict(max_iters=40000, val_interval=4000)
# A killed run resumes where it stopped (random state included) and never
# meets a half-written checkpoint (docs/reliability.md).
default_hooks = dict(
    checkpoint=dict(
        type='mmnextvit.SafeCheckpointHook',
        backend_args=dict(backend='atomic_local'),
        interval=4000))

# lr 1e-4 belongs to a total batch of 32; --auto-scale-lr rescales from it.
auto_scale_lr = dict(enable=False, base_batch_size=32)
