# Next-ViT-S Semantic FPN trained from scratch on the synthetic semantic
# shapes data (ADE20K layout), on a CPU, in minutes.
#
# Same model and optimiser as configs/semfpn/nextvit_s_40k-bs32.py (AdamW,
# lr 1e-4); only the data, the crop, the norms (plain BN: one process, no
# GPUs to synchronise) and the schedule differ. Make the data first (a no-op
# when present):
#   python tools/dataset_converters/make_seg_shapes.py
_base_ = '../semfpn/nextvit_s_40k-bs32.py'

data_root = 'data/seg_shapes'
# mmnextvit.bundled_data.seg_shapes.CLASSES: label values 1..4 of the PNGs;
# 0 is "other" and ignored, as in ADE20K.
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle'),
    palette=[(120, 120, 120), (220, 20, 60), (0, 128, 255), (255, 200, 0)])
# The generator's images are 64 x 64: the (2048, 512) scale of ADE20K's
# pipelines becomes (256, 64), the 512 crop a 64 crop.
scale = (256, 64)
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        norm_cfg=norm_cfg,
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
    decode_head=dict(
        num_classes=len(metainfo['classes']), norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize', scale=scale, ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(scale[0] * r), int(scale[1] * r)),
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

# ADE20KDataset's class list is fixed to ADE's 150 classes; the generic
# dataset reads the same layout with these four.
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    # Two cores: decoding 64 x 64 images in the main process is cheaper
    # than a worker process.
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---------------------------------------------------------------- schedule
# 150 iterations of 4 images (2.5 passes over the data) take about two
# minutes on two CPU cores and reach about 77 mIoU on the validation split
# (an untrained model: 1-19, predicting "background" everywhere: 21).
max_iters = 150
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-6,
        begin=0,
        end=max_iters + 1,
        by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=10)

# One process per machine here: no NCCL.
env_cfg = dict(dist_cfg=dict(backend='gloo'))
