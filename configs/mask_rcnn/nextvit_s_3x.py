# Mask R-CNN with Next-ViT-S on COCO 2017, 3x (36 epochs) with the multi-scale
# and crop augmentation of DETR / Sparse R-CNN, as the upstream 3x models and
# mmdet's Swin-T / ConvNeXt-T "ms-crop-3x" configs were trained. Only the
# training pipeline and the schedule differ from the 1x recipe; the test
# pipeline stays single-scale (1333, 800) without flip.
_base_ = './nextvit_s_1x.py'

# Short sides 480, 512, ..., 800 with the long side capped at 1333.
multi_scales = [(short, 1333) for short in range(480, 801, 32)]

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            # Half of the images: multi-scale resize only.
            [
                dict(
                    type='RandomChoiceResize',
                    scales=multi_scales,
                    keep_ratio=True)
            ],
            # The other half: resize, random crop, then multi-scale resize.
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=multi_scales,
                    keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)

# The same 500-iteration warmup as 1x; the steps move to epochs 27 and 33.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1),
]
