# Mask R-CNN in OpenVINO (CPU) at one size: 800x1344, COCO's (1333, 800)
# resize padded to a multiple of 32.
_base_ = ['./_base_/instance-seg.py', './_base_/backends/openvino.py']

onnx_config = dict(input_shape=[1344, 800])  # [width, height]
backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 1344]))])
