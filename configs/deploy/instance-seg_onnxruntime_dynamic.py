# Mask R-CNN in ONNX Runtime at any size, so the model config's own test
# pipeline (keep-ratio resize) feeds it as is.
_base_ = [
    './_base_/instance-seg_dynamic.py', './_base_/backends/onnxruntime.py'
]
