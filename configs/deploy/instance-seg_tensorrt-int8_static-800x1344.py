# Mask R-CNN in TensorRT, int8 calibrated by TensorRT
# (_base_/backends/tensorrt-int8.py), at 800x1344 only.
_base_ = ['./_base_/instance-seg.py', './_base_/backends/tensorrt-int8.py']

onnx_config = dict(input_shape=[1344, 800])  # [width, height]
backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 800, 1344],
                opt_shape=[1, 3, 800, 1344],
                max_shape=[1, 3, 800, 1344])))
])
