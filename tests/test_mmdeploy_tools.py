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

from det_data import make_coco_instances, write_det_config
from test_deploy import (DEPLOY, ROOT, SEG_CONFIG, seeded_checkpoint,
                         write_image)

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


@pytest.mark.parametrize('kind', ['mask_rcnn', 'semfpn'])
def test_mmdeploy_tools_export_run_and_evaluate(kind, tmp_path, capsys):
    if kind == 'mask_rcnn':
        make_coco_instances(str(tmp_path / 'data'), {
            'train': 1,
            'val': 3
        })
        config = write_det_config(str(tmp_path / 'det.py'),
                                  str(tmp_path / 'data'))
        deploy_cfg = osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py')
        image = str(tmp_path / 'data' / 'val' / 'val_000.png')
        model_file = 'end2end.onnx'
    else:
        from mmnextvit.bundled_data import seg_shapes
        data = str(tmp_path / 'seg_shapes')
        seg_shapes.generate(
            data, seg_shapes.SegShapesConfig(num_train=1, num_val=4),
            progress=False)
        config = str(tmp_path / 'seg.py')
        with open(config, 'w') as f:
            f.write(f'_base_ = {SEG_CONFIG!r}\n'
                    f'test_dataloader = dict(dataset=dict('
                    f'data_root={data!r}))\n')
        # OpenVINO: the conversion runs in the tool's own process.
        deploy_cfg = osp.join(DEPLOY, 'segmentation_openvino_dynamic.py')
        image = write_image(str(tmp_path / 'img.jpg'), 64, 64)
        model_file = 'end2end.xml'
    checkpoint = seeded_checkpoint(config, str(tmp_path / 'model.pth'))

    theirs = tmp_path / 'mmdeploy_work'
    mmdeploy_tool('deploy', deploy_cfg, config, checkpoint, image,
                  '--work-dir', theirs, cwd=tmp_path)
    backend = 'onnxruntime' if kind == 'mask_rcnn' else 'openvino'
    drawn = glob.glob(str(theirs / f'output_{backend}*'))
    assert len(drawn) == 1 and osp.getsize(drawn[0]) > 0, drawn
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
    assert set(names) <= set(their_metrics)

    import cv2
    rng = np.random.default_rng(0)
    feed = rng.standard_normal((1, 3, 96, 96)).astype(np.float32)
    if kind == 'semfpn':
        feed = cv2.resize(feed[0].transpose(1, 2, 0),
                          (64, 64)).transpose(2, 0, 1)[None].copy()
    same_outputs(str(theirs / 'end2end.onnx'), str(ours / 'end2end.onnx'),
                 feed)
