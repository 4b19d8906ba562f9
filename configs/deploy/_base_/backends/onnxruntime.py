# ONNX Runtime (CPU, or CUDA with onnxruntime-gpu); the custom operators
# (MMCVRoiAlign and friends) come from the library in the mmdeploy wheel.
backend_config = dict(type='onnxruntime')
