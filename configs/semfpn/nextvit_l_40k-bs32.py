# Semantic FPN with a Next-ViT-L backbone on ADE20K: the small recipe with
# the large backbone (40k iterations at a total batch of 32; upstream's "80k").
_base_ = './nextvit_s_40k-bs32.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(checkpoint='checkpoints/nextvit_large_in1k_224.pth')))
