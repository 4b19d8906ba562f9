# Copyright (c) mmnextvit contributors. All rights reserved.
"""Post-training int8 quantization of exported models, calibrated on real
images: NNCF for OpenVINO IR, ``onnxruntime.quantization`` (static QDQ) for
ONNX Runtime.

mmdeploy 1.3.1 quantizes for TensorRT and ncnn only; this module adds the
CPU engines. ``tools/deployment/deploy.py`` calls :func:`quantize_work_dir`
when the deploy config has a ``quantization_config`` section (the
``*-int8_*`` configs of ``configs/deploy/``), and the benchmark calls
:func:`quantize_file` for ``--precision int8``, so both quantize alike.

What is quantized: the convolutions and matrix products of the backbone,
neck and heads (their weights per output channel, signed, and 7-bit in ONNX
Runtime so that x86 CPUs without VNNI compute them exactly; their inputs per
tensor, unsigned in ONNX Runtime). What stays in float: the
post-processing the export writes outside any layer (box decoding, NMS,
top-k, the RoI extractor's box inputs, the resize of the logits and the
argmax), found by the module scope of each node as in
:func:`mmnextvit.deploy.engines.part_of`, attention's products of two
activations (``float_attention``), and whatever the section's
``float_scopes``, ``ignored_names`` and ``ignored_types`` add.
"""
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmnextvit.cli.errors import ToolError, first_line
from . import engines

__all__ = [
    'DEFAULTS', 'BACKENDS', 'NNCF_INSTALL', 'settings', 'require',
    'float_nodes', 'quantize_file', 'training_images', 'calibration_inputs',
    'quantize_work_dir', 'generated_inputs', 'float_files', 'paired_metrics',
    'largest_drop', 'KEY_METRICS', 'training_split', 'IMAGE_SUFFIXES',
    'folder_images', 'calibration_images', 'inference_precision',
    'time_pair'
]

NNCF_INSTALL = 'pip install -e .[deploy] (or pip install nncf==3.4.0)'
# The engines this module quantizes for, by mmdeploy backend type.
BACKENDS = ('openvino', 'onnxruntime')
# The keys of a deploy config's ``quantization_config`` and their defaults.
DEFAULTS = dict(
    # Images of the model config's training set, evenly spaced over it
    # (with calib_dir: at most this many of that folder's).
    calib_images=100,
    # A folder of the user's own images, unlabelled, to calibrate on
    # instead of the training set (deploy.py --calib-dir).
    calib_dir=None,
    # NNCF: 'mixed' (asymmetric activations) or 'performance' (symmetric).
    preset='mixed',
    # NNCF's ModelType: None (a CNN) or 'transformer' (also quantizes the
    # attention's products and some element-wise nodes).
    model_type=None,
    # Layers kept in float, by module name (e.g. 'bbox_head').
    float_scopes=[],
    # Nodes kept in float besides the post-processing: exact names, and
    # operator types (OpenVINO: 'MatMul'; ONNX Runtime: 'MatMul').
    ignored_names=[],
    ignored_types=[],
    # ONNX Runtime: an activation's range is the mean over the calibration
    # images of each one's min / max (as NNCF does), not the extremes of
    # all of them.
    ort_moving_average=True,
    # Attention's activation-by-activation products (query x key, weights
    # x value) in float: their operands change from image to image.
    float_attention=True,
)


def settings(deploy_cfg) -> Optional[dict]:
    """The deploy config's ``quantization_config`` merged with
    :data:`DEFAULTS`, or None for a float config.

    Raises:
        ToolError: an unknown key or a value of the wrong kind, or a
            backend this module does not quantize for.
    """
    section = deploy_cfg.get('quantization_config')
    if section is None:
        return None
    name = osp.basename(deploy_cfg.filename or 'the deploy config')
    unknown = sorted(set(section) - set(DEFAULTS) - {'type'})
    if unknown:
        raise ToolError(
            f"deploy config '{name}': quantization_config has unknown keys "
            f'{unknown}; it takes {sorted(DEFAULTS)}')
    backend = deploy_cfg.backend_config.get('type')
    if backend not in BACKENDS:
        raise ToolError(
            f"deploy config '{name}' asks for int8 (quantization_config) "
            f"on backend '{backend}', which this tool does not quantize; "
            f'use an openvino or onnxruntime int8 config '
            f'(configs/deploy/*-int8_*.py), or mmdeploy\'s calib_config for '
            f'TensorRT')
    merged = dict(DEFAULTS, **{k: v for k, v in section.items()
                               if k != 'type'})
    if not isinstance(merged['calib_images'], int) or \
            merged['calib_images'] < 1:
        raise ToolError(
            f"deploy config '{name}': quantization_config.calib_images must "
            f'be a positive integer, not {merged["calib_images"]!r}')
    if merged['calib_dir'] is not None and not isinstance(
            merged['calib_dir'], str):
        raise ToolError(
            f"deploy config '{name}': quantization_config.calib_dir must "
            f'be a folder path or None, not {merged["calib_dir"]!r}')
    if merged['preset'] not in ('performance', 'mixed'):
        raise ToolError(
            f"deploy config '{name}': quantization_config.preset must be "
            f"'performance' or 'mixed', not {merged['preset']!r}")
    if merged['model_type'] not in (None, 'transformer'):
        raise ToolError(
            f"deploy config '{name}': quantization_config.model_type must "
            f"be None or 'transformer', not {merged['model_type']!r}")
    return merged


def require(backend: str) -> None:
    """Raises:
        ToolError: the quantizer of ``backend`` does not import."""
    if backend == 'openvino':
        try:
            import nncf  # noqa: F401
        except ImportError as err:
            raise ToolError(
                f'int8 for OpenVINO needs NNCF, which is not installed '
                f'({first_line(err)}); install it with {NNCF_INSTALL}'
            ) from None
    else:
        try:
            import onnxruntime.quantization  # noqa: F401
        except ImportError as err:
            raise ToolError(
                f'int8 for ONNX Runtime needs onnxruntime.quantization '
                f'({first_line(err)}); pip install onnxruntime') from None


def _attention_products(names_types_inputs) -> List[str]:
    """MatMul nodes both of whose operands are computed (no weight)."""
    return [
        name for name, op_type, constant_inputs in names_types_inputs
        if op_type == 'MatMul' and not constant_inputs
    ]


def float_nodes(nodes: Dict[str, Optional[str]],
                scopes: Optional[Dict[str, str]],
                float_scopes: Sequence[str] = ()) -> List[str]:
    """The nodes of ``nodes`` (name -> producer of its first input) that
    stay in float: those of the post-processing (:func:`engines.part_of`;
    a node without a scope takes its producer's part), and those inside a
    layer named in ``float_scopes`` (a module name anywhere in the node's
    scope: ``bbox_head`` for ``/roi_head/bbox_head/shared_fcs.0/Gemm``).
    With ``scopes=None`` (a backbone alone) only the latter."""
    found = []
    for node in nodes:
        seen, current, part, inside = set(), node, None, False
        while part is None and current is not None and current not in seen:
            seen.add(current)
            path = current.split(' ')[-1].strip('/').split('/')[:-1]
            inside = inside or any(p in float_scopes for p in path)
            part = (engines.part_of(current, scopes)
                    if scopes is not None else 'backbone')
            current = nodes.get(current)
        if inside or (part or 'post-processing') == 'post-processing':
            found.append(node)
    return found


def _openvino(path: str, out: str, inputs: Sequence[np.ndarray],
              scopes, options: dict) -> None:
    import nncf
    import openvino as ov
    # An ONNX file goes through OpenVINO's conversion (its MOC passes, as
    # the deploy tool's IR does), not straight into read_model: read_model
    # leaves each grouped convolution's weights behind a Reshape whose
    # shape is computed in the graph, NNCF then sizes their per-channel
    # ranges from the 4-D constant behind it ([G, O/G, 1, 1, kW] on the
    # 5-D weights), which the CPU plugin's low-precision passes cannot
    # move through the GroupConvolution: those ran in float (Next-ViT-S:
    # all 20 convolutions of the convolutional attention).
    model = (ov.convert_model(path) if path.endswith('.onnx') else
             ov.Core().read_model(path))
    nodes, described = {}, []
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        nodes[name] = (op.input_value(0).get_node().get_friendly_name()
                       if op.get_input_size() else None)
        constant = [
            op.input_value(i).get_node().get_type_name()
            in ('Constant', 'Convert') for i in range(op.get_input_size())
        ]
        described.append((name, op.get_type_name(), any(constant)))
    # OpenVINO's conversion fuses softmax(q k^T * scale) v into one
    # ScaledDotProductAttention node, whose query and key NNCF quantizes.
    fused_attention = [
        name for name, op_type, _ in described
        if op_type == 'ScaledDotProductAttention'
    ]
    names = float_nodes(nodes, scopes, options['float_scopes']) + list(
        options['ignored_names'])
    if options['float_attention']:
        names += _attention_products(described) + fused_attention
    ignored = nncf.IgnoredScope(
        names=sorted(set(names)),
        types=list(options['ignored_types']),
        validate=False)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(inputs)),
        preset=nncf.QuantizationPreset(options['preset']),
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(inputs),
        model_type=(nncf.ModelType.TRANSFORMER
                    if options['model_type'] == 'transformer' else None),
        ignored_scope=ignored)
    ov.save_model(quantized, out, compress_to_fp16=False)


_ORT_OP_TYPES = ('Conv', 'MatMul', 'Gemm')
# The opset a per-channel QDQ model needs (DequantizeLinear's axis).
_QDQ_OPSET = 13


def _onnxruntime(path: str, out: str, inputs: Sequence[np.ndarray],
                 scopes, options: dict) -> None:
    import tempfile

    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader,
                                          CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(
            prefix='.int8-', dir=osp.dirname(osp.abspath(out))) as folder:
        model = onnx.load(path)
        opset = next(o.version for o in model.opset_import
                     if o.domain in ('', 'ai.onnx'))
        if opset < _QDQ_OPSET:
            # Per-channel DequantizeLinear (its axis) needs opset 13; the
            # deploy configs export at opset 11.
            model = version_converter.convert_version(model, _QDQ_OPSET)
        converted = osp.join(folder, 'converted.onnx')
        onnx.save(model, converted)
        del model
        # ONNX Runtime's own preparation (its basic graph optimisations,
        # shapes): the TorchScript exporter feeds convolution biases
        # through Identity nodes, and a convolution whose bias is not a
        # constant keeps a float kernel between (de)quantize nodes instead
        # of becoming a QLinearConv (ResNet-101: 6 of 104 in int8 without
        # it). Symbolic shape inference is skipped: it fails on the
        # detectors' NMS and RoI graphs.
        prepared = osp.join(folder, 'prepared.onnx')
        quant_pre_process(converted, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared, load_external_data=False).graph
        input_name = graph.input[0].name
        made_by = {o: node.name for node in graph.node for o in node.output}
        constants = {init.name for init in graph.initializer} | {
            o
            for node in graph.node if node.op_type == 'Constant'
            for o in node.output
        }
        nodes = {
            node.name: made_by.get(node.input[0]) if node.input else None
            for node in graph.node
        }
        names = float_nodes(nodes, scopes, options['float_scopes']) + list(
            options['ignored_names'])
        if options['float_attention']:
            names += _attention_products([
                (node.name, node.op_type,
                 any(i in constants for i in node.input))
                for node in graph.node
            ])
        del graph

        class Reader(CalibrationDataReader):
            """The calibration inputs, one feed at a time."""

            def __init__(self):
                self.feeds = iter(inputs)

            def get_next(self):
                feed = next(self.feeds, None)
                return None if feed is None else {input_name: feed}

        quantize_static(
            prepared,
            out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=[
                t for t in _ORT_OP_TYPES
                if t not in options['ignored_types']
            ],
            per_channel=True,
            # 7-bit weights: on x86 without VNNI (AVX2, AVX-512 without
            # VNNI) ONNX Runtime multiplies u8 activations by s8 weights
            # with vpmaddubsw, which adds two products into 16 bits and
            # saturates with full-range weights (2 x 255 x 127 > 32767);
            # signed activations take the same kernel. With 7 bits the sums
            # fit, so the file computes what it says on every x86 CPU, VNNI
            # or not. Next-ViT-S at 512x512 on an AVX2 CPU: the kernels
            # differed from the file's own arithmetic by 0.065 (norm) with
            # 8-bit weights, 0.002 with 7; the file's error against fp32
            # went from 0.018 to 0.019, its speed the same. u8 weights
            # avoid it too but ran 1.3x slower.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(set(names)),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=dict(
                ActivationSymmetric=False,
                WeightSymmetric=True,
                CalibMovingAverage=options['ort_moving_average']))


def quantize_file(backend: str, path: str, out: str,
                  inputs: Sequence[np.ndarray],
                  scopes: Optional[Dict[str, str]] = None,
                  options: Optional[dict] = None) -> str:
    """Quantize the model file ``path`` (OpenVINO: an ``.xml`` or ``.onnx``
    file; ONNX Runtime: an ``.onnx`` file) to int8 into ``out``
    (``.xml`` / ``.onnx``), calibrated on ``inputs`` (the model's
    preprocessed inputs). ``scopes`` (:func:`engines.head_scopes`) marks the
    post-processing to keep in float; None for a backbone alone. Returns
    ``out``.

    Raises:
        ToolError: the quantizer is missing or fails.
    """
    require(backend)
    options = dict(DEFAULTS, **(options or {}))
    run = _openvino if backend == 'openvino' else _onnxruntime
    try:
        run(path, out, inputs, scopes, options)
    except ToolError:
        raise
    except Exception as err:  # each quantizer raises its own kinds
        raise ToolError(
            f'the int8 quantization of {osp.basename(path)} for {backend} '
            f'failed ({type(err).__name__}: {first_line(err)}); keep the '
            f"failing nodes in float with quantization_config's "
            f'ignored_names / ignored_types') from None
    return out


def _all_training_images(model_cfg):
    """``(present, listed)``: the image paths of the model config's
    training set found on disk, and how many it lists.

    Raises:
        ToolError: the training set cannot be read.
    """
    from mmengine.registry import DATASETS
    name = osp.basename(model_cfg.filename or 'the model config')
    try:
        dataset_cfg = model_cfg.train_dataloader.dataset.copy()
        while 'dataset' in dataset_cfg and 'ann_file' not in dataset_cfg:
            dataset_cfg = dataset_cfg.dataset.copy()  # RepeatDataset & co.
        dataset_cfg['lazy_init'] = False
        dataset_cfg['pipeline'] = []
        dataset = DATASETS.build(dataset_cfg)
        paths = [
            dataset.get_data_info(i)['img_path'] for i in range(len(dataset))
        ]
    except Exception as err:  # a dataset raises many kinds
        raise ToolError(
            f"int8 calibration reads the training set of '{name}', which "
            f'cannot be read ({type(err).__name__}: {first_line(err)}); fix '
            f'train_dataloader.dataset (data_root, ann_file, data_prefix)'
        ) from None
    return [p for p in paths if osp.isfile(p)], len(paths)


def _evenly(paths: Sequence[str], count: int) -> List[str]:
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def training_images(model_cfg, count: int) -> List[str]:
    """``count`` image paths evenly spaced over the model config's
    training set.

    Raises:
        ToolError: the training set cannot be read or is too small.
    """
    name = osp.basename(model_cfg.filename or 'the model config')
    present, listed = _all_training_images(model_cfg)
    if len(present) < count:
        missing = listed - len(present)
        raise ToolError(
            f"int8 calibration asks for {count} images of the training set "
            f"of '{name}', which has {len(present)}"
            + (f' ({missing} listed but missing on disk)' if missing else '')
            + f'; pass --calib-images {len(present)} or fewer, or add '
            f'training images')
    return _evenly(present, count)


# What calibration reads from a folder (calib_dir), by file suffix.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def _image_files(folder: str) -> List[str]:
    if not osp.isdir(folder):
        raise ToolError(
            f"--calib-dir '{folder}' is not a folder; pass a folder of "
            f'images to calibrate int8 on')
    found = sorted(
        osp.join(root, name) for root, _, names in os.walk(folder)
        for name in names if name.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise ToolError(
            f"--calib-dir '{folder}' holds no images "
            f'({", ".join(IMAGE_SUFFIXES)}); put the images to calibrate '
            f'int8 on there')
    return found


def folder_images(folder: str, count: int) -> List[str]:
    """``count`` image files (:data:`IMAGE_SUFFIXES`) evenly spaced over
    those in ``folder`` and its subfolders, by path.

    Raises:
        ToolError: ``folder`` is not a folder, holds fewer than ``count``
            images, or one of those chosen does not read as an image.
    """
    import cv2
    found = _image_files(folder)
    if len(found) < count:
        raise ToolError(
            f"int8 calibration asks for {count} images and --calib-dir "
            f"'{folder}' has {len(found)}; pass --calib-images "
            f'{len(found)} or fewer, or add images')
    chosen = _evenly(found, count)
    for path in chosen:
        if cv2.imread(path) is None:
            raise ToolError(
                f"--calib-dir: '{path}' does not read as an image; remove "
                f'it or replace it with an image file')
    return chosen


def calibration_images(model_cfg, options: dict,
                       count: Optional[int] = None) -> List[str]:
    """The images int8 calibrates on: ``count`` (default: the settings'
    ``calib_images``) of the training set, evenly spaced; or, with the
    settings' ``calib_dir``, ``count`` of that folder's images (default:
    all of them, at most ``calib_images``).

    Raises:
        ToolError: too few images, or a folder that cannot be read.
    """
    folder = options.get('calib_dir')
    if folder:
        if count is None:
            count = min(len(_image_files(folder)), options['calib_images'])
        return folder_images(folder, count)
    return training_images(model_cfg, count or options['calib_images'])


def calibration_inputs(processor, deploy_cfg,
                       images: Sequence[str]) -> List[np.ndarray]:
    """The model inputs of the image files ``images``, each through the
    model config's test pipeline and data preprocessor (mmdeploy's task
    processor ``processor``, at the export's fixed size for a static
    deploy config): what the exported graph sees at test time."""
    import torch
    from mmdeploy.utils import get_input_shape
    preprocessor = processor.build_data_preprocessor()
    shape = get_input_shape(deploy_cfg)
    inputs = []
    with torch.no_grad():
        for path in images:
            _, tensor = processor.create_input(path, shape, preprocessor)
            inputs.append(tensor.cpu().numpy().astype(np.float32))
    return inputs


def float_files(backend_files: Sequence[str]) -> List[str]:
    """Where :func:`quantize_work_dir` keeps the float model of the int8
    model ``backend_files``: the same names with the suffix ``_fp32``."""
    return ['_fp32'.join(osp.splitext(f)) for f in backend_files]


def quantize_work_dir(model_cfg,
                      deploy_cfg,
                      options: dict,
                      folder: str,
                      backend_files: List[str],
                      calib_images: Optional[int] = None,
                      max_drop: Optional[float] = None,
                      val_images: int = 50) -> List[str]:
    """Quantize the backend model that ``export`` wrote into ``folder``,
    in place: the float model keeps its files under the suffix ``_fp32``
    (:func:`float_files`), and the int8 model takes the names mmdeploy's
    backend model and SDK load. With ``max_drop``, the int8 and the float
    model are then evaluated on ``val_images`` other images of the training
    set (:func:`paired_metrics`), and a drop of a key metric beyond
    ``max_drop`` raises. The calibration images are those of
    :func:`calibration_images` (``calib_images`` overrides the count).
    Returns the backend files.

    Raises:
        ToolError: the quantization failed, or the accuracy target was
            missed.
    """
    from mmdeploy.apis.utils import build_task_processor

    from mmnextvit.cli import build_model
    backend = deploy_cfg.backend_config.type
    images = calibration_images(model_cfg, options, calib_images)
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    inputs = calibration_inputs(processor, deploy_cfg, images)
    scopes = engines.head_scopes(build_model(model_cfg))
    (float_file, ) = float_files(backend_files[:1])
    source, stem = backend_files[0], osp.splitext(backend_files[0])[0]
    os.replace(source, float_file)
    if source.endswith('.xml'):
        os.replace(f'{stem}.bin', f'{stem}_fp32.bin')
    quantize_file(backend, float_file, source, inputs, scopes, options)
    source_name = (f"images of {options['calib_dir']}"
                   if options.get('calib_dir') else 'training images')
    print(f'int8: {backend} model quantized on {len(images)} '
          f'{source_name}; the float model is {osp.basename(float_file)}')
    if max_drop is not None:
        name, fp32, int8 = paired_metrics(model_cfg, deploy_cfg,
                                          backend_files, images, val_images,
                                          osp.join(folder, 'max_drop'))
        print(f'int8 on {val_images} other training images: {name} '
              f'{int8:.4f} against {fp32:.4f} in float (drop '
              f'{fp32 - int8:.4f}, --max-drop {max_drop})')
        if fp32 - int8 > max_drop:
            raise ToolError(
                f'int8 misses the accuracy target: {name} drops by '
                f'{fp32 - int8:.4f} ({fp32:.4f} -> {int8:.4f}) on '
                f'{val_images} training images, more than --max-drop '
                f'{max_drop}; keep more nodes in float (quantization_config'
                f'.ignored_names / ignored_types, float_attention=True), '
                f'try the other preset, or raise --max-drop')
    return backend_files


def inference_precision(deploy_cfg) -> str:
    """The precision the tool evaluates an exported model in and
    ``demo/deployed_app.py`` runs it in: the deploy config's
    ``backend_config.precision`` (mmdeploy's key), fp32 by default. For an
    OpenVINO int8 model it is the precision of the nodes left in float,
    which is why the speed and the accuracy of one file must be measured
    under the same one."""
    return deploy_cfg.backend_config.get('precision', 'fp32')


def time_pair(backend: str, files: Sequence[str], feed: np.ndarray,
              runs: int, precision: str = 'fp32',
              threads: Optional[int] = None) -> List[float]:
    """Median milliseconds of one forward of each model file in ``files``
    on ``feed`` (OpenVINO at ``precision``; ONNX Runtime runs each file as
    it is), timed as the benchmark times (one untimed forward each, then
    ``runs`` rounds in which the files take turns, so that a change in the
    machine's load hits each alike)."""
    import functools
    import statistics
    from mmnextvit.analysis.latency import Candidate, run_rounds
    candidates = [
        Candidate(
            name,
            functools.partial(
                engines.predictor(backend, precision, name, threads), feed),
            flops=None,
            group='deployed',
            engine=backend) for name in files
    ]
    run_rounds(candidates, runs, warmup=1, device='cpu', progress=False)
    return [statistics.median(c.times) for c in candidates]


def training_split(model_cfg, images: Sequence[str],
                   work_dir: Optional[str] = None):
    """``model_cfg`` with its test loader and evaluator on the training
    images ``images`` (paths), through the test pipeline. With
    ``work_dir``, a COCO-style evaluator (one with an ``ann_file``) gets an
    annotation file of those images alone, written there: COCO's evaluation
    counts every image of the file it reads, so the training set's whole
    file would count the images not evaluated as missed (the AP of 50
    images of 300 would read about a sixth of their own). Without it the
    evaluator is left as it is, for callers that read the loader only."""
    from mmengine.registry import DATASETS
    cfg = copy.deepcopy(model_cfg)  # Config.copy() shares the loaders
    train = cfg.train_dataloader.dataset
    while 'dataset' in train and 'ann_file' not in train:
        train = train.dataset
    dataset = copy.deepcopy(dict(train))
    dataset['test_mode'] = True  # all images, none filtered out
    dataset.pop('indices', None)
    listing = DATASETS.build(dict(dataset, pipeline=[], lazy_init=False))
    where = {
        listing.get_data_info(i)['img_path']: i
        for i in range(len(listing))
    }
    dataset['indices'] = [where[path] for path in images]
    dataset['pipeline'] = cfg.test_dataloader.dataset.pipeline
    cfg.test_dataloader.dataset = dataset
    evaluator = cfg.test_evaluator
    if work_dir and isinstance(evaluator, dict) and 'ann_file' in evaluator:
        source = osp.join(dataset.get('data_root', ''), dataset['ann_file'])
        ids = {listing.get_data_info(where[path])['img_id'] for path in images}
        with open(source) as f:
            coco = json.load(f)
        coco['images'] = [i for i in coco['images'] if i['id'] in ids]
        coco['annotations'] = [
            a for a in coco.get('annotations', []) if a['image_id'] in ids
        ]
        os.makedirs(work_dir, exist_ok=True)
        evaluator['ann_file'] = osp.join(work_dir, 'split_annotations.json')
        with open(evaluator['ann_file'], 'w') as f:
            json.dump(coco, f)
    return cfg


def paired_metrics(model_cfg, deploy_cfg, backend_files: Sequence[str],
                   calibrated: Sequence[str], val_images: int,
                   work_dir: str):
    """``(name, float, int8)``: the key metric that int8 loses most of
    (:func:`largest_drop`: COCO box or mask AP, mIoU) for the float and the
    int8 backend model on ``val_images`` training images other than the
    images ``calibrated`` on (paths), with the config's evaluator."""
    from mmdeploy.apis.utils import build_task_processor
    excluded = {osp.abspath(p) for p in calibrated}
    others = [
        p for p in _all_training_images(model_cfg)[0]
        if osp.abspath(p) not in excluded
    ]
    if len(others) < val_images:
        raise ToolError(
            f'--max-drop evaluates on {val_images} training images besides '
            f'the {len(calibrated)} calibrated on, and the training set has '
            f'{len(others)} more; pass fewer --calib-images or '
            f'--val-images')
    from .pipeline import evaluate  # pipeline imports this module
    cfg = training_split(model_cfg, _evenly(others, val_images), work_dir)
    processor = build_task_processor(cfg, deploy_cfg, 'cpu')
    found = []
    for files, tag in ((float_files(backend_files), 'fp32'),
                       (list(backend_files), 'int8')):
        model = processor.build_backend_model(
            files,
            data_preprocessor_updater=processor.update_data_preprocessor)
        found.append(evaluate(processor, model, osp.join(work_dir, tag)))
    return largest_drop(*found)


# The metrics an int8 model is judged by, where the evaluator reports them.
KEY_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')


def largest_drop(fp32: Dict[str, float], int8: Dict[str, float]):
    """``(name, float value, int8 value)`` of the key metric
    (:data:`KEY_METRICS`) that int8 loses most of."""
    names = [k for k in KEY_METRICS if k in fp32] or list(fp32)[:1]
    name = max(names, key=lambda k: float(fp32[k]) - float(int8[k]))
    return name, float(fp32[name]), float(int8[name])


# ImageNet's mean and standard deviation (RGB, 0-255): the data
# preprocessor of every Next-ViT and ResNet config here.
_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
_STD = np.array([58.395, 57.12, 57.375], np.float32)


def generated_inputs(height: int, width: int, count: int,
                     batch: int = 1) -> List[np.ndarray]:
    """``count`` preprocessed inputs (NCHW fp32, ImageNet-normalised) of
    the bundled segmentation shapes drawn at ``height`` x ``width``: the
    calibration images of the benchmark, where a backbone or a whole model
    runs without a dataset. Every network gets the same ones."""
    import cv2

    from mmnextvit.bundled_data import seg_shapes
    side = max(height, width)
    cfg = seg_shapes.SegShapesConfig(
        img_size=side, min_size=side // 6, max_size=side // 3)
    inputs = []
    for i in range(count):
        images = []
        for b in range(batch):
            img, _ = seg_shapes.draw_sample(cfg, 'training', i * batch + b)
            img = cv2.resize(img, (width, height)).astype(np.float32)
            images.append(((img - _MEAN) / _STD).transpose(2, 0, 1))
        inputs.append(np.ascontiguousarray(np.stack(images)))
    return inputs
