# Semantic FPN / UperNet in ONNX Runtime (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 512x512 only.
_base_ = [
    './_base_/segmentation.py', './_base_/backends/onnxruntime.py',
    './_base_/int8.py'
]

onnx_config = dict(input_shape=[512, 512])  # [width, height]
