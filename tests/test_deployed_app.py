"""The deployed model in an application (issue 22, item 3): the work dir of
tools/deployment/deploy.py carries mmdeploy's SDK files (deploy.json,
pipeline.json, detail.json) that describe the model as its config does;
demo/deployed_app.py (numpy, OpenCV, ONNX Runtime / OpenVINO; no torch, no
mmdeploy) gives the predictions of the tool's backend model; mmdeploy's own
runtime (mmdeploy_runtime) loads the work dir; docs/deploy_app.md names
only things that exist."""
import glob
import json
import math
import os
import os.path as osp
import re
import runpy
import subprocess
import sys

import numpy as np
import onnx
import pytest
from test_deploy import (DEPLOY, DET_CONFIG, ROOT, SEG_CONFIG,
                         seeded_checkpoint, small_deploy_config, write_image)

import mmdeploy  # noqa: F401
from mmnextvit.deploy import pipeline, quantize

DEMO = osp.join(ROOT, 'demo', 'deployed_app.py')
DOC = osp.join(ROOT, 'docs', 'deploy_app.md')


def load_demo() -> dict:
    return runpy.run_path(DEMO, run_name='deployed_app')


def tiny_onnx(img, work_dir, save_file, *args, **kwargs):
    """Stands in for torch2onnx where only the files around the model are
    under test: a Relu graph with the exported model's input name."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node('Relu', ['input'], ['output'])], 'relu', [
            onnx.helper.make_tensor_value_info(
                'input', onnx.TensorProto.FLOAT, ['b', 3, 'h', 'w'])
        ], [
            onnx.helper.make_tensor_value_info(
                'output', onnx.TensorProto.FLOAT, ['b', 3, 'h', 'w'])
        ])
    onnx.save(
        onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid('', 11)]),
        osp.join(work_dir, save_file))


# --------------------------------------------------------------------------
# The SDK files: what export() writes, for every ONNX Runtime / OpenVINO
# deploy config
# --------------------------------------------------------------------------
SDK_CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(DEPLOY, '*.py'))
    if '_tensorrt' not in p)


@pytest.mark.parametrize('name', SDK_CONFIGS)
def test_export_writes_sdk_files_that_describe_the_model(
        name, tmp_path, monkeypatch):
    """deploy.json names the backend's model files, pipeline.json holds the
    config's test pipeline and data preprocessor (the export's size for a
    static config) and the post-processing thresholds, detail.json the
    deploy config; the resolved model config stays as it was."""
    import mmdeploy.apis
    from mmengine.config import Config
    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', tiny_onnx)
    # An int8 config's model is quantized after the export (tested in
    # tests/test_quantize.py); its SDK files are the float config's.
    quantized = []
    monkeypatch.setattr(
        quantize, 'quantize_work_dir',
        lambda *args: quantized.append(args[4]) or args[4])
    detector = name.startswith('instance-seg')
    model_cfg = Config.fromfile(DET_CONFIG if detector else SEG_CONFIG)
    deploy_cfg = pipeline.load_deploy_config(osp.join(DEPLOY, name))
    backend = deploy_cfg.backend_config.type
    static = '_static' in name
    work = tmp_path / 'work'
    pipeline.export(model_cfg, deploy_cfg, 'ckpt.pth', 'unused.jpg',
                    str(work))
    assert set(pipeline.SDK_FILES) <= set(os.listdir(work))
    assert len(quantized) == ('-int8_' in name)

    def read(file):
        return json.loads((work / file).read_text())

    model = read('deploy.json')['models'][0]
    assert read('deploy.json')['task'] == ('Detector'
                                           if detector else 'Segmentor')
    assert (model['backend'], model['net'], model['weights']) == {
        'onnxruntime': ('onnxruntime', 'end2end.onnx', ''),
        'openvino': ('openvino', 'end2end.xml', 'end2end.bin'),
    }[backend]
    assert osp.isfile(work / model['net'])
    assert model['dynamic_shape'] is not static

    preprocess, net, post = read('pipeline.json')['pipeline']['tasks']
    assert net['input_map'] == {'img': 'input'}
    steps = {step['type']: step for step in preprocess['transforms']}
    resize = [s for s in model_cfg.test_pipeline if s.type == 'Resize'][0]
    if static:
        assert steps['Resize']['keep_ratio'] is False
        assert steps['Resize']['size'] == deploy_cfg.onnx_config.input_shape
    else:
        assert steps['Resize']['keep_ratio'] is resize.keep_ratio
        assert steps['Resize']['size'] == list(resize.scale)
    preprocessor = model_cfg.model.data_preprocessor
    assert steps['Normalize'] == dict(
        type='Normalize',
        mean=preprocessor.mean,
        std=preprocessor.std,
        to_rgb=preprocessor.bgr_to_rgb)
    if detector:
        assert steps['Pad']['size_divisor'] == preprocessor.pad_size_divisor
        assert post['component'] == 'ResizeInstanceMask'
        assert post['params']['mask_thr_binary'] == (
            model_cfg.model.test_cfg.rcnn.mask_thr_binary)
    else:
        assert 'Pad' not in steps
        assert post['component'] == 'ResizeMask'
        assert post['params']['with_argmax'] is True

    detail = read('detail.json')
    assert detail['onnx_config'] == json.loads(
        json.dumps(deploy_cfg.onnx_config.to_dict()))
    assert detail['backend_config']['type'] == backend
    assert detail['codebase']['pth'] == osp.abspath('ckpt.pth')
    # export2SDK adds its thresholds to the test_cfg it is given: a copy.
    assert 'score_thr' not in Config.fromfile(
        str(work / 'model_cfg.py')).model.get('test_cfg', {})


def test_failed_sdk_export_leaves_the_work_dir_as_it_was(
        tmp_path, monkeypatch):
    import mmdeploy.apis
    from mmdeploy.backend.sdk import export_info
    from mmengine.config import Config

    def half_written(deploy_cfg, model_cfg, work_dir, **kwargs):
        with open(osp.join(work_dir, 'deploy.json'), 'w') as f:
            f.write('{')
        raise KeyError('data_preprocessor')

    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', tiny_onnx)
    monkeypatch.setattr(export_info, 'export2SDK', half_written)
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'kept.txt').write_text('from before')
    with pytest.raises(pipeline.ToolError,
                       match="mmdeploy's export2SDK failed .*KeyError"):
        pipeline.export(
            Config.fromfile(SEG_CONFIG),
            pipeline.load_deploy_config(
                osp.join(DEPLOY, 'segmentation_onnxruntime_dynamic.py')),
            'ckpt.pth', 'unused.jpg', str(work))
    assert os.listdir(work) == ['kept.txt']
    assert sorted(os.listdir(tmp_path)) == ['work']


# --------------------------------------------------------------------------
# Real exports: the demo and mmdeploy_runtime against the tool's backend
# model, on the bundled images
# --------------------------------------------------------------------------
def _export(model_cfg, deploy_cfg, checkpoint, image, work):
    from mmengine.config import Config
    model_cfg = Config.fromfile(model_cfg)
    deploy_cfg = pipeline.load_deploy_config(deploy_cfg)
    files = pipeline.export(model_cfg, deploy_cfg, checkpoint, image, work)
    processor, _, backend_model = pipeline.build_models(
        model_cfg, deploy_cfg, checkpoint, files)
    return dict(deploy_cfg=deploy_cfg, work=work, processor=processor,
                backend_model=backend_model)


def tool_prediction(exported, image):
    """The prediction of tools/deployment/deploy.py's backend model."""
    from mmengine.registry import init_default_scope
    init_default_scope(exported['deploy_cfg'].codebase_config.type)
    return pipeline.predict(exported['processor'], exported['backend_model'],
                            image, exported['deploy_cfg'])


@pytest.fixture(scope='module')
def det_export(tmp_path_factory):
    """Seeded Mask R-CNN exported for ONNX Runtime (dynamic), and a
    bundled shapes image (256x256) with one of another size."""
    from mmnextvit.bundled_data import shapes
    root = tmp_path_factory.mktemp('app_det')
    shapes.generate(str(root / 'shapes'),
                    shapes.ShapesConfig(num_train=1, num_val=1),
                    progress=False)
    images = sorted(glob.glob(str(root / 'shapes' / 'val' / '*.png')))
    images.append(write_image(str(root / 'odd.png'), 150, 220, seed=3))
    checkpoint = seeded_checkpoint(DET_CONFIG, str(root / 'det.pth'))
    exported = _export(
        DET_CONFIG, osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'),
        checkpoint, images[0], str(root / 'work'))
    return dict(exported, images=images)


@pytest.fixture(scope='module')
def seg_exports(tmp_path_factory):
    """Seeded Semantic FPN exported for OpenVINO (dynamic) and ONNX Runtime
    (static 64x64), and bundled seg_shapes images (64x64) with one of
    another size (resized on the way in and back)."""
    from mmnextvit.bundled_data import seg_shapes
    root = tmp_path_factory.mktemp('app_seg')
    seg_shapes.generate(str(root / 'seg_shapes'),
                        seg_shapes.SegShapesConfig(num_train=1, num_val=2),
                        progress=False)
    images = sorted(
        glob.glob(str(root / 'seg_shapes' / 'images' / 'validation' /
                      '*.jpg')))
    images.append(write_image(str(root / 'odd.jpg'), 100, 150, seed=2))
    checkpoint = seeded_checkpoint(SEG_CONFIG, str(root / 'seg.pth'))
    static = small_deploy_config(
        root, 'segmentation_onnxruntime_static-512x512.py',
        input_shape=[64, 64])
    return dict(
        images=images,
        openvino=_export(
            SEG_CONFIG, osp.join(DEPLOY, 'segmentation_openvino_dynamic.py'),
            checkpoint, images[0], str(root / 'openvino')),
        onnxruntime=_export(SEG_CONFIG, static, checkpoint, images[0],
                            str(root / 'onnxruntime')))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_demo_detections_equal_the_tools(det_export):
    """Same boxes (within a pixel), labels, scores and masks (IoU > 0.95)
    as the tool's ONNX Runtime model, at the image's size."""
    import cv2
    model = load_demo()['DeployedModel'](det_export['work'])
    for image in det_export['images']:
        expected = tool_prediction(det_export, image).pred_instances
        got = model(cv2.imread(image))
        assert np.array_equal(got['labels'], expected.labels.numpy()), image
        assert np.abs(got['boxes'] - expected.bboxes.numpy()).max() < 1, (
            image)
        assert np.abs(got['scores'] - expected.scores.numpy()).max() < 1e-4
        assert got['masks'].shape == tuple(expected.masks.shape)
        assert min(
            mask_iou(a, b)
            for a, b in zip(got['masks'], expected.masks.numpy())) > 0.95


@pytest.mark.parametrize('backend', ['openvino', 'onnxruntime'])
def test_demo_label_maps_equal_the_tools(backend, seg_exports):
    """The label map at the image's size, as the tool's OpenVINO (dynamic)
    and ONNX Runtime (static 64x64) models give it."""
    import cv2
    exported = seg_exports[backend]
    model = load_demo()['DeployedModel'](exported['work'])
    for image in seg_exports['images']:
        expected = tool_prediction(exported, image).pred_sem_seg.data[0]
        got = model(cv2.imread(image))['label_map']
        assert got.shape == tuple(expected.shape) == cv2.imread(
            image).shape[:2]
        assert (got != expected.numpy()).mean() < 0.001, image


def run_sdk(code: str) -> dict:
    """``code`` in a fresh interpreter with mmdeploy_runtime (it brings its
    own ONNX Runtime library, kept out of this process); ``code`` sets
    ``result``, a dict of arrays."""
    out = subprocess.run(
        [sys.executable, '-c',
         'import cv2, json, numpy as np\n'
         'from mmdeploy_runtime import Detector, Segmentor\n' + code +
         '\nprint(json.dumps({k: np.asarray(v).tolist() '
         'for k, v in result.items()}))'],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {k: np.array(v) for k, v in json.loads(
        out.stdout.strip().splitlines()[-1]).items()}


def test_mmdeploy_runtime_detector_loads_the_work_dir(det_export):
    """mmdeploy's own runtime reads the work dir (deploy.json,
    pipeline.json) and answers in its layout: N x 5 boxes with scores, N
    labels, a mask per box cut to it (from floor(x1) - 1, floor(y1) - 1)
    inside the image. Its predictions are NOT compared with the tool's: on
    these seeded weights it found the tool's boxes (within a pixel) but
    empty masks on one generated image and no detections on another, where
    the tool found 100 (not investigated; docs/deploy_app.md says so)."""
    image = det_export['images'][-1]
    got = run_sdk(
        f'boxes, labels, masks = Detector({det_export["work"]!r}, "cpu", 0)'
        f'(cv2.imread({image!r}))\n'
        'result = dict(boxes=np.reshape(boxes, (-1, 5)), labels=labels)\n'
        'result.update({f"m{i}": m for i, m in enumerate(masks)})')
    height, width = 150, 220
    assert got['boxes'].shape == (len(got['labels']), 5)
    assert len(got) == 2 + len(got['labels'])
    for i, (x1, y1, x2, y2, _) in enumerate(got['boxes']):
        mask = got[f'm{i}']
        x0, y0 = max(math.floor(x1) - 1, 0), max(math.floor(y1) - 1, 0)
        assert y0 + mask.shape[0] <= height and x0 + mask.shape[1] <= width
        assert mask.shape[0] >= y2 - y0 and mask.shape[1] >= x2 - x0


def test_mmdeploy_runtime_segmentor_loads_the_work_dir(seg_exports):
    """mmdeploy_runtime's Segmentor reads the ONNX Runtime work dir and
    returns a label map at the image's size. Its labels are NOT the tool's:
    with mmdeploy_runtime 1.3.1 from PyPI the map is one label everywhere,
    even for a one-node ArgMax graph (docs/deploy_app.md); use
    demo/deployed_app.py for segmentors."""
    image = seg_exports['images'][-1]
    got = run_sdk(
        f'result = dict(labels=Segmentor('
        f'{seg_exports["onnxruntime"]["work"]!r}, "cpu", 0)'
        f'(cv2.imread({image!r})))')['labels']
    assert got.shape == (100, 150)
    assert set(np.unique(got)) <= {0, 1, 2, 3}


# --------------------------------------------------------------------------
# The demo as an application runs it: no torch, no mmdeploy; bad input
# --------------------------------------------------------------------------
BLOCKED = ('torch', 'mmdeploy', 'mmengine', 'mmcv', 'mmdet', 'mmseg',
           'mmnextvit')


def test_demo_runs_without_torch_and_mmdeploy(det_export, seg_exports,
                                              tmp_path):
    """The demo's command line in an interpreter where importing torch,
    mmdeploy, the OpenMMLab packages or this repository fails: it prints the
    detections / the label counts and draws them."""
    blocker = (
        'import runpy, sys\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        f'        if name.split(".")[0] in {BLOCKED!r}:\n'
        '            raise ImportError(f"{name} is blocked")\n'
        'sys.meta_path.insert(0, Blocker())\n'
        'sys.argv = sys.argv[1:]\n'
        'runpy.run_path(sys.argv[0], run_name="__main__")\n')
    env = dict(os.environ, PYTHONPATH='')
    for work, image, expected in (
            (det_export['work'], det_export['images'][0], r'label \d score'),
            (seg_exports['openvino']['work'], seg_exports['images'][0],
             r'pixels per label: 0: \d+')):
        out_file = str(tmp_path / f'{osp.basename(work)}.png')
        out = subprocess.run(
            [sys.executable, '-c', blocker, DEMO, work, image, '--out',
             out_file, '--score-thr', '0'],
            capture_output=True, text=True, env=env, cwd=str(tmp_path),
            timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert re.search(expected, out.stdout), out.stdout
        assert osp.getsize(out_file) > 0


def test_demo_bad_input_ends_in_one_line(det_export, tmp_path, capsys):
    main = load_demo()['main']
    work, image = det_export['work'], det_export['images'][0]
    partial = tmp_path / 'partial'
    partial.mkdir()
    (partial / 'deploy.json').write_text(
        (open(osp.join(work, 'deploy.json')).read()))
    no_model = tmp_path / 'no_model'
    no_model.mkdir()
    for name in ('deploy.json', 'pipeline.json'):
        (no_model / name).write_text(open(osp.join(work, name)).read())
    cases = [
        ([str(tmp_path / 'missing'), image],
         [str(tmp_path / 'missing'), 'does not exist', '--work-dir']),
        ([str(partial), image],
         [str(partial / 'pipeline.json'), 'tools/deployment/deploy.py']),
        ([str(no_model), image],
         [str(no_model / 'end2end.onnx'), 'export the work dir again']),
        ([work, str(tmp_path / 'none.jpg')],
         [str(tmp_path / 'none.jpg'), 'pass an image file']),
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith('error: '), err
        for word in words:
            assert word in err, (word, err)


# --------------------------------------------------------------------------
# docs/deploy_app.md
# --------------------------------------------------------------------------
def test_deploy_app_doc_names_what_exists():
    """Every repository path, command-line flag of the tools it runs,
    ONNX output name and SDK file the page names exists; its Python
    snippets compile and import names that exist."""
    text = open(DOC).read()
    paths = set(re.findall(r'\b((?:configs|tools|demo|docs|mmnextvit)/'
                           r'[\w./*-]+\w)', text))
    assert {'demo/deployed_app.py', 'tools/deployment/deploy.py'} <= paths
    for path in paths:
        assert glob.glob(osp.join(ROOT, path)), path
    commands = text.replace('\\\n', ' ')
    for command in re.findall(r'^ *python (\S+\.py)(.*)$', commands, re.M):
        script, args = command
        source = open(osp.join(ROOT, script)).read()
        for flag in re.findall(r'(--[\w-]+)', args):
            assert f"'{flag}'" in source, (script, flag)
    for name in re.findall(r'`(\w+\.json)`', text):
        assert name in pipeline.SDK_FILES, name
    for name in ('dets', 'labels', 'masks'):
        assert f'`{name}`' in text
    snippets = re.findall(r'```python\n(.*?)```', text, re.S)
    assert snippets
    imports = []
    for snippet in snippets:
        compile(snippet, DOC, 'exec')
        imports += [
            line for line in snippet.splitlines()
            if re.match(r'(from \S+ )?import ', line)
        ]
    # The page has the application copy demo/deployed_app.py beside it.
    out = subprocess.run([sys.executable, '-c', '\n'.join(imports)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ,
                                  PYTHONPATH=osp.join(ROOT, 'demo')))
    assert out.returncode == 0, out.stderr[-2000:]
