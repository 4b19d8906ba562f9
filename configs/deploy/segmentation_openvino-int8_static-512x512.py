# Semantic FPN / UperNet in OpenVINO (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 512x512 only.
_base_ = ['./segmentation_openvino_static-512x512.py', './_base_/int8.py']
