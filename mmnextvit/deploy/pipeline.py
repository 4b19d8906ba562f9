# Copyright (c) mmnextvit contributors. All rights reserved.
"""Export a whole detector or segmentor with mmdeploy, run the exported
model, compare it with PyTorch and evaluate it.

Everything goes through mmdeploy's own machinery: ``torch2onnx`` for the
export, its task processor (``build_task_processor``) for the input
pipeline, the PyTorch and backend models and the test runner. What this
module adds: the checks a tool runs before any work (each a
:class:`~mmnextvit.cli.ToolError` naming the input and the fix), an export
that leaves nothing half-written, and the comparison of the two models'
predictions. The conversion to the deploy config's backend is mmdeploy's
too (its backend manager's ``to_backend``: the ONNX file itself for ONNX
Runtime, OpenVINO IR for OpenVINO), so every backend takes the same path.
"""
import copy
import importlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config

from mmnextvit.cli.errors import ToolError, first_line
from . import quantize

__all__ = [
    'MMDEPLOY_INSTALL', 'require_mmdeploy', 'load_deploy_config',
    'check_backend', 'check_task', 'export', 'build_models', 'predict',
    'compare_predictions', 'draw', 'evaluate', 'first_test_image',
    'ONNX_FILE', 'SDK_FILES', 'build_backend_model', 'at_export_size',
    'fit_onnx_for_sdk', 'SDK_RUNTIME'
]

MMDEPLOY_INSTALL = ('pip install --no-deps mmdeploy==1.3.1 && pip install '
                    '-r requirements/deploy.txt')
# What torch2onnx writes (onnx_config.save_file of configs/deploy/).
ONNX_FILE = 'end2end.onnx'
# What mmdeploy's export2SDK writes: the files mmdeploy_runtime's Detector /
# Segmentor load a work dir by (the model files, the pre- and
# post-processing, the export's settings).
SDK_FILES = ('deploy.json', 'pipeline.json', 'detail.json')
# mmdeploy's SDK (mmdeploy_runtime 1.3.1 from PyPI) runs ONNX Runtime work
# dirs with the ONNX Runtime it bundles, 1.15.1: a file of a newer IR
# version, or one that imports a newer opset of a domain, fails to load and
# the process then dies of a segmentation fault.
SDK_RUNTIME = 'mmdeploy_runtime 1.3.1 (ONNX Runtime 1.15.1)'
SDK_MAX_IR_VERSION = 9
SDK_MAX_OPSETS = {'': 19, 'ai.onnx': 19, 'ai.onnx.ml': 3}
# Tensor element types IR version 9 knows (up to FLOAT8E5M2FNUZ).
_IR9_LAST_TYPE = 20
# The step written into pipeline.json between the network and the Mask
# R-CNN post-processing (see _fit_sdk_pipeline).
SDK_SYNC_STEP = 'WaitForNetOutputs'
# The Python package each mmdeploy backend needs, and how to get it.
BACKEND_PACKAGES = {
    'onnxruntime': ('onnxruntime', 'pip install onnxruntime'),
    'tensorrt': ('tensorrt', 'install TensorRT and its Python package on a '
                 'machine with an NVIDIA GPU'),
    'openvino': ('openvino', 'pip install openvino'),
}


def require_mmdeploy() -> None:
    """Raises:
        ToolError: mmdeploy does not import."""
    try:
        importlib.import_module('mmdeploy')
    except ImportError as err:
        raise ToolError(
            f'mmdeploy is not installed ({first_line(err)}); install it with '
            f'{MMDEPLOY_INSTALL}') from None


def load_deploy_config(path: str) -> Config:
    """Read an mmdeploy deploy config: a file, or one of this package's
    as ``mmnextvit::deploy/<name>.py`` (from any folder, as a model config's
    ``_base_``).

    Raises:
        ToolError: the file is missing, does not parse or lacks the
            sections mmdeploy reads.
    """
    from mmnextvit.config_resolver import PREFIX, resolve
    if path.startswith(PREFIX):
        try:
            path = resolve(path)
        except FileNotFoundError:
            raise ToolError(
                f"deploy config '{path}' does not exist; pass one of "
                f'{PREFIX}deploy/*.py (configs/deploy/ of this package), '
                f'e.g. {PREFIX}deploy/instance-seg_onnxruntime_dynamic.py'
            ) from None
    if not osp.isfile(path):
        raise ToolError(
            f"deploy config '{path}' does not exist; pass one of "
            f'configs/deploy/*.py, e.g. '
            f'configs/deploy/instance-seg_onnxruntime_dynamic.py')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # mmengine raises many kinds for a bad file
        raise ToolError(f"deploy config '{path}' does not parse "
                        f'({type(err).__name__}: {first_line(err)}); fix '
                        f'it or pass another one') from None
    missing = [
        key for key in ('onnx_config', 'codebase_config', 'backend_config')
        if not isinstance(cfg.get(key), dict)
    ]
    if missing:
        raise ToolError(
            f"deploy config '{path}' has no {', '.join(missing)}; it is not "
            f'an mmdeploy deploy config (see configs/deploy/)')
    return cfg


def check_backend(deploy_cfg: Config) -> str:
    """The backend of ``deploy_cfg``, checked to be installed here (with
    mmdeploy's custom-operator library for ONNX Runtime).

    Raises:
        ToolError: the backend, or its operator library, is missing.
    """
    backend = deploy_cfg.backend_config.get('type')
    name = osp.basename(deploy_cfg.filename or 'the deploy config')
    if backend not in BACKEND_PACKAGES:
        raise ToolError(
            f"deploy config '{name}' uses backend {backend!r}; "
            f'tools/deployment/deploy.py runs {sorted(BACKEND_PACKAGES)}')
    package, how = BACKEND_PACKAGES[backend]
    if importlib.util.find_spec(package) is None:
        raise ToolError(
            f"backend '{backend}' of deploy config '{name}' is not "
            f'installed (no {package} package); {how}, or pass an '
            f'onnxruntime deploy config')
    if backend == 'onnxruntime':
        from mmdeploy.backend.onnxruntime.init_plugins import get_ops_path
        if not osp.isfile(get_ops_path()):
            raise ToolError(
                "mmdeploy's ONNX Runtime operator library "
                '(mmdeploy/lib/libmmdeploy_onnxruntime_ops.so) is missing; '
                f'reinstall the mmdeploy wheel: {MMDEPLOY_INSTALL}')
    return backend


def check_task(model_cfg: Config, deploy_cfg: Config) -> str:
    """The task package (``'mmdet'`` or ``'mmseg'``) shared by the model
    config and the deploy config.

    Raises:
        ToolError: they belong to different tasks.
    """
    from mmnextvit.cli.config import task_of
    task = task_of(model_cfg)
    codebase = deploy_cfg.codebase_config.get('type')
    if codebase != task:
        kind = {'mmdet': 'instance-seg', 'mmseg': 'segmentation'}[task]
        raise ToolError(
            f"deploy config '{osp.basename(deploy_cfg.filename)}' is for "
            f"{codebase!r} models but '{osp.basename(model_cfg.filename)}' "
            f'builds an {task!r} model; pass a configs/deploy/{kind}_*.py '
            f'config')
    return task


def _without_pretrained(model_cfg: Config) -> Config:
    """The weights come from the checkpoint: no backbone initialisation
    from files, no stock ``pretrained`` URL."""
    model_cfg = model_cfg.copy()
    if 'init_cfg' in model_cfg.model.get('backbone', {}):
        model_cfg.model.backbone.init_cfg = None
    model_cfg.model.pop('pretrained', None)
    return model_cfg


def at_export_size(model_cfg: Config, deploy_cfg: Config) -> Config:
    """``model_cfg`` with its test pipelines resizing every image to the
    static export's size, as mmdeploy's task processor resizes the one
    image it exports and compares on (``keep_ratio=False``: stretched, not
    letterboxed; mmdeploy's segmentor models, its SDK and
    demo/deployed_app.py resize the label map back whole, padding
    included, so a letterbox would need a crop none of them makes). The
    config itself for a dynamic deploy config.

    The test runner (``--test``) and int8's ``--max-drop`` read the test
    loader, so a static graph gets exactly the size it accepts."""
    from mmdeploy.utils import get_input_shape
    shape = get_input_shape(deploy_cfg)
    if shape is None:
        return model_cfg
    model_cfg = copy.deepcopy(model_cfg)  # Config.copy() shares the loaders
    pipelines = [model_cfg.get('test_pipeline')]
    loader = model_cfg.get('test_dataloader')
    if loader is not None:
        pipelines.append(loader.get('dataset', {}).get('pipeline'))
    for steps in pipelines:
        for step in steps or []:
            if str(step.get('type', '')).split('.')[-1] == 'Resize':
                step['scale'] = tuple(shape)
                step['keep_ratio'] = False
    return model_cfg


def _graph_nodes(nodes):
    """``nodes`` (a graph's or a function's) and those of their subgraphs
    (If, Loop)."""
    import onnx
    for node in nodes:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graph_nodes(attr.g.node)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graph_nodes(sub.node)


def _element_types(graph):
    for tensor in graph.initializer:
        yield tensor.data_type
    for info in (*graph.input, *graph.output, *graph.value_info):
        if info.type.HasField('tensor_type'):
            yield info.type.tensor_type.elem_type
    for node in _graph_nodes(graph.node):
        for attr in node.attribute:
            if attr.HasField('t'):
                yield attr.t.data_type


def fit_onnx_for_sdk(path: str) -> Optional[str]:
    """Make the ONNX file ``path`` one that mmdeploy's SDK
    (:data:`SDK_RUNTIME`) loads, where only the file's header stands in
    the way: opset imports of domains no node uses are dropped (ONNX
    Runtime's quantizer declares ai.onnx.ml 5, for one) and an IR version
    above 9 is lowered to 9 when the graph uses nothing newer. The file is
    rewritten only if something changed.

    Returns:
        None, or why the SDK still cannot load the file (an opset newer
        than its ONNX Runtime, a tensor type newer than IR version 9).
    """
    import onnx
    model = onnx.load(path, load_external_data=False)
    used = {''}
    for nodes in [model.graph.node] + [f.node for f in model.functions]:
        used.update(n.domain if n.domain != 'ai.onnx' else ''
                    for n in _graph_nodes(nodes))
    used.update(f.domain for f in model.functions)
    changed = False
    imports = list(model.opset_import)
    kept = [o for o in imports if (o.domain if o.domain != 'ai.onnx' else '')
            in used]
    if len(kept) < len(imports):
        del model.opset_import[:]
        model.opset_import.extend(kept)
        changed = True
    reasons = [
        f"it imports opset {o.version} of domain '{o.domain or 'ai.onnx'}' "
        f'(at most {SDK_MAX_OPSETS[o.domain]} there)' for o in kept
        if o.version > SDK_MAX_OPSETS.get(o.domain, o.version)
    ]
    # An IR version below what the opsets need would be a file no runtime
    # should read: lowered only where the SDK then loads it.
    if model.ir_version > SDK_MAX_IR_VERSION and not reasons:
        newest = max(_element_types(model.graph), default=0)
        if newest > _IR9_LAST_TYPE:
            reasons.append(
                f'it is ONNX IR version {model.ir_version} and holds '
                f'{onnx.TensorProto.DataType.Name(newest)} tensors (IR '
                f'version {SDK_MAX_IR_VERSION} at most there)')
        else:
            model.ir_version = SDK_MAX_IR_VERSION
            changed = True
    if changed:
        onnx.save(model, path)
    return '; '.join(reasons) or None


def _fit_sdk_pipeline(path: str) -> None:
    """Adjust the ``pipeline.json`` export2SDK wrote so that mmdeploy's SDK
    (:data:`SDK_RUNTIME`) gives the tool's Mask R-CNN predictions:

    - Its network module hands the outputs on while they are still being
      copied on the CPU stream's worker thread, and its Mask R-CNN
      post-processing (``ResizeInstanceMask``) reads the boxes and labels
      without waiting for that copy (the box-only ``ResizeBBox`` waits):
      at random, no detections, zero boxes with garbage labels, or an abort
      (open-mmlab/mmdeploy#2889). A transform step with no transforms
      between the two waits for the stream when it ends (mmdeploy's
      ``Compose`` does), so the post-processing reads finished outputs.
    - It keeps the mask pixels above ``mask_thr_binary``, mmdet those at or
      above it: the threshold written for it is the float32 just below, so
      that the two keep the same pixels. The detector's own test_cfg
      (``params.rcnn.mask_thr_binary``) keeps the value mmdet uses.
    """
    import numpy as np
    with open(path) as f:
        spec = json.load(f)
    tasks = spec['pipeline']['tasks']
    post = tasks[-1]
    if post.get('component') != 'ResizeInstanceMask':
        return
    net = next(t for t in tasks if t.get('module') == 'Net')
    copied = [f'{name}_copied' for name in net['output']]
    tasks.insert(
        len(tasks) - 1,
        dict(type='Task', module='Transform', name=SDK_SYNC_STEP,
             input=list(net['output']), output=copied, transforms=[]))
    renamed = dict(zip(net['output'], copied))
    post['input'] = [renamed.get(name, name) for name in post['input']]
    params = post.setdefault('params', {})
    threshold = np.float32(params.get('mask_thr_binary', 0.5))
    params['mask_thr_binary'] = float(
        np.nextafter(threshold, np.float32(-np.inf)))
    with open(path, 'w') as f:
        json.dump(spec, f, indent=4)


def export(model_cfg: Config,
           deploy_cfg: Config,
           checkpoint: str,
           image: str,
           work_dir: str,
           device: str = 'cpu',
           calib_images: Optional[int] = None,
           max_drop: Optional[float] = None,
           val_images: int = 50) -> List[str]:
    """Export the model with ``mmdeploy.apis.torch2onnx`` and convert it
    for the deploy config's backend with mmdeploy's backend manager
    (``to_backend``) into ``work_dir``: the ``.onnx`` file, the backend's
    files (OpenVINO: ``end2end.xml`` and ``end2end.bin``; ONNX Runtime
    runs the ``.onnx`` file itself), ``deploy_cfg.py`` and ``model_cfg.py``
    (the configs as resolved), and mmdeploy's SDK files (``deploy.json``,
    ``pipeline.json``, ``detail.json``, written by mmdeploy's
    ``export2SDK``) through which ``mmdeploy_runtime`` and
    ``demo/deployed_app.py`` run the work dir. A deploy config with a
    ``quantization_config`` section (``configs/deploy/*-int8_*.py``) then
    gets its backend model quantized to int8, calibrated on
    ``calib_images`` (default: the section's ``calib_images``) images of
    the model config's training set (:func:`.quantize.quantize_work_dir`;
    with ``max_drop``, checked on ``val_images`` other training images).
    Returns the files the backend model is built from
    (:func:`build_models`).

    Everything is written into a temporary folder beside ``work_dir`` and
    moved in only when the export and the conversion succeeded, so a
    failure leaves ``work_dir`` as it was.

    Raises:
        ToolError: the export or the conversion failed (one line from the
            exporter or the converter).
    """
    from mmdeploy.apis import torch2onnx
    from mmdeploy.backend.base import get_backend_manager
    from mmdeploy.backend.sdk.export_info import export2SDK

    from mmnextvit.compat.mmdeploy import install
    install()
    model_cfg = _without_pretrained(model_cfg)
    save_file = deploy_cfg.onnx_config.get('save_file', ONNX_FILE)
    backend = deploy_cfg.backend_config.type
    parent = osp.dirname(osp.abspath(work_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        prefix=f'.{osp.basename(osp.abspath(work_dir))}.', dir=parent)
    try:
        try:
            torch2onnx(image, staging, save_file, deploy_cfg, model_cfg,
                       checkpoint, device)
        except ToolError:
            raise
        except Exception as err:  # the exporter raises many kinds
            raise ToolError(
                f'the export failed ({type(err).__name__}: '
                f'{first_line(err)}); see the log above') from None
        try:
            backend_files = get_backend_manager(backend).to_backend(
                [osp.join(staging, save_file)], staging, deploy_cfg,
                device=device)
        except Exception as err:  # each backend's converter has its own
            raise ToolError(
                f'the conversion of {save_file} for {backend} failed '
                f'({type(err).__name__}: {first_line(err)}); see the log '
                f'above') from None
        options = quantize.settings(deploy_cfg)
        if options is not None:
            backend_files = quantize.quantize_work_dir(
                at_export_size(model_cfg, deploy_cfg), deploy_cfg, options,
                staging, backend_files, calib_images, max_drop, val_images)
            shutil.rmtree(osp.join(staging, 'max_drop'), ignore_errors=True)
            onnx_file = osp.join(staging, save_file)
            if backend != 'onnxruntime' and osp.isfile(onnx_file):
                # The ONNX file the engine's float model was converted from:
                # named as the float files are, so that every file of an
                # int8 work dir without the suffix is the int8 model.
                os.replace(onnx_file,
                           quantize.float_files([onnx_file])[0])
        if backend == 'onnxruntime':
            for name in sorted(os.listdir(staging)):
                if name.endswith('.onnx'):
                    why = fit_onnx_for_sdk(osp.join(staging, name))
                    if why:
                        print(f'{SDK_RUNTIME} cannot load {name}: {why}; '
                              f'ONNX Runtime itself and '
                              f'demo/deployed_app.py run it')
        deploy_cfg.dump(osp.join(staging, 'deploy_cfg.py'))
        model_cfg.dump(osp.join(staging, 'model_cfg.py'))
        try:
            # Copies: export2SDK writes its post-processing parameters into
            # the model config's test_cfg.
            export2SDK(
                copy.deepcopy(deploy_cfg),
                copy.deepcopy(model_cfg),
                staging,
                pth=osp.abspath(checkpoint),
                device=device)
        except Exception as err:  # it reads many parts of both configs
            raise ToolError(
                f"mmdeploy's export2SDK failed to write {', '.join(SDK_FILES)}"
                f' ({type(err).__name__}: {first_line(err)}); the model '
                f"config's test_pipeline or data_preprocessor is not one "
                f'mmdeploy describes') from None
        _fit_sdk_pipeline(osp.join(staging, 'pipeline.json'))
        os.makedirs(work_dir, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(osp.join(staging, name), osp.join(work_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [osp.join(work_dir, osp.basename(f)) for f in backend_files]


def build_models(model_cfg: Config,
                 deploy_cfg: Config,
                 checkpoint: str,
                 backend_files: Sequence[str],
                 device: str = 'cpu'):
    """mmdeploy's task processor, the PyTorch model as mmdeploy exports it
    (``switch_to_deploy`` applied) and the backend model.

    Returns:
        tuple: ``(task_processor, pytorch_model, backend_model)``.
    """
    from mmdeploy.apis.utils import build_task_processor

    from mmnextvit.compat.mmdeploy import install
    install()
    model_cfg = at_export_size(_without_pretrained(model_cfg), deploy_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, device)
    pytorch_model = processor.build_pytorch_model(checkpoint)
    backend_model = processor.build_backend_model(
        list(backend_files),
        data_preprocessor_updater=processor.update_data_preprocessor)
    return processor, pytorch_model, backend_model


def build_backend_model(processor, backend_files: Sequence[str]):
    """mmdeploy's backend model of ``backend_files`` (e.g. the float model
    beside an int8 one, :func:`.quantize.float_files`)."""
    return processor.build_backend_model(
        list(backend_files),
        data_preprocessor_updater=processor.update_data_preprocessor)


def predict(processor, model, image: str, deploy_cfg: Config):
    """``model``'s data sample for ``image``, through the task processor's
    input pipeline (the export's fixed size for a static config)."""
    from mmdeploy.utils import get_input_shape
    data, _ = processor.create_input(image, get_input_shape(deploy_cfg))
    with torch.no_grad():
        return model.test_step(data)[0]


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def _compare_detections(expected, got, score_thr: float) -> Dict[str, Any]:
    """Match every PyTorch detection scoring at least ``score_thr`` to the
    exported model's detection of the same label with the highest box IoU,
    and measure how far the matched pairs are apart."""
    keep = expected.scores >= score_thr
    ref_boxes, ref_scores = expected.bboxes[keep], expected.scores[keep]
    ref_labels = expected.labels[keep]
    ref_masks = expected.masks[keep] if 'masks' in expected else None
    boxes, scores, labels = got.bboxes, got.scores, got.labels
    result = dict(
        detections=int(keep.sum()),
        exported_detections=int((got.scores >= score_thr).sum()),
        unmatched=0,
        max_box_diff=0.0,
        max_score_diff=0.0,
        mask_pairs=0,
        empty_mask_pairs=0,
        min_mask_iou=None)
    if len(ref_boxes) == 0:
        return result
    iou = _box_iou(ref_boxes, boxes) if len(boxes) else torch.zeros(
        len(ref_boxes), 0)
    iou[ref_labels[:, None] != labels[None, :]] = -1
    for i in range(len(ref_boxes)):
        if iou.shape[1] == 0 or iou[i].max() < 0.5:
            result['unmatched'] += 1
            continue
        j = int(iou[i].argmax())
        result['max_box_diff'] = max(
            result['max_box_diff'],
            float((ref_boxes[i] - boxes[j]).abs().max()))
        result['max_score_diff'] = max(
            result['max_score_diff'], float((ref_scores[i] - scores[j]).abs()))
        if ref_masks is not None and 'masks' in got:
            a = torch.as_tensor(ref_masks[i]).bool()
            b = torch.as_tensor(got.masks[j]).bool()
            union = (a | b).sum()
            result['mask_pairs'] += 1
            if not union:
                # Two empty masks agree, but show nothing of the masks:
                # counted apart, never as a perfect IoU.
                result['empty_mask_pairs'] += 1
                continue
            mask_iou = float((a & b).sum() / union)
            result['min_mask_iou'] = mask_iou if result[
                'min_mask_iou'] is None else min(result['min_mask_iou'],
                                                 mask_iou)
    return result


def compare_predictions(task: str,
                        expected,
                        got,
                        score_thr: float = 0.05) -> Dict[str, Any]:
    """How far the exported model's prediction for one image is from
    PyTorch's.

    Detection (``task='mmdet'``): the counts, the PyTorch detections with
    no exported one of the same label and box IoU >= 0.5 (``unmatched``),
    and over the matched pairs the largest box coordinate difference in
    pixels, the largest score difference and the smallest mask IoU
    (``min_mask_iou``, over the pairs where either mask has a pixel; None
    when there is none; ``mask_pairs`` says how many pairs had masks on
    both sides, ``empty_mask_pairs`` how many of those were both empty).
    Segmentation: the share of pixels whose labels differ.
    """
    if task == 'mmdet':
        return _compare_detections(expected.pred_instances,
                                   got.pred_instances, score_thr)
    ref = expected.pred_sem_seg.data.cpu()
    out = got.pred_sem_seg.data.cpu().to(ref.dtype)
    if ref.shape != out.shape:
        return dict(label_shape=tuple(out.shape),
                    expected_shape=tuple(ref.shape), label_mismatch=1.0)
    return dict(
        pixels=int(ref.numel()),
        label_mismatch=float((ref != out).float().mean()))


def draw(processor, image: str, prediction, out_dir: str,
         score_thr: float = 0.3) -> str:
    """Draw ``prediction`` (a data sample of the exported model) on
    ``image`` with the task's visualiser (mmdet's ``DetLocalVisualizer``,
    mmseg's ``SegLocalVisualizer``); returns the picture's path."""
    import mmcv
    os.makedirs(out_dir, exist_ok=True)
    name = osp.splitext(osp.basename(image))[0]
    out_file = osp.join(out_dir, f'{name}.png')
    visualizer = processor.get_visualizer('mmnextvit_deploy', out_dir)
    extra = {} if 'pred_sem_seg' in prediction else dict(
        pred_score_thr=score_thr)
    visualizer.add_datasample(
        name,
        mmcv.imread(image, channel_order='rgb'),
        data_sample=prediction.cpu(),
        draw_gt=False,
        show=False,
        out_file=out_file,
        **extra)
    return out_file


def evaluate(processor,
             backend_model,
             work_dir: str,
             show_dir: Optional[str] = None) -> Dict[str, float]:
    """Run the model config's test loop and evaluator on ``backend_model``
    with mmdeploy's test runner; returns the metrics (the runner logs
    them as ``tools/test.py`` does).

    The loader's worker processes end with the evaluation: a persistent
    loader (mmdet's default) keeps them until the interpreter exits,
    where joining them after OpenVINO had run more models in this process
    (``deploy.py --test --time-runs`` on an int8 Mask R-CNN) ended the
    tool with a segmentation fault (exit code 139) once all its results
    were printed."""
    loader = copy.deepcopy(processor.model_cfg.test_dataloader)
    loader['persistent_workers'] = False
    runner = processor.build_test_runner(
        backend_model, work_dir, dataloader=loader, show_dir=show_dir)
    return runner.test()


def first_test_image(model_cfg: Config) -> Optional[str]:
    """The first image of the config's test set, or None."""
    from mmengine.registry import DATASETS
    try:
        dataset_cfg = model_cfg.test_dataloader.dataset.copy()
        dataset_cfg['lazy_init'] = False
        dataset = DATASETS.build(dataset_cfg)
        return dataset.get_data_info(0)['img_path'] if len(dataset) else None
    except Exception:  # a test set that cannot be read: no default image
        return None
