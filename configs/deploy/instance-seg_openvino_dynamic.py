# Mask R-CNN in OpenVINO (CPU) at any size: the IR keeps the graph's
# dynamic batch, height and width.
_base_ = [
    './_base_/instance-seg_dynamic.py', './_base_/backends/openvino.py'
]
