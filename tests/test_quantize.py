"""int8 quantization of exported models (mmnextvit.deploy.quantize,
tools/deployment/deploy.py with the *-int8_* deploy configs, benchmark.py
--precision int8): what stays in float, the configs, the int8 kernels the
engines run, and bad input in one line with nothing written. The accuracy
of trained models in int8 is checked where they are trained
(tests/test_seg_training.py, tests/test_main_job/test_int8.py)."""
import glob
import os
import os.path as osp
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error
from trained_models import trained_seg_config

import nncf  # noqa: F401  (the README's set-up installs it)
import onnxruntime.quantization  # noqa: F401

import mmnextvit  # noqa: F401
from mmnextvit.cli import ToolError
from mmnextvit.deploy import engines, quantize

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEPLOY = osp.join(ROOT, 'configs', 'deploy')
SEG_CONFIG = osp.join(ROOT, 'configs', 'bundled_data',
                      'nextvit_s_seg-shapes-cpu.py')
INT8_CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(DEPLOY, '*-int8_*.py'))
    if 'tensorrt' not in p)


def _tool():
    return runpy.run_path(
        osp.join(ROOT, 'tools', 'deployment', 'deploy.py'),
        run_name='mmnextvit_tool')['main']


# --------------------------------------------------------------------------
# What stays in float
# --------------------------------------------------------------------------
SCOPES = {
    'backbone': 'backbone',
    'neck': 'neck + head',
    'roi_head': 'neck + head',
    'bbox_head': 'neck + head'
}


def test_post_processing_and_named_layers_stay_in_float():
    """Nodes with a module scope go by it; a node the exporter or engine
    wrote without one (a Gather of the box decoding, a reorder) takes the
    part of the node feeding it."""
    nodes = {
        '/backbone/stem.0/Conv': None,
        '/neck/lateral_convs.0/conv/Conv': '/backbone/stem.0/Conv',
        '/roi_head/bbox_head/shared_fcs.0/Gemm': '/neck/lateral_convs.0/conv'
        '/Conv',
        'Reorder_1': '/neck/lateral_convs.0/conv/Conv',
        '/Gather_3': '/roi_head/bbox_head/shared_fcs.0/Gemm',
        'Reorder_2': '/Gather_3',
        '/TopK': '/Gather_3',
    }
    assert sorted(quantize.float_nodes(nodes, SCOPES)) == [
        '/Gather_3', '/TopK', 'Reorder_2'
    ]
    assert sorted(quantize.float_nodes(nodes, SCOPES, ['bbox_head'])) == [
        '/Gather_3', '/TopK', '/roi_head/bbox_head/shared_fcs.0/Gemm',
        'Reorder_2'
    ]
    # A backbone exported alone: nothing is post-processing.
    assert quantize.float_nodes(nodes, None) == []


def test_attention_products_stay_in_float_and_weight_products_not():
    assert quantize._attention_products([
        ('/backbone/features.6/e_mhsa/MatMul', 'MatMul', False),
        ('/backbone/features.6/e_mhsa/q/MatMul', 'MatMul', True),
        ('/backbone/stem.0/Conv', 'Conv', True),
    ]) == ['/backbone/features.6/e_mhsa/MatMul']


# --------------------------------------------------------------------------
# Deploy configs
# --------------------------------------------------------------------------
def test_the_issue_s_int8_configs_are_there():
    for name in ('instance-seg_openvino-int8_static-800x1344.py',
                 'instance-seg_openvino-int8_dynamic.py',
                 'segmentation_openvino-int8_static-512x512.py',
                 'segmentation_openvino-int8_dynamic.py',
                 'segmentation_onnxruntime-int8_static-512x512.py',
                 'segmentation_onnxruntime-int8_dynamic.py',
                 'instance-seg_onnxruntime-int8_dynamic.py'):
        assert name in INT8_CONFIGS


@pytest.mark.parametrize('name', INT8_CONFIGS)
def test_int8_config_is_its_float_config_plus_quantization(name):
    """An int8 config exports exactly as the float config of its name, and
    its quantization settings are a section of their own."""
    from mmengine.config import Config
    int8 = Config.fromfile(osp.join(DEPLOY, name)).to_dict()
    floating = Config.fromfile(
        osp.join(DEPLOY, name.replace('-int8', ''))).to_dict()
    section = int8.pop('quantization_config')
    assert int8 == floating
    assert set(section) <= set(quantize.DEFAULTS)


def test_settings_are_checked():
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(DEPLOY, 'segmentation_openvino-int8_dynamic.py'))
    assert quantize.settings(cfg)['preset'] == 'mixed'
    cfg.quantization_config['presets'] = 'mixed'
    with pytest.raises(ToolError, match="unknown keys \\['presets'\\]"):
        quantize.settings(cfg)
    del cfg.quantization_config['presets']
    cfg.backend_config.type = 'tensorrt'
    with pytest.raises(ToolError, match="calib_config for TensorRT"):
        quantize.settings(cfg)


# --------------------------------------------------------------------------
# A small model quantized: the engines run int8 kernels
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_onnx(tmp_path_factory):
    """A convolution stack exported to ONNX, and its calibration inputs."""
    root = tmp_path_factory.mktemp('int8')
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(128, 128, 3, padding=1)).eval()
    path = str(root / 'small.onnx')
    engines.export_onnx(model, torch.randn(1, 3, 64, 64), path)
    inputs = quantize.generated_inputs(64, 64, 4)
    return path, inputs, model


@pytest.mark.parametrize('backend', ['openvino', 'onnxruntime'])
def test_quantized_model_runs_int8_kernels_and_stays_close(
        backend, small_onnx, tmp_path):
    """The engine's profiler says the convolutions ran int8 kernels (not a
    float fallback), and the output stays near the float one."""
    path, inputs, model = small_onnx
    out = str(tmp_path / ('q.xml' if backend == 'openvino' else 'q.onnx'))
    quantize.quantize_file(backend, path, out, inputs)
    feed = inputs[0]
    kernels = engines.int8_share(backend, 'int8', out, feed)
    assert kernels['int8'] > 2 * kernels['float'], kernels
    floating = engines.int8_share(backend, 'fp32', path, feed)
    assert floating['int8'] == 0, floating
    got = engines.runner(backend, 'int8', out, feed)()[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(feed)).numpy()
    # Mean error: the calibrated ranges clip the rarest extremes by design
    # (measured 0.030 in ONNX Runtime, 0.021 in OpenVINO, on both stacks).
    error = np.abs(got - expected).mean() / np.abs(expected).mean()
    assert 0 < error < 0.05, error
    if backend == 'onnxruntime':
        # The same file without ONNX Runtime's fusions runs each
        # DequantizeLinear -> float Conv -> QuantizeLinear as written: the
        # arithmetic the file describes, whatever the CPU. The int8 kernels
        # must give it back; x86 without VNNI saturates full-range s8
        # weights (0.28 apart here with reduce_range=False, 0.001 with
        # it).
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        written = ort.InferenceSession(
            out, options, providers=['CPUExecutionProvider']).run(
                None, {'input': feed})[0]
        apart = np.linalg.norm(got - written) / np.linalg.norm(written)
        assert apart < 0.005, apart


class _GroupedBlock(torch.nn.Module):
    """The convolutional attention's pattern: a grouped 3x3 convolution of
    32 channels per group on a map that also feeds a residual addition."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 64, 3, padding=1)
        self.group = torch.nn.Conv2d(64, 64, 3, padding=1, groups=2)
        self.projection = torch.nn.Conv2d(64, 64, 1)

    def forward(self, x):
        x = self.stem(x)
        return x + self.projection(torch.relu(self.group(x)))


def test_openvino_runs_grouped_convolutions_in_int8(tmp_path):
    """An ONNX file quantized for OpenVINO: the CPU plugin's runtime model
    runs the grouped convolution with u8 input and i8 weights, as the
    dense ones (read from the ONNX file without OpenVINO's conversion, its
    weights' ranges came out per kernel column and it ran in f32)."""
    import openvino as ov
    torch.manual_seed(0)
    path, out = str(tmp_path / 'grouped.onnx'), str(tmp_path / 'q.xml')
    engines.export_onnx(_GroupedBlock().eval(), torch.randn(1, 3, 64, 64),
                        path)
    quantize.quantize_file('openvino', path, out,
                           quantize.generated_inputs(64, 64, 4))
    compiled = ov.Core().compile_model(out, 'CPU',
                                       {'INFERENCE_PRECISION_HINT': 'f32'})
    found = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info['layerType'].astype(str) == 'Convolution':
            found[len(op.input(1).get_partial_shape())] = (
                info['runtimePrecision'].astype(str),
                str(op.input(0).get_element_type()),
                str(op.input(1).get_element_type()))
    # Weights of rank 5: the grouped convolution; rank 4: the dense ones.
    assert set(found) == {4, 5}, found
    for rank in (4, 5):
        precision, data, weights = found[rank]
        assert precision == 'u8' and 'uint8' in data and 'int8' in weights \
            and 'uint8' not in weights, found


def test_onnxruntime_mask_rcnn_int8_config(tmp_path, capsys):
    """The ONNX Runtime Mask R-CNN int8 config through the tool (seeded
    weights, two calibration images of a generated training set): the
    backbone's convolutions are quantized and run int8 kernels, the box
    head (the config's float_scopes) and the post-processing stay float,
    and the float model stays beside the int8 one."""
    import onnx
    from test_deploy import DET_CONFIG, seeded_checkpoint, write_image

    from mmnextvit.bundled_data import shapes
    data = str(tmp_path / 'shapes')
    shapes.generate(data, shapes.ShapesConfig(num_train=2, num_val=1),
                    progress=False)
    config = tmp_path / 'det.py'
    config.write_text(f'_base_ = {DET_CONFIG!r}\n' + ''.join(
        f'{loader} = dict(dataset=dict(data_root={data + "/"!r}))\n'
        for loader in ('train_dataloader', 'test_dataloader')))
    work = tmp_path / 'work'
    _tool()([
        str(config),
        seeded_checkpoint(DET_CONFIG, str(tmp_path / 'det.pth')),
        '--deploy-cfg',
        osp.join(DEPLOY, 'instance-seg_onnxruntime-int8_dynamic.py'),
        '--work-dir', str(work), '--calib-images', '2', '--img',
        write_image(str(tmp_path / 'img.png'), 128, 128)
    ])
    assert 'quantized on 2 training images' in capsys.readouterr().out
    assert {'end2end.onnx', 'end2end_fp32.onnx'} <= set(os.listdir(work))
    graph = onnx.load(str(work / 'end2end.onnx')).graph
    dequantized = {n.output[0] for n in graph.node
                   if n.op_type == 'DequantizeLinear'}
    quantized = {n.name for n in graph.node
                 if n.op_type in ('Conv', 'Gemm', 'MatMul')
                 and n.input[0] in dequantized}
    assert any(n.startswith('/backbone/') for n in quantized), quantized
    assert any(n.startswith('/mask_head/') for n in quantized), quantized
    assert not [n for n in quantized if '/bbox_head/' in n], quantized
    feed = quantize.generated_inputs(128, 128, 1)[0]
    kernels = engines.int8_share('onnxruntime', 'int8', str(
        work / 'end2end.onnx'), feed)
    # Not a float fallback (which leaves only the (de)quantize nodes); the
    # float box head and the post-processing take much of the time at this
    # size.
    assert kernels['int8'] > max(kernels['quantize'],
                                 0.1 * sum(kernels.values())), kernels


# --------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def seg_files(tmp_path_factory):
    """The bundled Semantic FPN with seeded weights on four training
    images."""
    from test_deploy import seeded_checkpoint

    from mmnextvit.bundled_data import seg_shapes
    root = tmp_path_factory.mktemp('int8_seg')
    data = str(root / 'seg_shapes')
    seg_shapes.generate(
        data, seg_shapes.SegShapesConfig(num_train=4, num_val=2),
        progress=False)
    config = root / 'seg.py'
    config.write_text(
        f'_base_ = {SEG_CONFIG!r}\n'
        f'train_dataloader = dict(dataset=dict(data_root={data!r}))\n'
        f'test_dataloader = dict(dataset=dict(data_root={data!r}))\n')
    return (str(config), seeded_checkpoint(SEG_CONFIG, str(root / 'seg.pth')))


def fails_in_one_line(capsys, argv, *words):
    with pytest.raises(SystemExit) as info:
        _tool()([str(a) for a in argv])
    assert info.value.code == 2
    return assert_one_line_error(capsys.readouterr().err, *words)


def int8_argv(seg_files, work, *extra):
    config, checkpoint = seg_files
    return [
        config, checkpoint, '--deploy-cfg',
        osp.join(DEPLOY, 'segmentation_openvino-int8_dynamic.py'),
        '--work-dir', work, *extra
    ]


def test_nncf_missing(seg_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'nncf', None)
    work = tmp_path / 'work'
    fails_in_one_line(capsys, int8_argv(seg_files, work), 'needs NNCF',
                      'pip install -e .[deploy]')
    assert not work.exists()


def test_fewer_training_images_than_asked(seg_files, tmp_path, capsys):
    work = tmp_path / 'work'
    fails_in_one_line(capsys,
                      int8_argv(seg_files, work, '--calib-images', 10),
                      'asks for 10 images of the training set', 'has 4',
                      '--calib-images 4 or fewer')
    # The config's default count (100) is more than there are, too.
    fails_in_one_line(capsys, int8_argv(seg_files, work), 'asks for 100',
                      'has 4')
    assert not work.exists()


def test_training_images_missing_on_disk(seg_files, tmp_path, capsys):
    """Images gone from the training folder count as missing."""
    import shutil
    config, checkpoint = seg_files
    data = osp.join(osp.dirname(config), 'seg_shapes')
    copy = tmp_path / 'copy'
    shutil.copytree(data, copy)
    for image in sorted(glob.glob(str(copy / '**' / 'training' / '*.jpg'),
                                  recursive=True))[:2]:
        os.remove(image)
    moved = tmp_path / 'seg.py'
    moved.write_text(
        f'_base_ = {config!r}\n'
        f'train_dataloader = dict(dataset=dict(data_root={str(copy)!r}))\n')
    work = tmp_path / 'work'
    fails_in_one_line(capsys,
                      int8_argv((str(moved), checkpoint), work,
                                '--calib-images', 3), 'which has 2',
                      '--calib-images 2 or fewer')
    assert not work.exists()


def test_calibration_folder_bad_input(seg_files, tmp_path, capsys):
    """--calib-dir: not a folder, no images in it, fewer than
    --calib-images, or a chosen file that is no image: one line naming the
    folder or file, before any export."""
    import cv2
    work = tmp_path / 'work'
    fails_in_one_line(
        capsys,
        int8_argv(seg_files, work, '--calib-dir', tmp_path / 'nowhere'),
        f"--calib-dir '{tmp_path / 'nowhere'}' is not a folder")
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no images here')
    fails_in_one_line(capsys, int8_argv(seg_files, work, '--calib-dir',
                                        empty), f"'{empty}' holds no images",
                      '.jpg')
    mine = tmp_path / 'mine'
    (mine / 'day2').mkdir(parents=True)
    cv2.imwrite(str(mine / 'a.png'), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(mine / 'day2' / 'b.jpg'), np.zeros((32, 32, 3),
                                                       np.uint8))
    fails_in_one_line(
        capsys,
        int8_argv(seg_files, work, '--calib-dir', mine, '--calib-images', 3),
        'asks for 3 images', f"'{mine}' has 2", '--calib-images 2 or fewer')
    (mine / 'day2' / 'c.jpg').write_text('not an image')
    fails_in_one_line(capsys, int8_argv(seg_files, work, '--calib-dir',
                                        mine), f"'{mine / 'day2' / 'c.jpg'}'"
                      ' does not read as an image')
    assert not work.exists()


def test_calibration_flags_on_a_float_config(seg_files, tmp_path, capsys):
    config, checkpoint = seg_files
    work = tmp_path / 'work'
    for flag, value in (('--calib-images', 2), ('--max-drop', 0.5),
                        ('--calib-dir', tmp_path), ('--time-runs', 3)):
        fails_in_one_line(capsys, [
            config, checkpoint, '--deploy-cfg',
            osp.join(DEPLOY, 'segmentation_openvino_dynamic.py'),
            '--work-dir', work, flag, value
        ], f'{flag} applies to int8 deploy configs', 'no quantization_config')
    assert not work.exists()


def test_missed_accuracy_target_writes_nothing(trained_segmentor, tmp_path,
                                               capsys, monkeypatch):
    """--max-drop for real: the trained Semantic FPN, exported at opset 11
    and quantized for ONNX Runtime (its QDQ file runs int8 kernels) on a
    --calib-dir of blank images, whose ranges fit no real image, is
    evaluated beside its float model on 8 training images with the
    config's evaluator, misses the target, and the work dir stays as it
    was. A float / int8 pair swapped in the evaluation would show a gain
    and pass."""
    import cv2
    kernels = []
    evaluate = quantize.paired_metrics

    def paired(model_cfg, deploy_cfg, backend_files, *args):
        (path, ) = backend_files
        feed = quantize.generated_inputs(64, 64, 1)[0]
        kernels.append(engines.int8_share('onnxruntime', 'int8', path, feed))
        return evaluate(model_cfg, deploy_cfg, backend_files, *args)

    monkeypatch.setattr(quantize, 'paired_metrics', paired)
    config = trained_seg_config(trained_segmentor, tmp_path)
    blank = tmp_path / 'blank'
    blank.mkdir()
    for i in range(2):
        cv2.imwrite(str(blank / f'{i}.png'), np.full((64, 64, 3), 128,
                                                     np.uint8))
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'kept.txt').write_text('from before')
    line = fails_in_one_line(capsys, [
        config, trained_segmentor['checkpoint'], '--deploy-cfg',
        osp.join(DEPLOY, 'segmentation_onnxruntime-int8_dynamic.py'),
        '--work-dir', work, '--calib-dir', blank, '--max-drop', 5,
        '--val-images', 8
    ], 'int8 misses the accuracy target', 'mIoU drops by',
                             'on 8 training images', '--max-drop 5.0',
                             'ignored_names')
    fp32, int8 = map(float, re.search(r'\((\S+) -> (\S+)\)', line).groups())
    # The float model is the trained one (56-80 mIoU on these images).
    assert fp32 >= 50 and fp32 - int8 > 5, line
    assert kernels and kernels[0]['int8'] > kernels[0]['float'], kernels
    assert sorted(p.name for p in work.iterdir()) == ['kept.txt']
    assert not glob.glob(str(tmp_path / '.work.*'))


def test_max_drop_needs_training_images_beyond_calibration(
        seg_files, tmp_path, capsys):
    work = tmp_path / 'work'
    fails_in_one_line(
        capsys,
        int8_argv(seg_files, work, '--calib-images', 3, '--max-drop', 1,
                  '--val-images', 2), 'asks for 5 images', 'has 4')
    assert not work.exists()


def test_precision_error_in_int8(seg_files):
    """precision_error.py --precision int8: the exported backbone,
    quantized, against eager fp32 per stage; an int8 error, not fp32's
    rounding and not garbage."""
    config, checkpoint = seg_files
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis_tools', 'precision_error.py'),
        config, checkpoint, '--precision', 'int8', '--deploy', '--images',
        '2', '--calib-images', '4'
    ],
                            capture_output=True,
                            text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'features in int8 (openvino, calibrated on 4 training images)' \
        in result.stdout
    rows = re.findall(r'^\s+(\d)\s+(\S+)\s+(\S+)$', result.stdout, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4], result.stdout
    for _, worst, norm in rows:
        # Seeded weights, 4 calibration images: norms 0.076-0.081 measured
        # (fp32 rounding would give ~1e-6; a broken quantizer tens of %).
        assert 1e-3 < float(norm) < 0.15, result.stdout
        assert float(norm) <= float(worst) < 1, result.stdout


def test_benchmark_int8_needs_an_exporting_engine():
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py'), '--models',
        'resnet101', '--precision', 'int8', '--engine', 'eager'
    ],
                            capture_output=True,
                            text=True,
                            cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert_one_line_error(result.stderr, '--precision int8',
                          '--engine onnxruntime or openvino')


def test_paired_metrics_name_the_largest_drop():
    assert quantize.largest_drop(
        {'coco/bbox_mAP': 0.75, 'coco/segm_mAP': 0.81, 'other': 1.0},
        {'coco/bbox_mAP': 0.74, 'coco/segm_mAP': 0.78, 'other': 0.0}) == (
            'coco/segm_mAP', 0.81, 0.78)
    assert quantize.largest_drop({'aAcc': 90., 'mIoU': 70.}, {
        'aAcc': 80.,
        'mIoU': 69.
    }) == ('mIoU', 70., 69.)


def test_training_split_evaluates_the_chosen_images_alone(tmp_path):
    """--max-drop's evaluation on training images: the COCO evaluator reads
    an annotation file of exactly the images evaluated (with the training
    set's whole file, every image not evaluated counted as missed and the
    AP of a tenth of the images read about a tenth of its own)."""
    import json

    from det_data import make_coco_instances, write_det_config
    from mmengine.config import Config
    make_coco_instances(str(tmp_path / 'data'), {'train': 10, 'val': 1})
    cfg = Config.fromfile(
        write_det_config(str(tmp_path / 'det.py'), str(tmp_path / 'data')))
    chosen = sorted(glob.glob(str(tmp_path / 'data' / 'train' / '*')))[3:5]
    split = quantize.training_split(cfg, chosen, str(tmp_path / 'split'))
    with open(split.test_evaluator.ann_file) as f:
        coco = json.load(f)
    assert sorted(osp.basename(i['file_name'])
                  for i in coco['images']) == [osp.basename(p)
                                               for p in chosen]
    ids = {i['id'] for i in coco['images']}
    assert coco['annotations'] and {
        a['image_id'] for a in coco['annotations']} == ids
    assert split.test_dataloader.dataset.indices == [3, 4]
    # The caller's config is left as it was.
    assert cfg.test_evaluator.ann_file != split.test_evaluator.ann_file
