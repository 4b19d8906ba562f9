# UperNet with a Next-ViT-B backbone on ADE20K: the small recipe with the
# base backbone (160k iterations at a total batch of 16).
_base_ = './nextvit_s_160k.py'

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='checkpoints/nextvit_base_in1k_224.pth')))
