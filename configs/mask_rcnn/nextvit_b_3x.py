# Mask R-CNN with Next-ViT-B on COCO 2017, 3x multi-scale + crop: the small 3x
# recipe with the base backbone, as in nextvit_b_1x.py.
_base_ = './nextvit_s_3x.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/nextvit_base_in1k_224.pth')))
