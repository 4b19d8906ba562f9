#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Deploy a whole Next-ViT detector or segmentor with mmdeploy.

    python tools/deployment/deploy.py CONFIG CHECKPOINT \\
        --deploy-cfg configs/deploy/instance-seg_onnxruntime_dynamic.py \\
        --work-dir work_dirs/deploy [--img IMAGE] [--test] [--device cpu] \\
        [--show-dir DIR] [--calib-images N] [--calib-dir DIR]
        [--max-drop D] [--time-runs N]

1. Exports the model with ``mmdeploy.apis.torch2onnx`` into ``--work-dir``
   and converts it for the deploy config's backend with mmdeploy:
   ``end2end.onnx`` (which ONNX Runtime runs), the backend's files
   (OpenVINO: ``end2end.xml``, ``end2end.bin``) and the configs as resolved
   (``deploy_cfg.py``, ``model_cfg.py``).
2. Runs the exported model (mmdeploy's backend model) and PyTorch on one
   image (``--img``, default the first test image) and prints how far apart
   they are: for a detector the matched boxes, scores and masks, for a
   segmentor the share of pixels labelled differently. ``--show-dir`` also
   draws the exported model's prediction there with the mmdet / mmseg
   visualiser.
   An int8 deploy config (``configs/deploy/*-int8_*.py``, with a
   ``quantization_config`` section) then quantizes the backend model,
   calibrated on ``--calib-images`` images of the config's training set,
   or of ``--calib-dir`` (a folder of your own images, no labels needed)
   (:mod:`mmnextvit.deploy.quantize`); the float model stays beside it
   (``end2end_fp32.*``). ``--max-drop`` then evaluates both on
   ``--val-images`` training images not calibrated on and fails, writing
   nothing, if the int8 model loses more than that.
3. With ``--test``, evaluates the exported model on the config's test set
   with the config's evaluator, printing the metrics as ``tools/test.py``
   does (``coco/bbox_mAP: ...``, ``mIoU: ...``); for int8, also the float
   model of the same export on the same images, and the difference.
   ``--time-runs N`` (int8) times the int8 and the float file on
   ``--img``'s input, taking turns: the speed of the files evaluated, in
   the inference precision they were evaluated in, which is the one
   ``demo/deployed_app.py`` runs (``backend_config.precision``, fp32).

Every input is checked before any work: mmdeploy and the deploy config's
backend installed, the deploy config for the model's task, the checkpoint a
checkpoint of the config's model. A failed export or conversion leaves the
work dir as it was.
"""
import argparse
import os.path as osp

import mmnextvit  # noqa: F401  (lets torch load mmengine checkpoints)
from mmnextvit.cli import (ToolError, build_model, check_checkpoint,
                           check_data_paths, init_task, load_config, run_tool)
from mmnextvit.deploy import pipeline, quantize


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a Next-ViT detector or segmentor with mmdeploy, '
        'compare it with PyTorch and evaluate it.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint of the model')
    parser.add_argument(
        '--deploy-cfg', required=True,
        help='mmdeploy deploy config, e.g. '
        'configs/deploy/instance-seg_onnxruntime_dynamic.py')
    parser.add_argument(
        '--work-dir', required=True,
        help='folder for the exported model and the resolved configs')
    parser.add_argument(
        '--img', help='image for the export and the comparison (default: '
        "the first image of the config's test set)")
    parser.add_argument(
        '--test', action='store_true',
        help="evaluate the exported model on the config's test set")
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument(
        '--show-dir',
        help="draw the exported model's prediction for --img in this folder")
    parser.add_argument(
        '--calib-images', type=int,
        help='int8 deploy configs (configs/deploy/*-int8_*.py): calibrate on '
        "this many images of the config's training set (default: the deploy "
        "config's quantization_config.calib_images)")
    parser.add_argument(
        '--calib-dir',
        help='int8: calibrate on the images in this folder (your own, no '
        'labels needed; --calib-images of them, evenly spaced, default all '
        "up to the config's calib_images) instead of the training set")
    parser.add_argument(
        '--max-drop', type=float,
        help='int8: after quantizing, evaluate the int8 and the float model '
        'on --val-images other training images and fail (writing nothing) '
        'if COCO box / mask AP or mIoU drops by more than this (AP: 0-1, '
        'mIoU: 0-100)')
    parser.add_argument(
        '--val-images', type=int, default=50,
        help='--max-drop: training images to evaluate on (default: 50)')
    parser.add_argument(
        '--time-runs', type=int,
        help='int8: time the int8 and the float model file on the input of '
        '--img, this many runs each taking turns, in the precision they are '
        'evaluated and demo/deployed_app.py runs them in; prints the '
        'medians')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='detection: compare and draw detections scoring at least this '
        '(default: 0.3)')
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace):
    """Everything that can be checked before the export; returns the model
    config, the deploy config, the task and the image."""
    pipeline.require_mmdeploy()
    model_cfg = load_config(args.config)
    deploy_cfg = pipeline.load_deploy_config(args.deploy_cfg)
    task = pipeline.check_task(model_cfg, deploy_cfg)
    backend = pipeline.check_backend(deploy_cfg)
    int8 = quantize.settings(deploy_cfg)
    for flag, value in (('--calib-images', args.calib_images),
                        ('--calib-dir', args.calib_dir),
                        ('--max-drop', args.max_drop),
                        ('--time-runs', args.time_runs)):
        if int8 is None and value is not None:
            raise ToolError(
                f"{flag} applies to int8 deploy configs, and "
                f"'{args.deploy_cfg}' has no quantization_config; drop it "
                f'or pass a configs/deploy/*-int8_*.py config')
    if args.max_drop is not None and args.max_drop < 0:
        raise ToolError(f'--max-drop {args.max_drop}: pass a drop >= 0')
    if args.val_images < 1:
        raise ToolError(f'--val-images {args.val_images}: pass a positive '
                        f'number of images')
    if args.calib_images is not None and args.calib_images < 1:
        raise ToolError(f'--calib-images {args.calib_images}: pass a '
                        f'positive number of images')
    if args.time_runs is not None and args.time_runs < 1:
        raise ToolError(f'--time-runs {args.time_runs}: pass a positive '
                        f'number of runs')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise ToolError(f'--device {args.device}: no CUDA device is '
                            f'available here; use --device cpu')
    init_task(model_cfg)
    check_checkpoint(model_cfg, args.checkpoint, model=build_model(model_cfg))
    if int8 is not None:
        quantize.require(backend)
        if args.calib_dir is not None:
            # The quantizer reads it from the section, and deploy_cfg.py in
            # the work dir records what was calibrated on.
            deploy_cfg.quantization_config['calib_dir'] = args.calib_dir
            int8['calib_dir'] = args.calib_dir
            quantize.calibration_images(model_cfg, int8, args.calib_images)
            if args.max_drop is not None:
                quantize.training_images(model_cfg, args.val_images)
        else:
            calib = args.calib_images or int8['calib_images']
            quantize.training_images(
                model_cfg, calib + (args.val_images
                                    if args.max_drop is not None else 0))
    if args.test:
        check_data_paths(model_cfg, ['test_dataloader'])
    image = args.img
    if image is None:
        image = pipeline.first_test_image(model_cfg)
        if image is None:
            raise ToolError(
                f"no --img given and the test set of '{args.config}' cannot "
                f'be read; pass --img IMAGE')
    elif not osp.isfile(image):
        raise ToolError(f"--img '{image}' does not exist; pass an image file")
    return model_cfg, deploy_cfg, task, image


def mask_comparison(diff: dict) -> str:
    if not diff['mask_pairs']:
        return 'no masks compared'
    empty = diff['empty_mask_pairs']
    iou = diff['min_mask_iou']
    return (f'min mask IoU {"n/a" if iou is None else f"{iou:.4f}"} over '
            f'{diff["mask_pairs"] - empty} mask pairs, {empty} pairs with '
            f'both masks empty')


def print_comparison(task: str, diff: dict, score_thr: float) -> None:
    if task == 'mmdet':
        print(f'PyTorch vs exported, detections scoring >= {score_thr}: '
              f'{diff["detections"]} vs {diff["exported_detections"]}, '
              f'{diff["unmatched"]} unmatched; over the matched: max box '
              f'difference {diff["max_box_diff"]:.3g} px, max score '
              f'difference {diff["max_score_diff"]:.3g}, ' +
              mask_comparison(diff))
    else:
        print(f'PyTorch vs exported: {100 * diff["label_mismatch"]:.4f}% of '
              f'{diff.get("pixels", 0)} pixels labelled differently')


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    model_cfg, deploy_cfg, task, image = check_inputs(args)
    backend_files = pipeline.export(model_cfg, deploy_cfg, args.checkpoint,
                                    image, args.work_dir, args.device,
                                    args.calib_images, args.max_drop,
                                    args.val_images)
    print(f'exported to {", ".join(backend_files)}')

    processor, torch_model, backend_model = pipeline.build_models(
        model_cfg, deploy_cfg, args.checkpoint, backend_files, args.device)
    expected = pipeline.predict(processor, torch_model, image, deploy_cfg)
    got = pipeline.predict(processor, backend_model, image, deploy_cfg)
    print_comparison(task,
                     pipeline.compare_predictions(task, expected, got,
                                                  args.score_thr),
                     args.score_thr)
    if args.show_dir:
        out_file = pipeline.draw(processor, image, got, args.show_dir,
                                 args.score_thr)
        print(f'drawn to {out_file}')
    if args.test:
        metrics = pipeline.evaluate(processor, backend_model,
                                    osp.join(args.work_dir, 'test'))
        for name, value in metrics.items():
            print(f'{name}: {value}')
        if quantize.settings(deploy_cfg) is not None:
            # The same images through the float model of the same export.
            float_model = pipeline.build_backend_model(
                processor, quantize.float_files(backend_files))
            reference = pipeline.evaluate(processor, float_model,
                                          osp.join(args.work_dir,
                                                   'test_fp32'))
            for name in quantize.KEY_METRICS:
                if name in metrics:
                    int8, fp32 = float(metrics[name]), float(reference[name])
                    print(f'int8 vs float {name}: {int8:.4f} vs {fp32:.4f} '
                          f'(difference {int8 - fp32:+.4f})')
    if args.time_runs:
        print_speed(processor, deploy_cfg, backend_files, image,
                    args.time_runs)


def print_speed(processor, deploy_cfg, backend_files, image: str,
                runs: int) -> None:
    """The int8 and the float model file of the export timed on the
    input of ``image`` (through the test pipeline), taking turns."""
    import torch
    from mmdeploy.utils import get_input_shape
    with torch.no_grad():
        _, tensor = processor.create_input(
            image, get_input_shape(deploy_cfg),
            processor.build_data_preprocessor())
    feed = tensor.cpu().numpy().astype('float32')
    backend = deploy_cfg.backend_config.type
    precision = quantize.inference_precision(deploy_cfg)
    threads = torch.get_num_threads()
    int8, fp32 = quantize.time_pair(
        backend, [backend_files[0],
                  quantize.float_files(backend_files)[0]], feed, runs,
        precision, threads)
    where = f'{backend}, {precision}' if backend == 'openvino' else backend
    print(f'int8 vs float speed ({where}, {threads} threads, input '
          f'{"x".join(map(str, feed.shape[2:]))}, median of {runs} runs): '
          f'{int8:.1f} vs {fp32:.1f} ms ({fp32 / int8:.2f}x)')


if __name__ == '__main__':
    main()
