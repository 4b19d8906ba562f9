# Mask R-CNN with Next-ViT-B on COCO 2017, 1x: the small recipe with the base
# backbone; everything else is shared (upstream trains all three sizes alike).
_base_ = './nextvit_s_1x.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/nextvit_base_in1k_224.pth')))
