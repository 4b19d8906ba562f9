# Mask R-CNN in ONNX Runtime, int8 (calibrated post-training
# quantization, see _base_/int8.py), at any size.
_base_ = ['./instance-seg_onnxruntime_dynamic.py', './_base_/int8.py']

# ONNX Runtime's calibration (min / max ranges, no bias correction) costs
# the box head's large fully connected layers more than NNCF's: on the
# bundled Mask R-CNN, box AP -0.014 with them in int8, -0.006 in float.
quantization_config = dict(float_scopes=['bbox_head'])
