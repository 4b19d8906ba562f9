# Semantic FPN / UperNet in TensorRT, half precision, any size from 512x512
# to 1024x2048; the engine is tuned for ADE20K's 512x512.
_base_ = [
    './_base_/segmentation_dynamic.py', './_base_/backends/tensorrt-fp16.py'
]

backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 512, 512],
                opt_shape=[1, 3, 512, 512],
                max_shape=[1, 3, 1024, 2048])))
])
