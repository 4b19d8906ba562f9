# Semantic FPN / UperNet in OpenVINO (CPU), int8 (calibrated post-training
# quantization, see _base_/int8.py), at 512x512 only.
_base_ = [
    './_base_/segmentation.py', './_base_/backends/openvino.py',
    './_base_/int8.py'
]

onnx_config = dict(input_shape=[512, 512])  # [width, height]
backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 512, 512]))])
