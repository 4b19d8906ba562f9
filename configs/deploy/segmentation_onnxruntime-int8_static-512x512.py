# Semantic FPN / UperNet in ONNX Runtime, int8 (calibrated post-training
# quantization, see _base_/int8.py), at 512x512 only.
_base_ = ['./segmentation_onnxruntime_static-512x512.py', './_base_/int8.py']
