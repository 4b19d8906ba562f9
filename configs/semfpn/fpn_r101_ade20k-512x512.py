# Semantic FPN with a ResNet-101 (V1c) on ADE20K at 512x512, 160k iterations:
# the model mmseg's `sem_fpn/fpn_r101_4xb4-160k_ade20k-512x512.py` is named
# after, the reference of the whole-model comparisons (docs/benchmarks.md).
# mmseg 1.2.2's file assigns `model` twice and the second assignment replaces
# the first, so it builds (and would initialise) a ResNet-50.
# tests/test_configs_seg.py fails once mmseg's file builds a ResNet-101; then
# this file can go.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'

model = dict(
    pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
