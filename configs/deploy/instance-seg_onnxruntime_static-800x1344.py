# Mask R-CNN in ONNX Runtime at one size: 800x1344, COCO's (1333, 800)
# resize padded to a multiple of 32. Every input must have this size.
_base_ = ['./_base_/instance-seg.py', './_base_/backends/onnxruntime.py']

onnx_config = dict(input_shape=[1344, 800])  # [width, height]
