# Copyright (c) mmnextvit contributors. All rights reserved.
"""How far a reduced precision moves the backbone's features from fp32, on
the images of a config's test data.

    python tools/analysis_tools/precision_error.py CONFIG CHECKPOINT \\
        [--precision bf16] [--images 20] [--deploy] [--cfg-options K=V ...]
    python tools/analysis_tools/precision_error.py CONFIG CHECKPOINT \
        --precision int8 [--engine openvino] [--calib-images 32] [--deploy]

For each test image (preprocessed by the model's data preprocessor, as the
test loop does) the backbone runs three ways: fp32, under autocast in the
precision (what ``tools/test.py --precision`` runs, weights fp32), and cast
to the precision (``model.to(dtype)``, weights and input). The table gives,
for each of the four pyramid features, the relative error against fp32:
the largest absolute difference over the largest fp32 magnitude, the worst
over the images, and the norm of the difference over the norm of the fp32
feature, the mean over the images. ``--deploy`` measures the backbone after
``switch_to_deploy()`` (norms folded), against the fp32 deployed backbone.

``--precision int8`` exports the backbone (dynamic height and width),
quantizes it for ``--engine`` as the int8 deploy configs do
(:mod:`mmnextvit.deploy.quantize`, calibrated on ``--calib-images`` images
of the config's training set through its test pipeline) and compares the
engine's int8 features with the eager fp32 ones.

The metric itself (COCO AP, mIoU) in a precision: ``tools/test.py CONFIG
CHECKPOINT --precision bf16``; in int8, ``tools/deployment/deploy.py
CONFIG CHECKPOINT --deploy-cfg configs/deploy/*-int8_*.py --test``.
"""
import argparse
import copy
import itertools
from typing import Dict, List

import mmnextvit  # noqa: F401  (lets torch load mmengine checkpoints)
from mmnextvit.cli import (ToolError, add_cfg_options, autocast_dtype,
                           build_model, check_checkpoint, check_data_files,
                           check_data_paths, init_task, load_config, run_tool)

PRECISIONS = ('bf16', 'fp16', 'int8')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Relative error of the backbone features in a reduced '
        'precision against fp32, on the config\'s test images.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default='bf16',
        help='bf16 (default; CPU and recent GPUs), fp16 (GPU) or int8 '
        '(the exported backbone, quantized, in --engine)')
    parser.add_argument(
        '--engine',
        choices=('openvino', 'onnxruntime'),
        default='openvino',
        help='--precision int8: the engine (default: openvino)')
    parser.add_argument(
        '--calib-images',
        type=int,
        default=32,
        help='--precision int8: training images to calibrate on (default: '
        '32)')
    parser.add_argument(
        '--images',
        type=int,
        default=20,
        help='test images to measure on (default: 20)')
    parser.add_argument(
        '--deploy',
        action='store_true',
        help='measure the backbone after switch_to_deploy()')
    parser.add_argument(
        '--device', default='cpu', help='cpu or cuda (default: cpu)')
    add_cfg_options(parser, 'test_dataloader.dataset.data_root=PATH')
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error('--images must be >= 1')
    if args.calib_images < 1:
        parser.error('--calib-images must be >= 1')
    return args


def relative_errors(got, expected) -> Dict[str, float]:
    """``max``: largest absolute difference over the largest magnitude;
    ``norm``: norm of the difference over the norm of ``expected``."""
    diff = (got.float() - expected).abs()
    return dict(
        max=(diff.max() / expected.abs().max().clamp_min(1e-12)).item(),
        norm=(diff.norm() / expected.norm().clamp_min(1e-12)).item())


def summarise(errors: List[List[Dict[str, float]]]) -> List[Dict[str, float]]:
    """Per stage: the worst ``max`` and the mean ``norm`` over images."""
    stages = zip(*errors)
    return [
        dict(
            max=max(e['max'] for e in stage),
            norm=sum(e['norm'] for e in stage) / len(stage))
        for stage in stages
    ]


def int8_errors(backbone, calibration, images, engine: str):
    """Per image, per stage: :func:`relative_errors` of ``backbone``
    exported and quantized for ``engine`` (calibrated on the preprocessed
    images ``calibration``) against ``backbone`` in eager fp32."""
    import os.path as osp
    import tempfile

    import torch

    from mmnextvit.deploy import engines, quantize
    errors = []
    with tempfile.TemporaryDirectory(prefix='int8-') as folder:
        path = osp.join(folder, 'backbone.onnx')
        engines.export_onnx(backbone, calibration[0], path, dynamic=True)
        int8_file = quantize.quantize_file(
            engine, path,
            osp.join(folder, 'int8' + ('.xml' if engine == 'openvino' else
                                       '.onnx')),
            [image.numpy() for image in calibration])
        run = engines.predictor(engine, 'int8', int8_file)
        for image in images:
            reference = backbone(image)
            got = run(image.numpy())
            errors.append([
                relative_errors(torch.from_numpy(g), r)
                for g, r in zip(got, reference)
            ])
    return errors


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from mmengine.runner import Runner, load_checkpoint

    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ToolError('--device cuda asked for, but torch sees no GPU; '
                        'use --device cpu')
    int8 = args.precision == 'int8'
    if int8:
        from mmnextvit.deploy import quantize
        if device.type != 'cpu':
            raise ToolError('--precision int8 runs the CPU engines; use '
                            '--device cpu')
        quantize.require(args.engine)
    else:
        dtype = autocast_dtype(args.precision, device.type)

    cfg = load_config(args.config, args.cfg_options)
    init_task(cfg)
    check_data_paths(cfg, ['test_dataloader'])
    check_data_files(cfg, ['test_dataloader'])
    if int8:
        calibration = quantize.training_images(cfg, args.calib_images)
    model = build_model(cfg)
    check_checkpoint(cfg, args.checkpoint, model=model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', logger=None)
    model = model.to(device).eval()
    backbone = model.backbone
    if args.deploy:
        if not hasattr(backbone, 'switch_to_deploy'):
            raise ToolError(f'--deploy: the backbone of {args.config} '
                            f'({type(backbone).__name__}) has no '
                            'switch_to_deploy(); drop --deploy')
        backbone.switch_to_deploy()

    def test_images(loader=cfg.test_dataloader):
        """The preprocessed test images, one at a time."""
        for batch in Runner.build_dataloader(loader):
            yield from model.data_preprocessor(batch, False)['inputs'].split(1)

    if int8:
        calib_cfg = quantize.training_split(cfg, calibration)
        with torch.no_grad():
            errors = int8_errors(
                backbone, list(test_images(calib_cfg.test_dataloader)),
                itertools.islice(test_images(), args.images), args.engine)
        print(f'{type(backbone).__name__}'
              f'{" (deployed)" if args.deploy else ""} features in int8 '
              f'({args.engine}, calibrated on {args.calib_images} training '
              f'images) against eager fp32, {len(errors)} test images of '
              f'{args.config}')
        print(f'{"stage":>5}  {"int8 max":>9}  {"int8 norm":>9}')
        for stage, error in enumerate(summarise(errors), 1):
            print(f'{stage:>5}  {error["max"]:>9.2e}  {error["norm"]:>9.2e}')
        print('max: largest difference / largest fp32 magnitude (worst '
              'image); norm: norm of the difference / norm of the fp32 '
              'feature (mean)')
        return
    cast = copy.deepcopy(backbone).to(dtype)

    autocast_errors, cast_errors = [], []
    with torch.no_grad():
        for image in itertools.islice(test_images(), args.images):
            reference = backbone(image)
            with torch.autocast(device.type, dtype=dtype):
                autocast = backbone(image)
            casted = cast(image.to(dtype))
            autocast_errors.append(
                [relative_errors(a, r) for a, r in zip(autocast, reference)])
            cast_errors.append(
                [relative_errors(c, r) for c, r in zip(casted, reference)])

    print(f'{type(backbone).__name__}{" (deployed)" if args.deploy else ""}'
          f' features in {args.precision} against fp32, '
          f'{len(cast_errors)} test images of {args.config}')
    print(f'{"stage":>5}  {"autocast max":>12}  {"autocast norm":>13}  '
          f'{"cast max":>9}  {"cast norm":>9}')
    rows = zip(summarise(autocast_errors), summarise(cast_errors))
    for stage, (auto, casted) in enumerate(rows, 1):
        print(f'{stage:>5}  {auto["max"]:>12.2e}  {auto["norm"]:>13.2e}  '
              f'{casted["max"]:>9.2e}  {casted["norm"]:>9.2e}')
    print('max: largest difference / largest fp32 magnitude (worst image); '
          'norm: norm of the difference / norm of the fp32 feature (mean)')


if __name__ == '__main__':
    main()
