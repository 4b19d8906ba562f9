# Semantic FPN / UperNet in ONNX Runtime at one size: 512x512, the ADE20K
# crop. Every input must have this size.
_base_ = ['./_base_/segmentation.py', './_base_/backends/onnxruntime.py']

onnx_config = dict(input_shape=[512, 512])  # [width, height]
