# Next-ViT-S Mask R-CNN trained from scratch on the synthetic shapes data, on
# a CPU, in minutes: the repository's main job (`make demo`).
#
# Same model and optimiser as configs/mask_rcnn/nextvit_s_1x.py; only the
# data, the image size and the schedule differ. Make the data first (a no-op
# when present):
#   python tools/dataset_converters/make_shapes.py
_base_ = '../mask_rcnn/nextvit_s_1x.py'

data_root = 'data/shapes/'
# mmnextvit.bundled_data.shapes.CLASSES, in category-id order.
classes = ('circle', 'square', 'triangle')
metainfo = dict(
    classes=classes, palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0)])
# The generator's images are 256 x 256; the model sees them at half that
# size, the largest a CPU trains in minutes (objects of 20-56 pixels).
# Predictions come back at the original size (sharper pictures).
img_scale = (128, 128)

model = dict(
    backbone=dict(
        # Freezing the stem and stage 1 and keeping the batch norms in eval
        # mode preserve ImageNet features; from random weights they would
        # freeze random layers and leave the backbone without normalisation.
        frozen_stages=-1,
        norm_eval=False,
        # No ImageNet weights: start from the backbone's own initialisation
        # (truncated-normal convolutions and linears, unit batch norms).
        init_cfg=[
            dict(
                type='TruncNormal',
                layer=['Conv2d', 'Linear'],
                std=.02,
                bias=0.),
            dict(type='Constant', layer=['_BatchNorm'], val=1., bias=0.)
        ]),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))),
    # An image holds at most four objects, so 32 sampled RoIs per image
    # (up to 8 positives) instead of 512 (up to 128) still give each object
    # a few mask targets. The mask head costs about 1 GFLOP per positive RoI
    # forward, the largest single cost of a CPU step.
    train_cfg=dict(rcnn=dict(sampler=dict(num=32))),
    # And 100 RPN proposals per image at test time instead of the COCO
    # config's 1000: the box head is most of a CPU evaluation's time at this
    # size. Measured on a 150-iteration checkpoint (50 held-out images,
    # 2 threads): 0.57 -> 0.17 s per image, and bbox / segm AP 0.387 / 0.485
    # -> 0.446 / 0.555 (fewer low-scoring boxes reach the box head's NMS).
    test_cfg=dict(rpn=dict(max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]

train_dataloader = dict(
    batch_size=2,
    # Two cores: one loader process decodes PNGs while the main one trains.
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule
# 600 iterations of 2 images and four evaluations on the 50 held-out images
# (10-20 s each) for the AP curve: `make demo` takes about 13 minutes on 2
# CPU cores (docs/benchmarks/bundled_runs.json).
max_iters = 600
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters // 4)

# mmengine's AmpOptimWrapper asserts a CUDA (or NPU/MLU) device and a CPU has
# none, so the CPU run trains in fp32. Same AdamW (lr 1e-4 suits training
# from scratch here as well: 2e-4 and 6e-4 measured no better), same no-decay
# keys.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # The fused kernel makes the step over 50M parameters 10-30x faster on a
    # CPU than torch's default per-tensor loop; the arithmetic is AdamW's.
    optimizer=dict(_base_.optim_wrapper.optimizer, fused=True),
    paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)

# The 1x shape in iterations: linear warmup, then x0.1 after 8/12 and 11/12
# of the run.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[max_iters * 8 // 12, max_iters * 11 // 12],
        gamma=0.1),
]

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=10)
