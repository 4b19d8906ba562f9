# Next-ViT-S UperNet trained from scratch on the bundled semantic shapes
# data, on a CPU, in minutes: the heads of configs/upernet/nextvit_s_160k.py
# (UPerHead on the four stages, the auxiliary FCN head on stage 3) with the
# data, crop, plain BN norms and schedule of nextvit_s_seg-shapes-cpu.py.
# Make the data first (a no-op when present):
#   python tools/dataset_converters/make_seg_shapes.py
_base_ = './nextvit_s_seg-shapes-cpu.py'

norm_cfg = dict(type='BN', requires_grad=True)
num_classes = 4

model = dict(
    # UperNet reads the backbone's stages directly: no FPN neck.
    neck=None,
    decode_head=dict(
        _delete_=True,
        type='UPerHead',
        in_channels=[96, 256, 512, 1024],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=512,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
