# Mask R-CNN in OpenVINO (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 800x1344 only.
_base_ = ['./instance-seg_openvino_static-800x1344.py', './_base_/int8.py']
