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
neck and heads (their weights per output channel, signed; their inputs per
tensor, unsigned in ONNX Runtime on x86). What stays in float: the
post-processing the export writes outside any layer (box decoding, NMS,
top-k, the RoI extractor's box inputs, the resize of the logits and the
argmax), found by the module scope of each node as in
:func:`mmnextvit.deploy.engines.part_of`, and whatever the section's
``ignored`` names or types add.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmnextvit.cli.errors import ToolError, first_line
from . import engines

__all__ = [
    'DEFAULTS', 'BACKENDS', 'NNCF_INSTALL', 'settings', 'require',
    'float_nodes', 'quantize_file', 'training_images', 'calibration_inputs',
    'quantize_work_dir', 'generated_inputs'
]

NNCF_INSTALL = 'pip install -e .[deploy] (or pip install nncf==3.4.0)'
# The engines this module quantizes for, by mmdeploy backend type.
BACKENDS = ('openvino', 'onnxruntime')
# The keys of a deploy config's ``quantization_config`` and their defaults.
DEFAULTS = dict(
    # Images of the model config's training set, evenly spaced over it.
    calib_images=100,
    # NNCF: 'performance' (symmetric activations) or 'mixed'.
    preset='performance',
    # NNCF's ModelType: None (a CNN) or 'transformer' (also quantizes the
    # attention's products and some element-wise nodes).
    model_type=None,
    # Nodes kept in float besides the post-processing: exact names, and
    # operator types (OpenVINO: 'MatMul'; ONNX Runtime: 'MatMul').
    ignored_names=[],
    ignored_types=[],
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
                scopes: Optional[Dict[str, str]]) -> List[str]:
    """The nodes of ``nodes`` (name -> producer of its first input) that
    belong to the post-processing (:func:`engines.part_of`; a node without
    a scope takes its producer's part). Empty for a backbone alone."""
    if scopes is None:
        return []
    found = []
    for node in nodes:
        seen, current, part = set(), node, None
        while part is None and current is not None and current not in seen:
            seen.add(current)
            part = engines.part_of(current, scopes)
            current = nodes.get(current)
        if (part or 'post-processing') == 'post-processing':
            found.append(node)
    return found


def _openvino(path: str, out: str, inputs: Sequence[np.ndarray],
              scopes, options: dict) -> None:
    import nncf
    import openvino as ov
    model = ov.Core().read_model(path)
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
    names = float_nodes(nodes, scopes) + list(options['ignored_names'])
    if options['float_attention']:
        names += _attention_products(described)
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


# The opset a per-channel QDQ model needs (DequantizeLinear's axis).
_QDQ_OPSET = 13


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over arrays."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]):
        self.name, self.inputs = name, iter(inputs)

    def get_next(self):
        feed = next(self.inputs, None)
        return None if feed is None else {self.name: feed}


def _onnxruntime(path: str, out: str, inputs: Sequence[np.ndarray],
                 scopes, options: dict) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader,
                                          CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    graph = onnx.load(path, load_external_data=False).graph
    made_by = {out_: node.name for node in graph.node for out_ in node.output}
    constants = {init.name for init in graph.initializer} | {
        o for node in graph.node if node.op_type == 'Constant'
        for o in node.output
    }
    nodes = {
        node.name: made_by.get(node.input[0]) if node.input else None
        for node in graph.node
    }
    described = [(node.name, node.op_type,
                  any(i in constants for i in node.input))
                 for node in graph.node]
    names = float_nodes(nodes, scopes) + list(options['ignored_names'])
    if options['float_attention']:
        names += _attention_products(described)
    op_types = [
        t for t in ('Conv', 'MatMul', 'Gemm')
        if t not in options['ignored_types']
    ]
    reader = _Reader(graph.input[0].name, inputs)
    CalibrationDataReader.register(_Reader)
    source = path
    model = onnx.load(path)
    opset = next(o.version for o in model.opset_import
                 if o.domain in ('', 'ai.onnx'))
    if opset < _QDQ_OPSET:
        # Per-channel DequantizeLinear (its axis) needs opset 13; the
        # deploy configs export at opset 11.
        from onnx import version_converter
        source = out + '.opset13.onnx'
        onnx.save(version_converter.convert_version(model, _QDQ_OPSET), source)
    del model
    try:
        _quantize_static(quantize_static, source, out, reader, op_types,
                         names, QuantFormat, QuantType, CalibrationMethod)
    finally:
        if source != path and osp.exists(source):
            os.remove(source)


def _quantize_static(quantize_static, path, out, reader, op_types, names,
                     QuantFormat, QuantType, CalibrationMethod):
    quantize_static(
        path,
        out,
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=op_types,
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=sorted(set(names)),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options=dict(ActivationSymmetric=False, WeightSymmetric=True))


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


def training_images(model_cfg, count: int) -> List[str]:
    """``count`` image paths evenly spaced over the model config's
    training set.

    Raises:
        ToolError: the training set cannot be read or is too small.
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
    present = [p for p in paths if osp.isfile(p)]
    if len(present) < count:
        missing = len(paths) - len(present)
        raise ToolError(
            f"int8 calibration asks for {count} images of the training set "
            f"of '{name}', which has {len(present)}"
            + (f' ({missing} listed but missing on disk)' if missing else '')
            + f'; pass --calib-images {len(present)} or fewer, or add '
            f'training images')
    step = len(present) / count
    return [present[int(i * step)] for i in range(count)]


def calibration_inputs(processor, model_cfg, deploy_cfg,
                       count: int) -> List[np.ndarray]:
    """The model inputs of ``count`` images of the model config's training
    set, each through the config's test pipeline and data preprocessor
    (mmdeploy's task processor ``processor``, at the export's fixed size
    for a static deploy config): what the exported graph sees at test
    time."""
    import torch
    from mmdeploy.utils import get_input_shape
    preprocessor = processor.build_data_preprocessor()
    shape = get_input_shape(deploy_cfg)
    inputs = []
    with torch.no_grad():
        for path in training_images(model_cfg, count):
            _, tensor = processor.create_input(path, shape, preprocessor)
            inputs.append(tensor.cpu().numpy().astype(np.float32))
    return inputs


def quantize_work_dir(model_cfg, deploy_cfg, options: dict, folder: str,
                      backend_files: List[str],
                      calib_images: Optional[int] = None) -> List[str]:
    """Quantize the backend model that ``export`` wrote into ``folder``,
    in place: the float model keeps its files under the suffix ``_fp32``
    (``end2end_fp32.xml`` / ``end2end_fp32.onnx``), and the int8 model
    takes the names mmdeploy's backend model and SDK load. Returns the
    backend files."""
    from mmdeploy.apis.utils import build_task_processor

    from mmnextvit.cli import build_model
    backend = deploy_cfg.backend_config.type
    count = calib_images or options['calib_images']
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    inputs = calibration_inputs(processor, model_cfg, deploy_cfg, count)
    scopes = engines.head_scopes(build_model(model_cfg))
    source = backend_files[0]
    stem, ext = osp.splitext(source)
    float_file = f'{stem}_fp32{ext}'
    os.replace(source, float_file)
    if ext == '.xml':
        os.replace(f'{stem}.bin', f'{stem}_fp32.bin')
    quantize_file(backend, float_file, source, inputs, scopes, options)
    print(f'int8: {backend} model quantized on {count} training images; '
          f'the float model is {osp.basename(float_file)}')
    return backend_files


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
