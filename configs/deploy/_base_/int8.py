# int8 post-training quantization for the CPU engines (OpenVINO through
# NNCF, ONNX Runtime through onnxruntime.quantization's static QDQ), run by
# tools/deployment/deploy.py after the export (mmnextvit/deploy/quantize.py).
# mmdeploy reads no such section and ignores it; change the settings here,
# not in code.
quantization_config = dict(
    # Images of the model config's *training* set (evenly spaced over it),
    # each through the config's test pipeline; deploy.py --calib-images
    # overrides the count.
    calib_images=100,
    # NNCF's preset: 'mixed' (asymmetric activations: Next-ViT's GELU,
    # norm and residual outputs are signed, and a symmetric range wastes
    # half its levels on them; on the bundled Mask R-CNN 'performance' cost
    # 0.017 box AP, 'mixed' nothing) or 'performance' (symmetric).
    preset='mixed',
    # NNCF's model type: None (a CNN) or 'transformer'.
    model_type=None,
    # Keep attention's products of two activations (query x key, weights x
    # value) in float; the convolutions and the weight products are int8.
    float_attention=True,
    # Other nodes to keep in float, by name or by operator type. The
    # post-processing (box decoding, NMS, top-k, RoI boxes, the logits'
    # resize and argmax) always stays in float.
    ignored_names=[],
    ignored_types=[])
