"""The deployed model in an application (issue 22, item 3): the work dir of
tools/deployment/deploy.py carries mmdeploy's SDK files (deploy.json,
pipeline.json, detail.json) that describe the model as its config does;
demo/deployed_app.py (numpy, OpenCV, ONNX Runtime / OpenVINO; no torch, no
mmdeploy) gives the predictions of the tool's backend model; mmdeploy's own
runtime (mmdeploy_runtime) loads the work dir; docs/deploy_app.md names
only things that exist."""
import glob
import json
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
                         small_deploy_config, write_image)
from trained_models import images_with_three_classes

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
    if backend == 'onnxruntime':
        # The stand-in is written at onnx's own IR version, which
        # mmdeploy_runtime's ONNX Runtime 1.15.1 does not load.
        assert onnx.load(str(work / model['net'])).ir_version == 9

    tasks = read('pipeline.json')['pipeline']['tasks']
    if detector:
        preprocess, net, sync, post = tasks
        # mmdeploy_runtime's Mask R-CNN post-processing reads the network's
        # outputs only after a step that waits for their copy (see
        # test_mmdeploy_runtime_detector_is_deterministic).
        assert sync == dict(type='Task', module='Transform',
                            name=pipeline.SDK_SYNC_STEP,
                            input=net['output'],
                            output=['infer_output_copied'], transforms=[])
        assert post['input'] == ['prep_output', 'infer_output_copied']
    else:
        preprocess, net, post = tasks
        assert post['input'] == ['prep_output'] + net['output']
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
        threshold = model_cfg.model.test_cfg.rcnn.mask_thr_binary
        assert post['params']['rcnn']['mask_thr_binary'] == threshold
        # mmdeploy_runtime keeps probabilities above its threshold, mmdet
        # those at or above: the float32 just below keeps the same ones.
        below = np.float32(post['params']['mask_thr_binary'])
        assert below < threshold == np.nextafter(below, np.float32(1))
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
def det_export(shapes_run, tmp_path_factory):
    """The main job's trained Mask R-CNN exported for ONNX Runtime
    (dynamic), three of its held-out images (256x256, resized to 128x128)
    and an image of another size."""
    root = tmp_path_factory.mktemp('app_det')
    images = sorted(
        glob.glob(osp.join(shapes_run['data_root'], 'val', '*.png')))[:3]
    images.append(write_image(str(root / 'odd.png'), 150, 220, seed=3))
    exported = _export(
        DET_CONFIG, osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'),
        shapes_run['checkpoint'], images[0], str(root / 'work'))
    return dict(exported, images=images)


@pytest.fixture(scope='module')
def seg_exports(trained_segmentor, tmp_path_factory):
    """The session's trained Semantic FPN exported for OpenVINO (dynamic)
    and ONNX Runtime (dynamic, and static 64x64), three held-out seg_shapes
    images (64x64) with three classes or more and one of another size
    (resized on the way in and back)."""
    root = tmp_path_factory.mktemp('app_seg')
    images = images_with_three_classes(trained_segmentor['data'])
    images.append(write_image(str(root / 'odd.jpg'), 100, 150, seed=2))
    checkpoint = trained_segmentor['checkpoint']
    static = small_deploy_config(
        root, 'segmentation_onnxruntime_static-512x512.py',
        input_shape=[64, 64])
    return dict(
        images=images,
        openvino=_export(
            SEG_CONFIG, osp.join(DEPLOY, 'segmentation_openvino_dynamic.py'),
            checkpoint, images[0], str(root / 'openvino')),
        onnxruntime=_export(
            SEG_CONFIG, osp.join(DEPLOY,
                                 'segmentation_onnxruntime_dynamic.py'),
            checkpoint, images[0], str(root / 'onnxruntime')),
        onnxruntime_static=_export(SEG_CONFIG, static, checkpoint, images[0],
                                   str(root / 'onnxruntime_static')))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_demo_detections_equal_the_tools(det_export):
    """Same boxes (within a pixel), labels, scores and masks (IoU > 0.95)
    as the tool's ONNX Runtime model, at the image's size; the trained
    model finds something on every bundled image."""
    import cv2
    model = load_demo()['DeployedModel'](det_export['work'])
    for image in det_export['images']:
        expected = tool_prediction(det_export, image).pred_instances
        got = model(cv2.imread(image))
        if image in det_export['images'][:3]:
            shown = expected.scores.numpy() >= 0.3
            assert shown.sum() >= 1, image
            assert all(m.any() for m in got['masks'][shown]), image
        assert np.array_equal(got['labels'], expected.labels.numpy()), image
        assert np.abs(got['boxes'] - expected.bboxes.numpy()).max() < 1, (
            image)
        assert np.abs(got['scores'] - expected.scores.numpy()).max() < 1e-4
        assert got['masks'].shape == tuple(expected.masks.shape)
        assert min(
            mask_iou(a, b)
            for a, b in zip(got['masks'], expected.masks.numpy())) > 0.95


@pytest.mark.parametrize('backend',
                         ['openvino', 'onnxruntime', 'onnxruntime_static'])
def test_demo_label_maps_equal_the_tools(backend, seg_exports):
    """The label map at the image's size, as the tool's OpenVINO (dynamic)
    and ONNX Runtime (dynamic, static 64x64) models give it; the trained
    model's maps hold at least three labels on each bundled image."""
    import cv2
    exported = seg_exports[backend]
    model = load_demo()['DeployedModel'](exported['work'])
    for image in seg_exports['images']:
        expected = tool_prediction(exported, image).pred_sem_seg.data[0]
        got = model(cv2.imread(image))['label_map']
        if image in seg_exports['images'][:3]:
            assert len(np.unique(expected.numpy())) >= 3, image
        assert got.shape == tuple(expected.shape) == cv2.imread(
            image).shape[:2]
        assert (got != expected.numpy()).mean() < 0.001, image


# --------------------------------------------------------------------------
# mmdeploy's own runtime (mmdeploy_runtime 1.3.1, its ONNX Runtime 1.15.1)
# on the work dirs, in a fresh interpreter each (the library it brings is
# kept out of this process; a file it cannot load kills the process)
# --------------------------------------------------------------------------
NUMPY_2 = int(np.__version__.split('.')[0]) >= 2
SDK_PRELUDE = """
import sys
import cv2
import numpy as np
from mmdeploy_runtime import Detector, Segmentor


def readable(array):
    # Under numpy 2 the runtime's arrays come with zero strides (its
    # binding reads numpy 1's dtype layout); the data behind the label maps
    # and masks is whole (docs/deploy_app.md).
    array = np.asarray(array)
    return np.lib.stride_tricks.as_strided(
        array, strides=np.empty(array.shape, array.dtype).strides).copy()
"""
# Each image through the SDK's Detector this many times: every answer must
# be the same (mmdeploy#2889's race gave another one in about 1 call in 10
# on this machine).
DETECTOR_CALLS = 15
SDK_DETECT = SDK_PRELUDE + """
work, out, calls, *images = sys.argv[1:]
detector = Detector(work, 'cpu', 0)
found = {}
for n, path in enumerate(images):
    image = cv2.imread(path)
    answers = set()
    for _ in range(int(calls)):
        boxes, labels, masks = detector(image)
        pasted = np.zeros((len(masks), ) + image.shape[:2], bool)
        for i, (box, mask) in enumerate(zip(boxes, masks)):
            # Each mask is cut to its box, from floor(x1) - 1, floor(y1) - 1.
            x0 = max(int(np.floor(box[0])) - 1, 0)
            y0 = max(int(np.floor(box[1])) - 1, 0)
            mask = readable(mask)
            pasted[i, y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        labels = np.asarray(labels)
        answers.add((boxes.tobytes(), labels.tobytes(), pasted.tobytes()))
    found.update({f'{n}_boxes': boxes, f'{n}_labels': labels,
                  f'{n}_labels_strides': labels.strides,
                  f'{n}_masks': pasted, f'{n}_answers': len(answers)})
np.savez(out, **found)
"""
SDK_SEGMENT = SDK_PRELUDE + """
work, out, *images = sys.argv[1:]
segmentor = Segmentor(work, 'cpu', 0)
found = {}
for n, path in enumerate(images):
    labels = segmentor(cv2.imread(path))
    found.update({f'{n}_strides': labels.strides,
                  f'{n}_labels': readable(labels)})
np.savez(out, **found)
"""


def run_sdk(code: str, *args) -> dict:
    """``code`` (one of the SDK_* scripts) with ``args`` in a fresh
    interpreter; the arrays it saves."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        out = osp.join(folder, 'out.npz')
        proc = subprocess.run(
            [sys.executable, '-c', code, *map(str, args[:1]), out,
             *map(str, args[1:])],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
        with np.load(out) as saved:
            return {k: saved[k] for k in saved.files}


def _constant_detections():
    dets = np.float32([[[10, 12, 60, 50, 0.9], [70, 20, 120, 90, 0.8],
                        [5, 60, 40, 95, 0.7]]])
    masks = np.zeros((1, 3, 28, 28), np.float32)
    masks[:, :, 4:24, 4:24] = 0.9
    return dict(dets=dets, labels=np.int64([[0, 2, 1]]), masks=masks)


CONSTANT_DETECTIONS = _constant_detections()


def constant_detector_onnx(img, work_dir, save_file, *args, **kwargs):
    """Stands in for torch2onnx: a graph with the exported Mask R-CNN's
    inputs and outputs whose three detections do not depend on the image
    (mmdeploy#2889's reproduction needs no model)."""
    from onnx import TensorProto, helper, numpy_helper
    outputs = dict(CONSTANT_DETECTIONS)
    nodes = [
        helper.make_node('ReduceMin', ['input'], ['low'], keepdims=0),
        helper.make_node('Mul', ['low', 'zero'], ['nothing'])
    ] + [
        helper.make_node('Add', [f'{name}_value', 'nothing'], [name])
        for name in ('dets', 'masks')
    ] + [helper.make_node('Identity', ['labels_value'], ['labels'])]
    inits = [numpy_helper.from_array(np.float32(0), 'zero')] + [
        numpy_helper.from_array(value, f'{name}_value')
        for name, value in outputs.items()
    ]
    types = dict(dets=TensorProto.FLOAT, labels=TensorProto.INT64,
                 masks=TensorProto.FLOAT)
    graph = helper.make_graph(nodes, 'constant', [
        helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                      ['b', 3, 'h', 'w'])
    ], [
        helper.make_tensor_value_info(name, types[name], value.shape)
        for name, value in outputs.items()
    ], inits)
    onnx.save(
        helper.make_model(graph,
                          opset_imports=[helper.make_opsetid('', 11)]),
        osp.join(work_dir, save_file))


def test_mmdeploy_runtime_detector_is_deterministic(tmp_path, monkeypatch):
    """The SDK's Detector on a work dir the tool writes, 300 calls on one
    image: every call gives the three detections the graph outputs, with
    masks. Without the pipeline.json step that waits for the network's
    outputs (pipeline._fit_sdk_pipeline), mmdeploy 1.3.1's
    ResizeInstanceMask reads them while they are being copied: here 26 of
    300 calls gave no detections and 1 a garbage one (open-mmlab/mmdeploy
    issue 2889)."""
    import cv2
    import mmdeploy.apis
    from mmengine.config import Config
    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', constant_detector_onnx)
    work = tmp_path / 'work'
    pipeline.export(
        Config.fromfile(DET_CONFIG),
        pipeline.load_deploy_config(
            osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py')),
        'ckpt.pth', 'unused.jpg', str(work))
    image = str(tmp_path / 'blank.png')
    # 128x128: the config's scale, so the graph's boxes are the image's.
    cv2.imwrite(image, np.zeros((128, 128, 3), np.uint8))
    got = run_sdk(SDK_DETECT, work, 300, image)
    assert got['0_answers'] == 1
    expected = CONSTANT_DETECTIONS['dets'][0]
    assert np.array_equal(got['0_boxes'], expected)
    if NUMPY_2:
        # Written through zero strides: only the last label survives.
        assert tuple(got['0_labels_strides']) == (0, )
    else:
        assert got['0_labels'].tolist() == [0, 2, 1]
    for box, mask in zip(expected, got['0_masks']):
        x1, y1, x2, y2 = box[:4].astype(int)
        assert mask.any() and not mask[:y1].any() and not mask[y2:].any()
        assert not mask[:, :x1].any() and not mask[:, x2:].any()


def test_mmdeploy_runtime_detector_gives_the_tools_predictions(det_export):
    """The trained Mask R-CNN in the SDK's Detector, each image 15 times:
    the same answer every time, with every detection of the tool's
    backend model (box within 0.01 px once clipped as the SDK clips, score
    within 1e-4, mask IoU over 0.9 where the score is 0.3 or more on the
    bundled images; labels too under numpy 1, see above), and nothing
    else."""
    images = det_export['images']
    got = run_sdk(SDK_DETECT, det_export['work'], DETECTOR_CALLS, *images)
    for n, image in enumerate(images):
        expected = tool_prediction(det_export, image).pred_instances
        boxes, masks = got[f'{n}_boxes'], got[f'{n}_masks']
        assert got[f'{n}_answers'] == 1, image
        assert len(boxes) == len(expected), (image, len(boxes))
        if n < 3:
            assert (expected.scores >= 0.3).sum() >= 1, image
        if NUMPY_2 and len(boxes) > 1:
            assert tuple(got[f'{n}_labels_strides']) == (0, )
        elif len(boxes):
            assert np.array_equal(got[f'{n}_labels'],
                                  expected.labels.numpy()), image
        # The SDK clips boxes to the last pixel (width - 1, height - 1),
        # mmdet to the image's edge (width, height).
        height, width = masks.shape[1:]
        clipped = np.minimum(expected.bboxes.numpy(),
                             np.float32([width, height] * 2) - 1)
        assert np.abs(boxes[:, :4] - clipped).max() < 0.01, image
        assert np.abs(boxes[:, 4] - expected.scores.numpy()).max() < 1e-4
        # Masks on the bundled images, of the detections an application
        # shows (score >= 0.3). The SDK pastes each mask with its own resize:
        # on the noise image, whose boxes are few pixels wide, that gave
        # another outline (IoU 0.42 on one).
        shown = expected.scores.numpy() >= 0.3
        if n >= 3:
            continue
        for a, b in zip(masks[shown], expected.masks.numpy()[shown]):
            assert b.any() and mask_iou(a, b) > 0.9, image


@pytest.mark.parametrize('backend', ['onnxruntime', 'onnxruntime_static'])
def test_mmdeploy_runtime_segmentor_gives_the_tools_label_maps(
        backend, seg_exports):
    """The trained Semantic FPN in the SDK's Segmentor (ONNX Runtime,
    dynamic and static 64x64): the tool's label map on at least 99% of the
    pixels of each image, three labels or more on the bundled ones. Under
    numpy 2 the map comes with zero strides and is read through the right
    ones."""
    exported = seg_exports[backend]
    images = seg_exports['images']
    got = run_sdk(SDK_SEGMENT, exported['work'], *images)
    for n, image in enumerate(images):
        expected = tool_prediction(exported, image).pred_sem_seg.data[0]
        labels = got[f'{n}_labels']
        assert tuple(got[f'{n}_strides']) == (
            (0, 0) if NUMPY_2 else (4 * labels.shape[1], 4))
        assert labels.shape == tuple(expected.shape), image
        if n < 3:
            assert len(np.unique(labels)) >= 3, image
        assert (labels == expected.numpy()).mean() >= 0.99, image


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
    # Commands run from the user's folder name this checkout so.
    text = open(DOC).read().replace('/path/to/mmnextvit/', '')
    paths = set(re.findall(r'(?<![\w/])((?:configs|tools|demo|docs|mmnextvit)'
                           r'/[\w./*-]+\w)', text))
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
