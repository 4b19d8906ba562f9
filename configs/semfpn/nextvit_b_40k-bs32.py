# Semantic FPN with a Next-ViT-B backbone on ADE20K: the small recipe with
# the base backbone (40k iterations at a total batch of 32; upstream's "80k").
_base_ = './nextvit_s_40k-bs32.py'

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='checkpoints/nextvit_base_in1k_224.pth')))
