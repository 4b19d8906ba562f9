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
    'mmseg::_base_/schedules/schedule_40k.py',
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
    # Next-ViT's stage widths, not ResNet-50's.
    neck=dict(in_channels=[96, 256, 512, 1024]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=4)  # 8 GPUs x 4 = 32

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
# A checkpoint (resumable, written atomically) every validation.
default_hooks = dict(
    checkpoint=dict(**_base_.nextvit_checkpoint_hook, interval=4000))

# lr 1e-4 belongs to a total batch of 32; --auto-scale-lr rescales from it.
auto_scale_lr = dict(enable=False, base_batch_size=32)
