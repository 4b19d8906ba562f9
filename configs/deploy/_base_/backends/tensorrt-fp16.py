# TensorRT in half precision. The engine is built for the shapes in
# backend_config.model_inputs, which each deploy config sets; the custom
# operators come from the TensorRT library in the mmdeploy wheel.
backend_config = dict(
    type='tensorrt',
    common_config=dict(
        fp16_mode=True,
        # 1 GiB of scratch memory for TensorRT's kernel search.
        max_workspace_size=1 << 30))
