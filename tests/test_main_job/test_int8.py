# Copyright (c) mmnextvit contributors. All rights reserved.
"""The main job's trained Mask R-CNN in int8 (OpenVINO, NNCF): exported
and quantized by tools/deployment/deploy.py with the int8 deploy config,
calibrated on training images, and evaluated beside the float model of
the same export on the same held-out images (the session's run in
conftest.py); the float model keeps PyTorch's AP."""
import os
import os.path as osp
import re

from mmnextvit.bundled_data import shapes

from main_job_run import CONFIG, REPO, run_tool

DEPLOY_CFG = osp.join(REPO, 'configs', 'deploy',
                      'instance-seg_openvino-int8_dynamic.py')
# COCO box and mask AP, int8 against float: the bound.
MAX_AP_DROP = 0.01
# The float export against PyTorch: mmdeploy's NMS and mask pasting keep
# or drop a low-scoring detection now and then (docs/deploy.md: 0.002).
MAX_EXPORT_AP_DIFF = 0.005


def test_int8_detector_keeps_the_float_model_s_ap(shapes_run, tmp_path):
    root = shapes_run['data_root']
    config = tmp_path / 'shapes.py'
    ann = shapes.annotation_file(root, 'val')
    config.write_text(
        f'_base_ = {CONFIG!r}\n' + ''.join(
            f'{loader} = dict(dataset=dict(data_root={root + "/"!r}))\n'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')) +
        f'test_evaluator = dict(ann_file={ann!r})\n')
    work = tmp_path / 'int8'
    proc = run_tool([
        'tools/deployment/deploy.py', config, shapes_run['checkpoint'],
        '--deploy-cfg', DEPLOY_CFG, '--work-dir', work, '--calib-images',
        '16', '--test', '--time-runs', '3'
    ])
    # Exit code 0, not only the results: with the test loader's workers
    # kept alive to the end, OpenVINO's Mask R-CNN runs of --time-runs
    # made the tool die at exit (139) after printing everything.
    assert proc.returncode == 0, proc.output[-4000:]
    assert re.search(r'^int8 vs float speed \(openvino, .* median of 3 '
                     r'runs\): \S+ vs \S+ ms', proc.stdout, re.M), proc.stdout
    assert 'quantized on 16 training images' in proc.stdout
    # Every file without the suffix is the int8 model; the float ones
    # (the IR and the ONNX file it was converted from) carry _fp32.
    files = set(os.listdir(work))
    assert {'end2end.xml', 'end2end.bin', 'end2end_fp32.xml',
            'end2end_fp32.bin', 'end2end_fp32.onnx'} <= files, files
    assert 'end2end.onnx' not in files, files
    pairs = dict(
        (name, (float(int8), float(fp32))) for name, int8, fp32 in
        re.findall(r'^int8 vs float (\S+): (\S+) vs (\S+)', proc.stdout,
                   re.M))
    assert set(pairs) == {'coco/bbox_mAP', 'coco/segm_mAP'}, proc.stdout
    # PyTorch's AP on the same held-out images, from the run's last
    # validation (the checkpoint's iteration).
    (pytorch, ) = [s for s in shapes_run['scalars'] if 'coco/bbox_mAP' in s]
    for name, (int8, fp32) in pairs.items():
        # A model that learned something (test_learns.py), kept by int8.
        assert fp32 > 0.3, (name, fp32)
        assert fp32 - int8 <= MAX_AP_DROP, (name, int8, fp32)
        # The float export of a trained model (attention far from uniform,
        # where a wrongly scaled softmax shows) keeps PyTorch's AP.
        assert abs(fp32 - pytorch[name]) <= MAX_EXPORT_AP_DIFF, (
            name, fp32, pytorch[name])
