# Semantic FPN / UperNet (mmseg EncoderDecoder, whole-image inference) as
# one graph from the image to the label map at the input size.
_base_ = ['./onnx_config.py']

codebase_config = dict(
    type='mmseg',
    task='Segmentation',
    # Imported by mmdeploy before the export: the bridges for torch 2.x
    # and the export rewrites of this package (size-following resizing and
    # pyramid pooling).
    module=['mmnextvit.deploy.rewriters'],
    # The label map (int64, N x 1 x H x W) rather than the logits: what a
    # user ships, and 1/num_classes of the output.
    with_argmax=True)
