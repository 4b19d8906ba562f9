# Mask R-CNN in ONNX Runtime (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 800x1344 only.
_base_ = [
    './_base_/instance-seg.py', './_base_/backends/onnxruntime.py',
    './_base_/int8.py'
]

onnx_config = dict(input_shape=[1344, 800])  # [width, height]

# ONNX Runtime's calibration (min / max ranges, no bias correction) costs
# the box head's large fully connected layers more than NNCF's: on the
# bundled Mask R-CNN, box AP -0.014 with them in int8, -0.006 in float.
quantization_config = dict(float_scopes=['bbox_head'])
