"""Whole-model deployment through mmdeploy (tools/deployment/deploy.py,
mmnextvit.deploy, mmnextvit.compat.mmdeploy): the torch 2.x and OpenVINO
bridges are still needed and still right, the deploy configs say what their
names say, exported models give PyTorch's predictions in ONNX Runtime and
OpenVINO, and bad input ends in one line with nothing written. mmdeploy,
ONNX Runtime and OpenVINO are imported plainly: the README's set-up
installs them, so a broken install fails here instead of skipping."""
import ast
import glob
import inspect
import os
import os.path as osp
import re
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, rel_err
from trained_models import images_with_three_classes, trained_seg_config

import mmdeploy  # noqa: F401
import onnxruntime  # noqa: F401
import openvino  # noqa: F401

import mmnextvit  # noqa: F401
from mmnextvit.compat import mmdeploy as bridges
from mmnextvit.compat.torch import torch_at_least
from mmnextvit.deploy import pipeline, quantize

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEPLOY = osp.join(ROOT, 'configs', 'deploy')
DET_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                      'nextvit_s_shapes-cpu.py')
SEG_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                      'nextvit_s_seg-shapes-cpu.py')
UPERNET_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                          'nextvit_s_upernet_seg-shapes-cpu.py')


def _tool():
    return runpy.run_path(
        osp.join(ROOT, 'tools', 'deployment', 'deploy.py'),
        run_name='mmnextvit_tool')['main']


def seeded_checkpoint(config: str, path: str) -> str:
    """A checkpoint of ``config``'s model with seeded random weights."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


# Seeded weights give the RPN's proposals near-equal objectness (at
# 128x128, 615 boxes survive its NMS within 1e-5 of each other, some of
# them equal), so the bundled config's cut at 100 proposals falls among ties
# that PyTorch and each engine break differently, and the detections drawn
# from the two sets differ by tenths of a pixel. The comparisons on seeded
# weights keep every survivor (1000, the COCO configs' number); the cut
# itself is compared on the trained detector, whose scores are distinct
# (test_main_job/test_int8.py, test_deployed_app.py, test_mmdeploy_tools.py).
SEEDED_RPN_PROPOSALS = 1000


def seeded_det_config(folder) -> str:
    """The bundled Mask R-CNN config with ``SEEDED_RPN_PROPOSALS``, written
    in ``folder``."""
    path = osp.join(str(folder), 'seeded_det.py')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'_base_ = {DET_CONFIG!r}\n'
                'model = dict(test_cfg=dict(rpn=dict('
                f'max_per_img={SEEDED_RPN_PROPOSALS})))\n')
    return path


def seeded_detector(checkpoint: str):
    """The Mask R-CNN of :func:`seeded_det_config` (written beside
    ``checkpoint``) in eval mode with the weights of ``checkpoint`` (see
    :func:`seeded_checkpoint`), for eager checks."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(seeded_det_config(osp.dirname(checkpoint)))
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    load_checkpoint(model, checkpoint, map_location='cpu')
    return model


def write_image(path: str, height: int, width: int, seed: int = 0) -> str:
    import cv2
    rng = np.random.default_rng(seed)
    img = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    cv2.circle(img, (width // 3, height // 2), min(height, width) // 5,
               (60, 20, 220), -1)
    cv2.rectangle(img, (width // 2, height // 4),
                  (width * 5 // 6, height * 3 // 4), (255, 128, 0), -1)
    cv2.imwrite(path, img)
    return path


def small_deploy_config(tmp_path, base: str, **onnx_config) -> str:
    """A deploy config of configs/deploy/ with another onnx_config (and,
    for a static OpenVINO config, the IR's input shape to match)."""
    path = tmp_path / f'small_{osp.basename(base)}'
    text = (f'_base_ = {osp.join(DEPLOY, base)!r}\n'
            f'onnx_config = dict(**{onnx_config!r})\n')
    if '_openvino_static' in base and 'input_shape' in onnx_config:
        width, height = onnx_config['input_shape']
        text += ('backend_config = dict(model_inputs=[dict(opt_shapes=dict('
                 f'input=[1, 3, {height}, {width}]))])\n')
    path.write_text(text)
    return str(path)


@pytest.fixture(scope='module')
def det_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('deploy_det')
    return (seeded_checkpoint(DET_CONFIG, str(root / 'det.pth')),
            write_image(str(root / 'img.png'), 256, 256))


@pytest.fixture(scope='module')
def seg_files(tmp_path_factory):
    from mmnextvit.bundled_data import seg_shapes
    root = tmp_path_factory.mktemp('deploy_seg')
    data = str(root / 'seg_shapes')
    seg_shapes.generate(
        data, seg_shapes.SegShapesConfig(num_train=4, num_val=12),
        progress=False)
    config = root / 'seg.py'
    config.write_text(
        f'_base_ = {SEG_CONFIG!r}\n'
        f'test_dataloader = dict(dataset=dict(data_root={data!r}))\n')
    return (str(config), seeded_checkpoint(SEG_CONFIG, str(root / 'seg.pth')))


# --------------------------------------------------------------------------
# Bridges: each must still be needed, and right
# --------------------------------------------------------------------------
def _fresh_python(code: str) -> str:
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          check=True).stdout.strip()


def test_dynamo_bridge_is_applied_exactly_where_torch_defaults_to_dynamo():
    """Bridge 1 is needed while torch.onnx.export defaults to dynamo=True
    (torch >= 2.9) and mmdeploy's export does not choose; on an older torch
    (2.1: no dynamo argument) it is not applied."""
    needed = bridges.export_defaults_to_dynamo(
        getattr(torch.onnx.export, '__wrapped__', torch.onnx.export))
    assert needed == torch_at_least(2, 9)
    bridges.install()
    assert getattr(torch.onnx.export, bridges._BRIDGE_MARK, False) == needed
    if not needed:
        return
    from mmdeploy.apis.onnx import export as export_module
    tree = ast.parse(inspect.getsource(export_module))
    calls = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call)
        and ast.unparse(node.func) == 'torch.onnx.export'
    ]
    assert calls, 'mmdeploy no longer calls torch.onnx.export'
    for call in calls:
        assert 'dynamo' not in {k.arg for k in call.keywords}, (
            'mmdeploy now passes dynamo itself: drop the bridge')


def test_torchscript_bridge_serves_mmdeploy_only_and_keeps_a_choice(
        monkeypatch):
    """Bridge 1: calls from an mmdeploy module that do not choose get the
    TorchScript exporter; other callers and explicit choices are left as
    they are; installing twice wraps once."""
    seen = []

    def export(model, args=(), f=None, *, dynamo: bool = True, **kwargs):
        seen.append(dynamo)

    monkeypatch.setattr(torch.onnx, 'export', export)
    bridges.install()
    bridges.install()
    wrapped = torch.onnx.export
    assert wrapped is not export and wrapped.__wrapped__ is export
    call = compile('torch.onnx.export(None)', '<mmdeploy>', 'exec')
    chosen = compile('torch.onnx.export(None, dynamo=True)', '<mmdeploy>',
                     'exec')
    exec(call, {'torch': torch, '__name__': 'mmdeploy.apis.onnx.export'})
    exec(chosen, {'torch': torch, '__name__': 'mmdeploy.apis.onnx.export'})
    exec(call, {'torch': torch, '__name__': 'my_project.export'})
    torch.onnx.export(None)
    assert seen == [False, True, True, True]


def test_cast_long_bridge_is_applied_exactly_where_torch_lacks_it():
    """Bridge 2 is needed where torch lacks the helper (checked in a fresh
    interpreter, before any bridge: torch 2.13 does, 2.1 has it) while
    mmdeploy's RoIAlign imports it; where torch has it, it is left alone."""
    missing = _fresh_python(
        'import torch.onnx.symbolic_opset9 as m; '
        "print(hasattr(m, '_cast_Long'))") == 'False'
    if torch_at_least(2, 13):
        assert missing, ('torch has _cast_Long again: drop cast_to_int64 '
                         'from mmnextvit/compat/mmdeploy.py')
    elif not torch_at_least(2, 2):
        assert not missing
    from mmdeploy.mmcv.ops import roi_align
    source = inspect.getsource(roi_align)
    assert 'from torch.onnx.symbolic_opset9 import _cast_Long' in source, (
        "mmdeploy's RoIAlign no longer imports _cast_Long: drop the bridge")
    bridges.install()
    bridges.install()  # idempotent
    import torch.onnx.symbolic_opset9 as opset9
    assert (opset9._cast_Long is bridges.cast_to_int64) == missing
    assert not bridges.cast_long_missing()


def test_cast_bridge_emits_an_int64_cast():
    """The stand-in gives what torch's helper gave: Cast(to=INT64)."""
    import onnx
    import onnxruntime as ort

    class Graph:

        def op(self, name, *inputs, **attrs):
            return name, inputs, attrs

    name, inputs, attrs = bridges.cast_to_int64(Graph(), 'x', False)
    assert (name, inputs, attrs) == ('Cast', ('x', ),
                                     {'to_i': onnx.TensorProto.INT64})
    node = onnx.helper.make_node('Cast', ['x'], ['y'], to=attrs['to_i'])
    graph = onnx.helper.make_graph(
        [node], 'cast',
        [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT,
                                            [3])],
        [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.INT64,
                                            [3])])
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid('', 11)])
    session = ort.InferenceSession(model.SerializeToString())
    out = session.run(None, {'x': np.array([0., 1., 2.], np.float32)})[0]
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 2]


def test_fx_wraps_bridge_keeps_the_rewriter_context_exit_working(tmp_path):
    """Bridge 4: torch (2.1 and 2.13) keeps torch.fx's wrapped functions in
    a dict and mmdeploy's rewriter context pops them by index on exit, so a
    module that calls torch.fx.wrap when imported inside the context (as
    torchvision's and timm's do, imported by the context itself where
    installed) makes the exit raise KeyError: -1. With the bridge the
    context exits and the module's wrap stays. Each case in a fresh
    interpreter, the module not yet imported."""
    (tmp_path / 'wraps_on_import.py').write_text(
        'import torch.fx\n\n\n'
        'def helper(x):\n    return x\n\n\n'
        "torch.fx.wrap('helper')\n")
    code = ('import sys\n'
            f'sys.path.insert(0, {str(tmp_path)!r})\n'
            'from torch.fx import _symbolic_trace\n'
            'from mmdeploy.core import RewriterContext\n'
            'from mmnextvit.compat import mmdeploy as bridges\n'
            "print('>', bridges.fx_wraps_bridge_needed())\n"
            '{install}\n'
            'try:\n'
            "    with RewriterContext(cfg={{}}, backend='onnxruntime'):\n"
            '        import wraps_on_import\n'
            'except KeyError as err:\n'
            "    print('>', 'KeyError', err)\n"
            'else:\n'
            "    print('>', 'kept', any(name == 'helper' for _, name in\n"
            '                      _symbolic_trace._wrapped_fns_to_patch))\n')

    def printed(install):
        return [
            line[2:] for line in _fresh_python(code.format(
                install=install)).splitlines() if line.startswith('> ')
        ]

    assert printed('') == ['True', 'KeyError -1'], (
        "mmdeploy's rewriter context or torch.fx changed: bridge 4 of "
        'mmnextvit/compat/mmdeploy.py may be unnecessary')
    assert printed('bridges.install(); bridges.install()\n'
                   "print('>', bridges.fx_wraps_bridge_needed())") == [
                       'True', 'False', 'kept True'
                   ]


def test_openvino_still_lacks_what_mmdeploy_calls():
    """Bridge 3 is needed while mmdeploy's OpenVINO backend runs Model
    Optimizer and IECore and the installed openvino has neither (checked
    in a fresh interpreter, before any bridge)."""
    assert _fresh_python(
        'import importlib.util as u; '
        "print(u.find_spec('openvino.inference_engine') is None, "
        "u.find_spec('openvino.tools.mo') is None)") == 'True True', (
            'openvino ships inference_engine / Model Optimizer again: '
            'bridge 3 of mmnextvit/compat/mmdeploy.py may be unnecessary')
    assert bridges.openvino_missing_apis() == {'IECore', 'mo'}
    assert bridges.mmdeploy_openvino_calls() == {'IECore', 'mo'}, (
        "mmdeploy's OpenVINO backend no longer calls IECore / mo: drop "
        'bridge 3 from mmnextvit/compat/mmdeploy.py')
    from mmdeploy.backend.openvino import onnx2openvino, wrapper
    assert 'openvino.inference_engine import IECore' in inspect.getsource(
        wrapper)
    assert "mo_commands = ['mo.py', 'mo']" in inspect.getsource(
        onnx2openvino)


def test_openvino_bridge_registers_once():
    from mmdeploy.backend.base import BACKEND_WRAPPER, get_backend_manager
    bridges.install()
    manager = get_backend_manager('openvino')
    wrapper = BACKEND_WRAPPER.module_dict['openvino']
    bridges.install()  # idempotent
    assert (manager, wrapper) == bridges.openvino_backend_classes()
    assert get_backend_manager('openvino') is manager
    assert BACKEND_WRAPPER.module_dict['openvino'] is wrapper
    assert not bridges.openvino_bridge_needed()
    assert manager.backend_name == 'openvino'


def test_openvino_conversion_refuses_model_optimizer_flags(tmp_path):
    """mmdeploy's ``mo_options`` would change the model (mean values,
    layouts); convert_model does not take them, so they are refused."""
    from mmdeploy.backend.base import get_backend_manager
    from mmengine.config import Config
    bridges.install()
    cfg = Config(
        dict(
            backend_config=dict(
                type='openvino',
                mo_options=dict(args={'--mean_values': [1, 2, 3]}))))
    with pytest.raises(ValueError, match='Model Optimizer flags'):
        get_backend_manager('openvino').to_backend(
            [str(tmp_path / 'end2end.onnx')], str(tmp_path), cfg)
    assert os.listdir(tmp_path) == []


def test_pyramid_pooling_rewrite_equals_adaptive_pooling():
    """UperNet's adaptive pooling, exported as averaging matrices, equals
    AdaptiveAvgPool2d where the grid does and does not divide the input
    (mmdeploy's own rewrite is exact only where it divides)."""
    from mmnextvit.deploy.rewriters import adaptive_avg_pool
    for cells in (1, 2, 3, 6, (2, 3)):
        pool = torch.nn.AdaptiveAvgPool2d(cells)
        for size in ((6, 6), (16, 16), (7, 11), (2, 5)):
            x = torch.randn(2, 4, *size)
            got = adaptive_avg_pool(x, cells)
            assert torch.allclose(got, pool(x), atol=1e-6), (cells, size)


def test_attention_rewrite_scales_as_torch_does():
    """Under every export backend the attention is torch's: an explicit
    ``scale`` multiplies the logits (mmdeploy's own rewrite, still active
    for other backends, divides by it), with and without masks. Logits of
    a few units, so a wrong scale cannot hide in a uniform softmax."""
    import torch.nn.functional as F
    from mmdeploy.core import RewriterContext

    import mmnextvit.deploy.rewriters  # noqa: F401
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) * 2 for _ in range(3))
    mask = torch.rand(5, 7) > 0.3
    mask[:, 0] = True
    k7, v7 = torch.randn(2, 3, 7, 8) * 2, torch.randn(2, 3, 7, 8)
    cases = [((q, k, v), dict(scale=8**-0.5)), ((q, k, v), dict(scale=0.9)),
             ((q, k, v), {}), ((q, k, v), dict(is_causal=True)),
             ((q, k7, v7), dict(attn_mask=mask)),
             ((q, k7, v7), dict(attn_mask=torch.randn(5, 7), scale=0.3))]
    expected = [F.scaled_dot_product_attention(*args, **kwargs)
                for args, kwargs in cases]
    # One context per backend (entering one patches every rewrite: ~1.5 s).
    for backend in ('onnxruntime', 'openvino', 'tensorrt'):
        with RewriterContext(cfg={}, backend=backend):
            for (args, kwargs), want in zip(cases, expected):
                got = F.scaled_dot_product_attention(*args, **kwargs)
                assert torch.allclose(got, want, atol=1e-5), (backend,
                                                              kwargs)
    # Still needed: mmdeploy's rewrite divides by an explicit scale.
    with RewriterContext(cfg={}, backend='default'):
        theirs = F.scaled_dot_product_attention(q, k, v, scale=8**-0.5)
    assert not torch.allclose(
        theirs, F.scaled_dot_product_attention(q, k, v, scale=8**-0.5),
        atol=1e-2)


def test_backbone_under_export_rewrites_equals_pytorch(det_files):
    """The detector's backbone and neck, run eagerly under the rewrites of
    an export, give PyTorch's features once the attention is sharp (query
    weights scaled up, as training makes them): seeded weights alone give
    near-uniform attention, where a wrongly scaled softmax still agreed."""
    from mmdeploy.core import RewriterContext
    import mmnextvit.deploy.rewriters  # noqa: F401
    model = seeded_detector(det_files[0])
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith('.q.weight'):
                param.mul_(30)
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'))
    torch.manual_seed(1)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.extract_feat(images)
        for backend in ('onnxruntime', 'openvino'):
            with RewriterContext(cfg=deploy_cfg, backend=backend):
                got = model.extract_feat(images)
            for level, (a, b) in enumerate(zip(expected, got)):
                diff = float((a - b).abs().max())
                assert diff < 1e-3 * float(a.abs().max()), (
                    backend, level, diff)


# --------------------------------------------------------------------------
# Deploy configs
# --------------------------------------------------------------------------
DEPLOY_CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(DEPLOY, '*.py')))


def test_the_issue_s_deploy_configs_are_there():
    for name in ('instance-seg_onnxruntime_static-800x1344.py',
                 'instance-seg_onnxruntime_dynamic.py',
                 'segmentation_onnxruntime_static-512x512.py',
                 'segmentation_onnxruntime_dynamic.py',
                 'segmentation_openvino_static-512x512.py',
                 'segmentation_openvino_dynamic.py',
                 'instance-seg_openvino_static-800x1344.py',
                 'instance-seg_openvino_dynamic.py'):
        assert name in DEPLOY_CONFIGS
    assert any('tensorrt-fp16' in n for n in DEPLOY_CONFIGS)


@pytest.mark.parametrize('name', DEPLOY_CONFIGS)
def test_deploy_config_says_what_its_name_says(name):
    """<task>_<backend>[-precision]_<static-HxW|dynamic[-HxW-HxW]>.py, read
    with mmdeploy's own accessors."""
    from mmdeploy.utils import (get_backend, get_codebase, get_input_shape,
                                get_ir_config, is_dynamic_shape,
                                load_config)
    cfg = load_config(osp.join(DEPLOY, name))[0]
    task, backend, shape = name[:-3].split('_')
    assert get_codebase(cfg).value == {
        'instance-seg': 'mmdet',
        'segmentation': 'mmseg'
    }[task]
    assert get_backend(cfg).value == backend.split('-')[0]
    assert 'mmnextvit.deploy.rewriters' in cfg.codebase_config.module
    assert get_ir_config(cfg).opset_version == 11
    if task == 'instance-seg':
        assert get_ir_config(cfg).output_names == ['dets', 'labels', 'masks']
    if backend.endswith('-fp16'):
        assert cfg.backend_config.common_config.fp16_mode is True
    if backend.endswith('-int8'):
        if backend.startswith('tensorrt'):
            # mmdeploy's own int8: TensorRT calibrates on calib_config's
            # data (mmdeploy's tools/deploy.py creates it).
            from mmdeploy.utils import get_calib_filename
            assert cfg.backend_config.common_config.int8_mode is True
            assert get_calib_filename(cfg) == 'calib_data.h5'
            assert 'quantization_config' not in cfg
        else:
            # Ours: deploy.py quantizes after the export.
            assert quantize.settings(cfg)['calib_images'] >= 1
    else:
        assert quantize.settings(cfg) is None
    sizes = [tuple(int(v) for v in s.split('x'))
             for s in re.findall(r'\d+x\d+', shape)]
    if shape.startswith('static'):
        assert not is_dynamic_shape(cfg)
        height, width = sizes[0]
        assert get_input_shape(cfg) == [width, height]
    else:
        assert is_dynamic_shape(cfg)
        assert get_input_shape(cfg) is None
        axes = get_ir_config(cfg).dynamic_axes
        assert axes['input'] == {0: 'batch', 2: 'height', 3: 'width'}
    if backend == 'openvino':
        # The IR's input shape: the export's for a static config (a graph
        # exported at one size holds its sizes as constants), none for a
        # dynamic one (the IR keeps the dynamic axes).
        if shape.startswith('static'):
            assert cfg.backend_config.model_inputs == [
                dict(opt_shapes=dict(input=[1, 3, height, width]))
            ]
        else:
            assert 'model_inputs' not in cfg.backend_config
        assert cfg.backend_config.get('precision', 'fp32') == 'fp32'
    if backend.startswith('tensorrt'):
        shapes = cfg.backend_config.model_inputs[0].input_shapes.input
        assert shapes.min_shape[2:] == list(sizes[0])
        assert shapes.max_shape[2:] == list(sizes[-1])


# --------------------------------------------------------------------------
# Export + ONNX Runtime / OpenVINO against PyTorch
# --------------------------------------------------------------------------
# What the work dir holds after an export, by backend.
# mmdeploy's SDK files (deploy.json, detail.json, pipeline.json) are
# checked in tests/test_deployed_app.py.
WORK_FILES = {
    'onnxruntime': [
        'deploy.json', 'deploy_cfg.py', 'detail.json', 'end2end.onnx',
        'model_cfg.py', 'pipeline.json'
    ],
    'openvino': [
        'deploy.json', 'deploy_cfg.py', 'detail.json', 'end2end.bin',
        'end2end.onnx', 'end2end.xml', 'model_cfg.py', 'pipeline.json'
    ],
}


def assert_detections_match(diff, where):
    """PyTorch's detections against the exported model's (see
    pipeline.compare_predictions). Seeded random weights: 100 near-equal
    scores, so a detection or two may swap places at the 100-detection cut;
    every other one matches."""
    assert diff['detections'] >= 50, (where, diff)
    assert abs(diff['exported_detections'] - diff['detections']) <= 2, (
        where, diff)
    assert diff['unmatched'] <= 2, (where, diff)
    assert diff['max_box_diff'] < 0.01, (where, diff)
    assert diff['max_score_diff'] < 1e-4, (where, diff)
    # Masks compared for every matched pair: an export without masks fails,
    # and so does one whose masks (or PyTorch's) are empty.
    assert diff['mask_pairs'] == diff['detections'] - diff['unmatched'], (
        where, diff)
    assert diff['empty_mask_pairs'] == 0, (where, diff)
    assert diff['min_mask_iou'] > 0.95, (where, diff)


@pytest.mark.parametrize('shape', ['dynamic', 'static'])
@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_mask_rcnn_export_matches_pytorch(backend, shape, det_files,
                                          tmp_path, capsys):
    """Mask R-CNN through the tool with each of its four deploy configs
    (the static ones at a small size): ONNX Runtime and OpenVINO (mmdeploy's
    RoI extractor for OpenVINO, ExperimentalDetectronROIFeatureExtractor)
    give PyTorch's boxes, scores and masks, and the picture is drawn. The
    dynamic exports also match at a second size (the graph sees 128x128,
    then 96x128: the test pipeline halves the images). Before
    rewriters.rpn_head__predict_by_feat, mmdeploy's RPN rewrite suppressed
    proposals across pyramid levels and fed a padding row to the RoI head,
    and at 96x128 the detections were 15.9 px apart (mask IoU 0.05)."""
    checkpoint, image = det_files
    config = seeded_det_config(tmp_path)
    if shape == 'static':
        deploy_cfg = small_deploy_config(
            tmp_path, f'instance-seg_{backend}_static-800x1344.py',
            input_shape=[128, 128])
    else:
        deploy_cfg = osp.join(DEPLOY, f'instance-seg_{backend}_dynamic.py')
    work = tmp_path / 'work'
    _tool()([
        config, checkpoint, '--deploy-cfg', deploy_cfg, '--work-dir',
        str(work), '--img', image, '--show-dir',
        str(tmp_path / 'vis'), '--score-thr', '0.05'
    ])
    out = capsys.readouterr().out
    assert sorted(os.listdir(work)) == WORK_FILES[backend]
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.work.')]
    found = re.search(
        r'(\d+) vs (\d+), (\d+) unmatched; over the matched: max box '
        r'difference (\S+) px, max score difference (\S+), min mask IoU '
        r'(\S+) over (\d+) mask pairs, (\d+) pairs with both masks empty',
        out)
    assert found, out
    count, exported, unmatched = (int(v) for v in found.groups()[:3])
    box, score, mask_iou = (float(v) for v in found.groups()[3:6])
    assert_detections_match(
        dict(detections=count, exported_detections=exported,
             unmatched=unmatched, max_box_diff=box, max_score_diff=score,
             min_mask_iou=mask_iou,
             mask_pairs=int(found.group(7)) + int(found.group(8)),
             empty_mask_pairs=int(found.group(8))), image)
    assert osp.getsize(tmp_path / 'vis' / 'img.png') > 0
    if shape == 'static':
        return
    from mmengine.config import Config
    second = write_image(str(tmp_path / 'wide.png'), 192, 256, seed=1)
    deploy = pipeline.load_deploy_config(deploy_cfg)
    processor, torch_model, backend_model = pipeline.build_models(
        Config.fromfile(config), deploy, checkpoint,
        [str(work / 'end2end.onnx')])
    expected = pipeline.predict(processor, torch_model, second, deploy)
    got = pipeline.predict(processor, backend_model, second, deploy)
    assert expected.metainfo['img_shape'] == (96, 128)
    assert_detections_match(
        pipeline.compare_predictions('mmdet', expected, got), second)


def test_rpn_rewrite_gives_mmdet_proposals(det_files):
    """The exported RPN (run eagerly under mmdeploy's rewriter context)
    keeps exactly mmdet's proposals at a size where mmdeploy's own RPN
    rewrite does not."""
    import copy

    from mmdeploy.core import RewriterContext
    import mmnextvit.deploy.rewriters  # noqa: F401
    model = seeded_detector(det_files[0])
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'))
    from mmdet.structures import DetDataSample
    torch.manual_seed(1)
    images = torch.randn(1, 3, 96, 128)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128)))
    with torch.no_grad():
        feats = model.extract_feat(images)
        expected = model.rpn_head.predict(feats, [sample])[0]
        traced = copy.deepcopy(sample)
        traced.set_metainfo(dict(img_shape=torch.tensor([96, 128])))
        with RewriterContext(cfg=deploy_cfg, backend='onnxruntime'):
            dets, _ = model.rpn_head.predict(feats, [traced])
    dets = dets[0]
    assert dets.shape == (len(expected), 5)
    same = ((expected.bboxes[:, None] - dets[None, :, :4]).abs().amax(-1) <
            1e-3) & (expected.scores[:, None] == dets[None, :, 4])
    assert same.any(1).all() and same.any(0).all()


def export_and_compare_label_maps(model_cfg, deploy_cfg, checkpoint, images,
                                  work):
    """Export a trained segmentor with a dynamic deploy config on the first
    image; the exported model's label maps equal PyTorch's on every image,
    each of another size, and PyTorch's maps hold three labels or more (an
    untrained model's near-uniform map would match anything). Returns the
    processor and both models."""
    backend_files = pipeline.export(model_cfg, deploy_cfg, checkpoint,
                                    images[0], str(work))
    processor, torch_model, backend_model = pipeline.build_models(
        model_cfg, deploy_cfg, checkpoint, backend_files)
    shapes = set()
    for image in images:
        expected = pipeline.predict(processor, torch_model, image, deploy_cfg)
        labels = torch.unique(expected.pred_sem_seg.data)
        assert len(labels) >= 3, (image, labels)
        got = pipeline.predict(processor, backend_model, image, deploy_cfg)
        shapes.add(tuple(got.pred_sem_seg.shape))
        diff = pipeline.compare_predictions('mmseg', expected, got)
        assert diff['label_mismatch'] < 0.005, (image, diff)
    assert len(shapes) == len(images)
    return processor, torch_model, backend_model


def held_out_at_two_sizes(trained_segmentor, tmp_path):
    """Two held-out images with three classes each, the second widened to
    64x96 (sizes the test pipeline keeps as they are: it fits images into
    256x64)."""
    import cv2
    first, second = images_with_three_classes(trained_segmentor['data'], 2)
    wide = str(tmp_path / 'wide.jpg')
    cv2.imwrite(wide, cv2.resize(cv2.imread(second), (96, 64)))
    return [first, wide]


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_segmentor_dynamic_export_matches_at_two_sizes_and_evaluates(
        backend, trained_segmentor, tmp_path):
    """The trained Semantic FPN exported dynamic: the same label maps as
    PyTorch at two input sizes, and the same mIoU on held-out images
    (mmdeploy's test runner with the config's evaluator)."""
    from mmengine.config import Config
    config = trained_seg_config(trained_segmentor, tmp_path, indices=12)
    checkpoint = trained_segmentor['checkpoint']
    model_cfg = Config.fromfile(config)
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(DEPLOY, f'segmentation_{backend}_dynamic.py'))
    # mmdeploy resizes a label map to the original size by nearest
    # neighbour where mmseg resizes the logits, a difference of the
    # post-processing that would hide the graph's own: hence sizes the
    # test pipeline keeps.
    processor, torch_model, backend_model = export_and_compare_label_maps(
        model_cfg, deploy_cfg, checkpoint,
        held_out_at_two_sizes(trained_segmentor, tmp_path), tmp_path / 'work')
    assert sorted(os.listdir(tmp_path / 'work')) == WORK_FILES[backend]
    ours = pipeline.evaluate(processor, backend_model, str(tmp_path / 'e1'))
    theirs = pipeline.evaluate(processor, torch_model, str(tmp_path / 'e2'))
    assert set(ours) == set(theirs) and 'mIoU' in ours
    assert theirs['mIoU'] > 50, theirs  # a model that learned the shapes
    assert abs(ours['mIoU'] - theirs['mIoU']) < 0.5


def test_upernet_export_matches_pytorch(tmp_path):
    """UperNet (its pyramid pooling exported through our rewrite) in
    ONNX Runtime gives PyTorch's logits at two input sizes. No UperNet is
    trained in the suite and a seeded one labels every pixel alike, so the
    export is made without the argmax (mmdeploy's ``with_argmax=False``)
    and the logits themselves are compared."""
    from mmengine.config import Config
    checkpoint = seeded_checkpoint(UPERNET_CONFIG, str(tmp_path / 'u.pth'))
    model_cfg = Config.fromfile(UPERNET_CONFIG)
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(DEPLOY, 'segmentation_onnxruntime_dynamic.py'))
    deploy_cfg.codebase_config.with_argmax = False
    images = [
        write_image(str(tmp_path / 'a.jpg'), 64, 64),
        write_image(str(tmp_path / 'b.jpg'), 96, 64, seed=1)
    ]
    backend_files = pipeline.export(model_cfg, deploy_cfg, checkpoint,
                                    images[0], str(tmp_path / 'work'))
    processor, torch_model, backend_model = pipeline.build_models(
        model_cfg, deploy_cfg, checkpoint, backend_files)
    shapes = set()
    for image in images:
        data, inputs = processor.create_input(
            image, None, processor.build_data_preprocessor())
        with torch.no_grad():
            expected = torch_model.encode_decode(
                inputs, [data['data_samples'][0].metainfo])
            got = backend_model.wrapper(
                {backend_model.input_name: inputs})[
                    backend_model.output_names[0]]
        shapes.add(tuple(got.shape))
        assert got.shape == expected.shape, (got.shape, expected.shape)
        # Logits that vary over the image: a wrong pooling would show.
        assert float(expected.std()) > 1e-3 * float(expected.abs().max())
        assert rel_err(got, expected) < 1e-4, (image, rel_err(got, expected))
    assert len(shapes) == len(images)


def test_segmentor_openvino_static_export_through_the_tool(
        trained_segmentor, tmp_path, capsys):
    """The trained Semantic FPN (tests/trained_models.py; seeded weights
    give near-uniform maps whose argmax ties flip on any rounding) exported
    static 96x64 for OpenVINO through the tool: the IR in
    the work dir, PyTorch's label map, and --test evaluates it (the test
    set's 64x64 images are stretched to the export's size, as mmdeploy
    resizes the image it exports on: pipeline.at_export_size) with
    PyTorch's mIoU on the same stretched images; the picture is drawn.
    An input of another size ends in an error that says what to do."""
    from mmdeploy.apis.utils import build_task_processor
    from mmengine.config import Config
    config = trained_seg_config(trained_segmentor, tmp_path, indices=12)
    checkpoint = trained_segmentor['checkpoint']
    deploy_cfg = small_deploy_config(
        tmp_path, 'segmentation_openvino_static-512x512.py',
        input_shape=[96, 64])
    image = str(tmp_path / 'img.jpg')
    shutil.copy(trained_segmentor['images'][0], image)
    work = tmp_path / 'work'
    _tool()([
        config, checkpoint, '--deploy-cfg', deploy_cfg, '--work-dir',
        str(work), '--img', image, '--test', '--show-dir',
        str(tmp_path / 'vis')
    ])
    out = capsys.readouterr().out
    assert sorted(os.listdir(work)) == WORK_FILES['openvino'] + ['test']
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.work.')]
    assert f'exported to {work / "end2end.xml"}' in out
    found = re.search(r'PyTorch vs exported: (\S+)% of 4096 pixels', out)
    # The graph takes the argmax at 96x64 and the map is resized back to
    # 64x64 by nearest neighbour; mmseg resizes the logits to 64x64 first:
    # pixels on the shapes' edges differ (0.73% measured; a wrong export
    # differs on a large share).
    assert found and float(found.group(1)) < 2, out
    assert osp.getsize(tmp_path / 'vis' / 'img.png') > 0
    ours = float(re.search(r'^mIoU: (\S+)$', out, re.M).group(1))
    assert ours >= 50, out  # a trained model's, on 12 stretched images

    model_cfg = Config.fromfile(config)
    deploy_cfg = pipeline.load_deploy_config(deploy_cfg)
    processor, torch_model, backend_model = pipeline.build_models(
        model_cfg, deploy_cfg, checkpoint, [str(work / 'end2end.xml')])
    theirs = pipeline.evaluate(processor, torch_model, str(tmp_path / 'e'))
    assert abs(ours - theirs['mIoU']) < 0.5
    # The config's own pipeline keeps a 64x128 image as it is.
    data, _ = build_task_processor(model_cfg, deploy_cfg, 'cpu').create_input(
        write_image(str(tmp_path / 'wide.jpg'), 64, 128), None)
    with pytest.raises(ValueError, match='dynamic deploy config'):
        backend_model.test_step(data)


def test_at_export_size_stretches_the_test_pipelines():
    """A static deploy config's size replaces the Resize of the test
    pipeline and of the test loader's (keep_ratio off, as mmdeploy's own
    static pipeline); a dynamic config leaves the model config alone, and
    the caller's config is never changed."""
    from mmengine.config import Config
    model_cfg = Config.fromfile(DET_CONFIG)
    static = pipeline.load_deploy_config(
        osp.join(DEPLOY, 'instance-seg_onnxruntime_static-800x1344.py'))
    dynamic = pipeline.load_deploy_config(
        osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'))
    stretched = pipeline.at_export_size(model_cfg, static)
    for cfg, scale, keep_ratio in ((stretched, (1344, 800), False),
                                   (model_cfg, (128, 128), True)):
        for steps in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
            (resize, ) = [s for s in steps if s.type == 'Resize']
            assert (tuple(resize.scale), resize.keep_ratio) == (scale,
                                                                keep_ratio)
    assert pipeline.at_export_size(model_cfg, dynamic) is model_cfg


# --------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written
# --------------------------------------------------------------------------
def fails_in_one_line(capsys, argv, *words):
    with pytest.raises(SystemExit) as info:
        _tool()([str(a) for a in argv])
    assert info.value.code == 2
    return assert_one_line_error(capsys.readouterr().err, *words)


def test_mmdeploy_missing(det_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmdeploy', None)
    checkpoint, image = det_files
    work = tmp_path / 'work'
    fails_in_one_line(capsys, [
        DET_CONFIG, checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'),
        '--work-dir', work
    ], 'mmdeploy is not installed', 'pip install --no-deps mmdeploy==1.3.1')
    assert not work.exists()


def test_backend_not_installed(det_files, tmp_path, capsys):
    checkpoint, _ = det_files
    work = tmp_path / 'work'
    fails_in_one_line(capsys, [
        DET_CONFIG, checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'instance-seg_tensorrt-fp16_static-800x1344.py'),
        '--work-dir', work
    ], "backend 'tensorrt'", 'not installed', 'onnxruntime deploy config')
    assert not work.exists()


def test_openvino_not_installed(seg_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'openvino', None)
    config, checkpoint = seg_files
    work = tmp_path / 'work'
    fails_in_one_line(capsys, [
        config, checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'segmentation_openvino_dynamic.py'), '--work-dir',
        work
    ], "backend 'openvino'", 'not installed', 'pip install openvino')
    assert not work.exists()


def test_deploy_config_of_another_task(det_files, tmp_path, capsys):
    checkpoint, _ = det_files
    work = tmp_path / 'work'
    fails_in_one_line(capsys, [
        DET_CONFIG, checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'segmentation_onnxruntime_dynamic.py'),
        '--work-dir', work
    ], "'mmseg' models", "'mmdet' model", 'instance-seg_')
    assert not work.exists()


def test_checkpoint_of_another_model(seg_files, tmp_path, capsys):
    _, seg_checkpoint = seg_files
    work = tmp_path / 'work'
    fails_in_one_line(capsys, [
        DET_CONFIG, seg_checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py'),
        '--work-dir', work
    ], seg_checkpoint, 'does not fit', 'pass a checkpoint trained with')
    assert not work.exists()


def test_failed_export_leaves_the_work_dir_as_it_was(det_files, tmp_path,
                                                     monkeypatch):
    import mmdeploy.apis

    def half_written(img, work_dir, save_file, *args, **kwargs):
        with open(osp.join(work_dir, save_file), 'wb') as f:
            f.write(b'half')
        raise RuntimeError('exporter gave up')

    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', half_written)
    from mmengine.config import Config
    checkpoint, image = det_files
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'kept.txt').write_text('from before')
    with pytest.raises(pipeline.ToolError, match='exporter gave up'):
        pipeline.export(
            Config.fromfile(DET_CONFIG),
            pipeline.load_deploy_config(
                osp.join(DEPLOY, 'instance-seg_onnxruntime_dynamic.py')),
            checkpoint, image, str(work))
    assert os.listdir(work) == ['kept.txt']
    assert sorted(os.listdir(tmp_path)) == ['work']


def test_failed_openvino_conversion_leaves_the_work_dir_as_it_was(
        seg_files, tmp_path, monkeypatch):
    """The OpenVINO conversion fails after writing part of the IR: nothing
    reaches the work dir, no temporary folder is left."""
    import mmdeploy.apis
    import onnx
    from mmengine.config import Config

    def tiny_onnx(img, work_dir, save_file, *args, **kwargs):
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node('Relu', ['input'], ['output'])], 'relu',
            [onnx.helper.make_tensor_value_info('input',
                                                onnx.TensorProto.FLOAT,
                                                [1, 3, 8, 8])],
            [onnx.helper.make_tensor_value_info('output',
                                                onnx.TensorProto.FLOAT,
                                                [1, 3, 8, 8])])
        onnx.save(
            onnx.helper.make_model(
                graph, opset_imports=[onnx.helper.make_opsetid('', 11)]),
            osp.join(work_dir, save_file))

    def half_written(model, path, *args, **kwargs):
        with open(path, 'w') as f:
            f.write('<?xml')
        raise RuntimeError('disk full')

    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', tiny_onnx)
    monkeypatch.setattr(openvino, 'save_model', half_written)
    config, checkpoint = seg_files
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'kept.txt').write_text('from before')
    deploy_cfg = small_deploy_config(
        tmp_path, 'segmentation_openvino_static-512x512.py',
        input_shape=[8, 8])
    with pytest.raises(pipeline.ToolError,
                       match='conversion of end2end.onnx for openvino '
                       'failed .RuntimeError: disk full'):
        pipeline.export(
            Config.fromfile(config), pipeline.load_deploy_config(deploy_cfg),
            checkpoint, 'unused.jpg', str(work))
    assert os.listdir(work) == ['kept.txt']
    assert sorted(os.listdir(tmp_path)) == [
        'small_segmentation_openvino_static-512x512.py', 'work'
    ]


def test_comparison_requires_masks_on_both_sides():
    """An exported prediction without masks is reported as such (no mask
    pairs, no IoU), never as a perfect mask IoU."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 40., 40.]])
    masks = torch.zeros(2, 48, 48, dtype=torch.bool)
    masks[0, :10, :10] = masks[1, 20:40, 20:40] = True
    expected, got = DetDataSample(), DetDataSample()
    expected.pred_instances = InstanceData(
        bboxes=boxes, scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([0, 1]), masks=masks)
    got.pred_instances = InstanceData(
        bboxes=boxes, scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([0, 1]))
    diff = pipeline.compare_predictions('mmdet', expected, got)
    assert (diff['mask_pairs'], diff['min_mask_iou']) == (0, None)
    got.pred_instances.masks = masks.clone()
    got.pred_instances.masks[1, 30:40] = False
    diff = pipeline.compare_predictions('mmdet', expected, got)
    assert diff['mask_pairs'] == 2 and diff['min_mask_iou'] == 0.5
    assert diff['empty_mask_pairs'] == 0
    # Empty on both sides: counted apart, not as a perfect IoU.
    expected.pred_instances.masks[1] = False
    got.pred_instances.masks[1] = False
    diff = pipeline.compare_predictions('mmdet', expected, got)
    assert (diff['mask_pairs'], diff['empty_mask_pairs'],
            diff['min_mask_iou']) == (2, 1, 1.0)
    expected.pred_instances.masks[0] = False
    got.pred_instances.masks[0] = False
    diff = pipeline.compare_predictions('mmdet', expected, got)
    assert (diff['mask_pairs'], diff['empty_mask_pairs'],
            diff['min_mask_iou']) == (2, 2, None)


def test_deploy_configs_by_package_name():
    """--deploy-cfg mmnextvit::deploy/NAME.py reads this package's deploy
    config from any folder (docs/tutorial.md); a name it does not have is
    one error naming it and the form to use."""
    from mmnextvit.cli import ToolError
    cfg = pipeline.load_deploy_config(
        'mmnextvit::deploy/instance-seg_openvino-int8_dynamic.py')
    assert cfg.backend_config.type == 'openvino'
    assert 'quantization_config' in cfg
    with pytest.raises(ToolError) as info:
        pipeline.load_deploy_config('mmnextvit::deploy/nowhere.py')
    message = str(info.value)
    assert "'mmnextvit::deploy/nowhere.py' does not exist" in message
    assert 'mmnextvit::deploy/instance-seg_onnxruntime_dynamic.py' in message
    assert '\n' not in message
