# UperNet with a Next-ViT-S backbone on ADE20K, 512x512 crops, 160k
# iterations at a total batch of 16: the recipe of the Next-ViT paper
# (arXiv 2207.05501), as the upstream repository's mmseg 0.x configs set it.
#
# This is the one primitive config of the folder: the base and large
# variants change only the backbone.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/nextvit_seg.py',
]

crop_size = (512, 512)
# The heads' norms; the backbone's are set in nextvit_seg.py.
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    # The base config points this at a ResNet checkpoint.
    pretrained=None,
    backbone=dict(_delete_=True, **_base_.nextvit_backbone),
    # Next-ViT's stage widths, not ResNet-50's; the auxiliary FCN head reads
    # stage 3 (512 channels).
    decode_head=dict(in_channels=[96, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))

train_dataloader = dict(batch_size=2)  # 8 GPUs x 2 = 16

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

default_hooks = dict(checkpoint=_base_.nextvit_checkpoint_hook)
