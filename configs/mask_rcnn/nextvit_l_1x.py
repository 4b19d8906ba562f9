# Mask R-CNN with Next-ViT-L on COCO 2017, 1x: the small recipe with the large
# backbone; everything else is shared (upstream trains all three sizes alike).
_base_ = './nextvit_s_1x.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/nextvit_large_in1k_224.pth')))
