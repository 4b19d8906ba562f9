# Mask R-CNN in ONNX Runtime (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at any size.
_base_ = [
    './_base_/instance-seg_dynamic.py', './_base_/backends/onnxruntime.py',
    './_base_/int8.py'
]
