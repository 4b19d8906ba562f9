# Mask R-CNN in OpenVINO (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at any size.
_base_ = ['./instance-seg_openvino_dynamic.py', './_base_/int8.py']
