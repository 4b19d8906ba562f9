"""mmdeploy's own tools with this package's deploy configs: a user who
follows mmdeploy's documentation runs its ``tools/deploy.py`` and
``tools/test.py`` (tag v1.3.1), which run the export in a child process
started with ``spawn`` and never import this package themselves. Driven
here by tests/mmdeploy_tools.py, which makes the tools' calls step for step
in a fresh interpreter: the export, conversion, drawing and evaluation
succeed, the exported graph gives the outputs of the one that
``tools/deployment/deploy.py`` exports, and the metrics are the same."""
import glob
import json
import os.path as osp
import re
import runpy
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from test_deploy import DEPLOY, ROOT
from trained_models import trained_seg_config

SHAPES_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                         'nextvit_s_shapes-cpu.py')

DRIVER = osp.join(ROOT, 'tests', 'mmdeploy_tools.py')


def mmdeploy_tool(*args, cwd) -> None:
    proc = subprocess.run([sys.executable, DRIVER, *map(str, args)],
                          cwd=cwd,
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def our_tool(*args) -> None:
    """tools/deployment/deploy.py in this process (it prints to stdout)."""
    main = runpy.run_path(
        osp.join(ROOT, 'tools', 'deployment', 'deploy.py'),
        run_name='mmnextvit_tool')['main']
    main([str(a) for a in args])


def printed_metrics(out: str, names) -> dict:
    found = {}
    for name in names:
        match = re.search(rf'^{re.escape(name)}: (\S+)$', out, re.M)
        assert match, (name, out[-2000:])
        found[name] = float(match.group(1))
    return found


def same_outputs(onnx_a: str, onnx_b: str, feed: np.ndarray) -> None:
    outputs = []
    for path in (onnx_a, onnx_b):
        session = ort.InferenceSession(path,
                                       providers=['CPUExecutionProvider'])
        outputs.append(
            session.run(None, {session.get_inputs()[0].name: feed}))
    assert len(outputs[0]) == len(outputs[1])
    for a, b in zip(*outputs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# Trained models (tests/trained_models.py) on a few held-out images, so
# that the metrics compared are far from zero: the least each must reach
# (the main job's 150-iteration model: bbox / segm AP 0.45 / 0.56 on all 50
# held-out images, tests/test_main_job/test_learns.py; the Semantic FPN:
# mIoU 76.9, tests/test_seg_training.py).
MIN_METRICS = {'coco/bbox_mAP': 0.2, 'coco/segm_mAP': 0.2, 'mIoU': 50.}
TEST_IMAGES = 8


def trained_config(kind, shapes_run, trained_segmentor, tmp_path):
    """``(config, checkpoint, image)``: a trained model's config pointed at
    its data, testing on TEST_IMAGES held-out images."""
    config = tmp_path / f'{kind}.py'
    if kind == 'mask_rcnn':
        from mmnextvit.bundled_data import shapes
        root = shapes_run['data_root']
        # The first TEST_IMAGES held-out images in an annotation file of
        # their own: COCO's evaluation counts every image of the file it
        # reads, predicted or not (with the 50 images' file and 8 of them
        # predicted, bbox AP read 0.073).
        with open(shapes.annotation_file(root, 'val')) as f:
            coco = json.load(f)
        coco['images'] = coco['images'][:TEST_IMAGES]
        kept = {image['id'] for image in coco['images']}
        coco['annotations'] = [
            a for a in coco['annotations'] if a['image_id'] in kept
        ]
        ann = str(tmp_path / 'val_subset.json')
        with open(ann, 'w') as f:
            json.dump(coco, f)
        config.write_text(
            f'_base_ = {SHAPES_CONFIG!r}\n'
            f'train_dataloader = dict(dataset=dict(data_root={root!r}))\n'
            f'val_dataloader = dict(dataset=dict(data_root={root!r}))\n'
            f'test_dataloader = dict(dataset=dict(data_root={root!r}, '
            f'ann_file={ann!r}))\n'
            f'val_evaluator = dict(ann_file={ann!r})\n'
            f'test_evaluator = dict(ann_file={ann!r})\n')
        image = sorted(glob.glob(osp.join(root, 'val', '*.png')))[0]
        return str(config), shapes_run['checkpoint'], image
    config = trained_seg_config(trained_segmentor, tmp_path,
                                indices=TEST_IMAGES)
    return (config, trained_segmentor['checkpoint'],
            trained_segmentor['images'][0])


@pytest.mark.parametrize('kind', ['mask_rcnn', 'semfpn'])
def test_mmdeploy_tools_export_run_and_evaluate(kind, shapes_run,
                                                trained_segmentor, tmp_path,
                                                capsys):
    """On trained models: mmdeploy's tools export, convert, draw (the
    backend model and the PyTorch one) and evaluate, and the metrics are
    the ones tools/deployment/deploy.py gives for its own export."""
    config, checkpoint, image = trained_config(kind, shapes_run,
                                               trained_segmentor, tmp_path)
    if kind == 'mask_rcnn':
        deploy_cfg = osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py')
        model_file = 'end2end.onnx'
    else:
        # OpenVINO: the conversion runs in the tool's own process.
        deploy_cfg = osp.join(DEPLOY, 'segmentation_openvino_dynamic.py')
        model_file = 'end2end.xml'

    theirs = tmp_path / 'mmdeploy_work'
    mmdeploy_tool('deploy', deploy_cfg, config, checkpoint, image,
                  '--work-dir', theirs, cwd=tmp_path)
    backend = 'onnxruntime' if kind == 'mask_rcnn' else 'openvino'
    # The tool asks for output_<name>.jpg; mmseg's visualiser writes
    # output_<name>_0.png for it.
    for name in (backend, 'pytorch'):
        drawn = glob.glob(str(theirs / f'output_{name}*'))
        assert len(drawn) == 1 and osp.getsize(drawn[0]) > 0, (name, drawn)
    mmdeploy_tool('test', deploy_cfg, config, '--model', theirs / model_file,
                  '--work-dir', theirs / 'test', '--json',
                  tmp_path / 'metrics.json', cwd=tmp_path)
    with open(tmp_path / 'metrics.json') as f:
        their_metrics = json.load(f)

    ours = tmp_path / 'our_work'
    our_tool(config, checkpoint, '--deploy-cfg', deploy_cfg, '--work-dir',
             ours, '--img', image, '--test')
    our_metrics = printed_metrics(capsys.readouterr().out, their_metrics)
    assert our_metrics == pytest.approx(their_metrics, abs=1e-4)
    names = {'mask_rcnn': ('coco/bbox_mAP', 'coco/segm_mAP'),
             'semfpn': ('mIoU', )}[kind]
    for name in names:
        assert their_metrics[name] >= MIN_METRICS[name], their_metrics

    import cv2
    rng = np.random.default_rng(0)
    feed = rng.standard_normal((1, 3, 96, 96)).astype(np.float32)
    if kind == 'semfpn':
        feed = cv2.resize(feed[0].transpose(1, 2, 0),
                          (64, 64)).transpose(2, 0, 1)[None].copy()
    same_outputs(str(theirs / 'end2end.onnx'), str(ours / 'end2end.onnx'),
                 feed)
