# Mask R-CNN (mmdet) as one end-to-end graph: boxes with scores, labels and
# 28x28 mask logits per detection; the masks are pasted into the image by
# mmdeploy's Python post-processing, as mmdet does.
_base_ = ['./onnx_config.py']

onnx_config = dict(output_names=['dets', 'labels', 'masks'])

# The detectors' own test_cfg (score_thr, nms.iou_threshold, max_per_img)
# take precedence inside mmdeploy's rewritten heads; these values are the
# fallbacks and the limits mmdet's PyTorch path does not have.
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    # Imported by mmdeploy before the export: the bridges for torch 2.x
    # and the export rewrites of this package.
    module=['mmnextvit.deploy.rewriters'],
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        # mmdet caps only the total (max_per_img=100), so one class may
        # keep all of them.
        max_output_boxes_per_class=100,
        # Candidates kept before NMS: RPN's 5 levels x nms_pre=1000, so the
        # proposals are the ones mmdet's PyTorch path keeps.
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        # Mask pasting stays outside the graph (mmdeploy's post-processing),
        # at the original image size, as mmdet's PyTorch path does.
        export_postprocess_mask=False))
