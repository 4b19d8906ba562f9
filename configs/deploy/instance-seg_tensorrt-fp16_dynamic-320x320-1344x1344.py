# Mask R-CNN in TensorRT, half precision, any size from 320x320 to
# 1344x1344; the engine is tuned for COCO's 800x1344.
_base_ = [
    './_base_/instance-seg_dynamic.py', './_base_/backends/tensorrt-fp16.py'
]

backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 320, 320],
                opt_shape=[1, 3, 800, 1344],
                max_shape=[1, 3, 1344, 1344])))
])
