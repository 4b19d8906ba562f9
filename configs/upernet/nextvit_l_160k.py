# UperNet with a Next-ViT-L backbone on ADE20K: the small recipe with the
# large backbone (160k iterations at a total batch of 16).
_base_ = './nextvit_s_160k.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(checkpoint='checkpoints/nextvit_large_in1k_224.pth')))
