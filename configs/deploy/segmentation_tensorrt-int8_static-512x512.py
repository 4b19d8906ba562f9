# Semantic FPN / UperNet in TensorRT, int8 calibrated by TensorRT
# (_base_/backends/tensorrt-int8.py), at 512x512 only.
_base_ = ['./_base_/segmentation.py', './_base_/backends/tensorrt-int8.py']

onnx_config = dict(input_shape=[512, 512])  # [width, height]
backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 512, 512],
                opt_shape=[1, 3, 512, 512],
                max_shape=[1, 3, 512, 512])))
])
