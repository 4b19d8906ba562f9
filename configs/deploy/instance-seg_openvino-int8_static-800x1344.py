# Mask R-CNN in OpenVINO (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 800x1344 only.
_base_ = [
    './_base_/instance-seg.py', './_base_/backends/openvino.py',
    './_base_/int8.py'
]

onnx_config = dict(input_shape=[1344, 800])  # [width, height]
backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 1344]))])
