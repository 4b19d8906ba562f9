# Semantic FPN / UperNet in OpenVINO (CPU) at one size: 512x512, the ADE20K
# crop.
_base_ = ['./_base_/segmentation.py', './_base_/backends/openvino.py']

onnx_config = dict(input_shape=[512, 512])  # [width, height]
backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 512, 512]))])
