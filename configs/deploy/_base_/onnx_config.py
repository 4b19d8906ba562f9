# How mmdeploy traces a model into ONNX; every deploy config here starts
# from this (mmdeploy's `onnx_config` section).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # mmdeploy's symbolic functions (RoIAlign, NMS) are written for 11.
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    # None: the size follows the image given to the export; a static
    # config sets [width, height] (mmdeploy's order).
    input_shape=None,
    # mmdeploy's graph passes hook a torch function that torch 2.13 no
    # longer calls (see mmnextvit/compat/mmdeploy.py), so asking for them
    # would change nothing.
    optimize=False)
