# Semantic FPN / UperNet in ONNX Runtime at any size.
_base_ = [
    './_base_/segmentation_dynamic.py', './_base_/backends/onnxruntime.py'
]
