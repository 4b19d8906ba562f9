"""tools/deployment/export_onnx.py: the exported backbone gives PyTorch's
outputs in ONNX Runtime, at the export size and at a second size, and the
upstream outputs in ONNX Runtime and OpenVINO (whole models:
tests/test_deploy.py)."""
import os.path as osp
import sys

import onnx
import onnxruntime as ort
import openvino  # noqa: F401  (installed by the README's set-up)
import pytest
import torch
from helpers import rel_err, seeded_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'deployment'))
import export_onnx  # noqa: E402


def run_export(capsys, *argv):
    status = export_onnx.main([str(a) for a in argv])
    return status, capsys.readouterr().out


def test_backbone_dynamic_export_matches_pytorch(tmp_path, capsys):
    path = tmp_path / 'nextvit_s.onnx'
    checkpoint = tmp_path / 'seeded.pth'
    model = seeded_model()
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    # The second size has more rows in each stage than the export's: a
    # forward that loops over the traced rows (the eager layout copy did)
    # would leave the extra rows out of the graph.
    status, out = run_export(capsys, 'nextvit-s', path, '--checkpoint',
                             checkpoint, '--shape', 64, 96, '--dynamic',
                             '--check-shape', 257, 131)
    assert status == 0, out
    assert 'check 64x96' in out and 'check 257x131' in out
    assert out.count('(ok,') == 2
    # The same regression checked here, not only by the tool's own line:
    # ONNX Runtime at 257x131 against PyTorch on the same weights.
    x = torch.randn(1, 3, 257, 131, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = model(x)
    outs = session.run(None, {'input': x.numpy()})
    for out_, ref in zip(outs, expected):
        assert out_.shape == tuple(ref.shape)
        assert rel_err(torch.from_numpy(out_), ref) < 1e-4

    # The file itself: norms folded (no BatchNormalization left), four
    # outputs, free height and width; run at a third size here.
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert 'BatchNormalization' not in ops
    assert [o.name for o in model.graph.output] == [
        'stage1', 'stage2', 'stage3', 'stage4'
    ]
    session = ort.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])
    outs = session.run(None, {'input': torch.rand(2, 3, 33, 65).numpy()})
    assert [o.shape for o in outs] == [(2, 96, 9, 17), (2, 256, 5, 9),
                                       (2, 512, 3, 5), (2, 1024, 2, 3)]


def engine_session(engine, path):
    """A callable running the ONNX file ``path`` on one NCHW array in
    ``engine`` (fp32) and returning its outputs."""
    if engine == 'onnxruntime':
        session = ort.InferenceSession(
            str(path), providers=['CPUExecutionProvider'])
        return lambda x: session.run(None, {'input': x})
    import openvino as ov

    # fp32 asked for: on CPUs with bf16 instructions OpenVINO's CPU plugin
    # would otherwise run the graph in bf16.
    compiled = ov.Core().compile_model(
        str(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    return lambda x: compiled(x).to_tuple()


@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_exported_backbone_matches_upstream_in_each_engine(
        tmp_path, capsys, parity, mode):
    """The tool's file of the upstream-seeded weights (norms folded, one
    dynamic file for every fixture input) gives the upstream features in
    ONNX Runtime and in OpenVINO (where installed) within 1e-5 relative,
    the bound of the PyTorch paths."""
    checkpoint = tmp_path / 'seeded.pth'
    torch.save({'state_dict': seeded_model(mode).state_dict()}, checkpoint)
    path = tmp_path / 'nextvit_s.onnx'
    status, out = run_export(capsys, 'nextvit-s', path, '--checkpoint',
                             checkpoint, '--shape', 64, 64, '--dynamic',
                             *(['--seg'] if mode == 'seg' else []))
    assert status == 0, out
    engines = ['onnxruntime', 'openvino']
    expected = parity['arches']['small'][mode]['feats']
    for engine in engines:
        run = engine_session(engine, path)
        for x, feats in zip(parity['inputs'], expected):
            outs = run(x.numpy())
            assert len(outs) == len(feats)
            for out, ref in zip(outs, feats):
                assert out.shape == tuple(ref.shape), engine
                assert rel_err(torch.from_numpy(out), ref) < 1e-5, engine


def test_kept_norms_are_exported_not_dropped(tmp_path, capsys):
    path = tmp_path / 'kept.onnx'
    status, out = run_export(capsys, 'nextvit-s', path, '--shape', 64, 64,
                             '--keep-norms', '--seg')
    assert status == 0, out
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert 'BatchNormalization' in ops


def test_a_whole_model_config_points_to_the_deploy_tool(tmp_path, capsys):
    """Whole models have one way out: tools/deployment/deploy.py."""
    config = osp.join(ROOT, 'configs', 'bundled_data',
                      'nextvit_s_seg-shapes-cpu.py')
    path = tmp_path / 'semfpn.onnx'
    with pytest.raises(SystemExit) as info:
        export_onnx.main([config, str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'tools/deployment/deploy.py' in err[0]
    assert not path.exists()


def test_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        export_onnx.main(['nextvit-x', str(tmp_path / 'a.onnx')])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nextvit-x'" in err[0]
    with pytest.raises(SystemExit):
        export_onnx.main(['nextvit-s', str(tmp_path / 'missing' / 'a.onnx')])
    assert 'does not exist' in capsys.readouterr().err
    assert not (tmp_path / 'missing').exists()
