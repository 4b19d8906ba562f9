# Semantic FPN / UperNet in ONNX Runtime, int8 (calibrated post-training
# quantization, see _base_/int8.py), at any size.
_base_ = ['./segmentation_onnxruntime_dynamic.py', './_base_/int8.py']
