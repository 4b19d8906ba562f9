import math

import pytest
import torch
from helpers import (assert_matches_upstream, rel_err, seeded_model,
                     upstream_keys)
from torch.nn.modules.batchnorm import _BatchNorm

from mmnextvit.models import NextViT

TOLERANCE = 1e-5
ARCHES = ('small', 'base', 'large')
DEPTHS = {
    'small': (3, 4, 10, 3),
    'base': (3, 4, 20, 3),
    'large': (3, 4, 30, 3)
}
# Tensors of a released checkpoint (with num_batches_tracked, the classifier
# norm and head); reference section 2.
RELEASED_TENSORS = {'small': 472, 'base': 692, 'large': 912}


def expected_size(size, stride):
    """Feature size of an input side at a stride: every downsampling in
    Next-ViT (stride-2 3x3 convolutions with padding 1 and ceil-mode 2x2
    pooling) rounds up."""
    return math.ceil(size / stride)


# ---------------------------------------------------------------------------
# Parity with the upstream implementation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_state_dict_keys_are_the_upstream_layout(parity, mode):
    model = NextViT(arch='small', with_extra_norm=(mode == 'seg'))
    fixture_keys = dict(parity['arches']['small'][mode]['keys'])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Every tensor we hold is in the released layout with the same shape;
    # what we do not hold is the classifier and the unused fourth norm.
    assert {k: fixture_keys[k] for k in ours} == ours
    unused = set(fixture_keys) - set(ours)
    allowed = ('proj_head.', 'extra_norm_list.3.')
    if mode == 'det':
        allowed += ('norm.', )
    assert unused and all(k.startswith(allowed) for k in unused)


@pytest.mark.parametrize('arch', ARCHES)
def test_released_tensor_counts(arch):
    model = NextViT(arch=arch)
    assert len(upstream_keys(model)) == RELEASED_TENSORS[arch]
    seg = NextViT(arch=arch, with_extra_norm=True)
    assert len(upstream_keys(seg)) == RELEASED_TENSORS[arch] + 20


@pytest.mark.parametrize('mode', ['det', 'seg'])
@pytest.mark.parametrize('deploy', [False, True])
def test_matches_upstream_outputs(parity, mode, deploy):
    model = seeded_model(mode)
    if deploy:
        model.switch_to_deploy()
    assert_matches_upstream(model, parity, mode, TOLERANCE)


@pytest.mark.parametrize('grad', [False, True])  # inference path, modules
def test_forward_does_not_depend_on_onnx_export_flag(parity, monkeypatch,
                                                     grad):
    """Upstream skipped every pre-norm in its modules' forward while this
    flag was set; neither of our paths looks at it (with autograd on, the
    modules run as they are)."""
    model = seeded_model('det')
    x = parity['inputs'][0]
    with torch.set_grad_enabled(grad):
        assert model._inference_ready() is not grad
        plain = model(x)
        monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
        flagged = model(x)
    for a, b in zip(plain, flagged):
        assert torch.equal(a, b)


@pytest.mark.parametrize('arch', ARCHES)
@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_switch_to_deploy_keeps_outputs(arch, mode):
    model = seeded_model(mode, arch)
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    remaining = [
        name for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and not name.startswith(('extra_norm',
                                                              'norm'))
    ]
    assert remaining == []
    for a, b in zip(after, before):
        assert rel_err(a, b) < TOLERANCE
    # A second call changes nothing.
    model.switch_to_deploy()
    with torch.no_grad():
        again = model(x)
    for a, b in zip(again, after):
        assert torch.equal(a, b)


@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_deployed_checkpoint_loads_into_a_deploy_built_model(tmp_path, mode):
    """deploy=True builds the folded form: a checkpoint saved after
    switch_to_deploy() loads into it strictly, and a Pretrained file of the
    ordinary form is folded as it loads; both give the deployed outputs."""
    deployed = seeded_model(mode)
    unfolded_path = tmp_path / 'unfolded.pth'
    torch.save({'state_dict': deployed.state_dict()}, unfolded_path)
    deployed.switch_to_deploy()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = deployed(x)

    built = NextViT(with_extra_norm=(mode == 'seg'), deploy=True)
    assert built.deploy
    assert set(built.state_dict()) == set(deployed.state_dict())
    built.load_state_dict(deployed.state_dict(), strict=True)
    pretrained = NextViT(
        with_extra_norm=(mode == 'seg'),
        deploy=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(unfolded_path)))
    pretrained.init_weights()
    with torch.no_grad():
        for model in (built.eval(), pretrained.eval()):
            for out, ref in zip(model(x), expected):
                assert rel_err(out, ref) < 1e-6


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('size', [(224, 224), (128, 320), (97, 131),
                                  (33, 65), (25, 41)])
@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_output_shapes(size, mode):
    model = NextViT(arch='small', with_extra_norm=(mode == 'seg')).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    assert len(outs) == 4
    for out, channels, stride in zip(outs, (96, 256, 512, 1024),
                                     (4, 8, 16, 32)):
        assert out.shape == (2, channels, expected_size(size[0], stride),
                             expected_size(size[1], stride))
        assert torch.isfinite(out).all()


def test_out_indices_selects_stages():
    model = NextViT(out_indices=(1, -1)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [256, 1024]


@pytest.mark.parametrize('arch', ARCHES)
def test_variant_depths(arch):
    model = NextViT(arch=arch)
    assert len(model.features) == sum(DEPTHS[arch])
    assert model.stage_ends == tuple(
        sum(DEPTHS[arch][:i + 1]) - 1 for i in range(4))
    kinds = [type(b).__name__ for b in model.features]
    assert kinds.count('NextTransformerBlock') == 2 + DEPTHS[arch][2] // 5


def test_arch_dict_and_aliases():
    custom = NextViT(arch=dict(
        stem_channels=(64, 32, 64), depths=(1, 1, 5, 1), drop_path_rate=0.))
    assert len(custom.features) == 8
    assert NextViT(arch='L').arch == NextViT(arch='large').arch


# ---------------------------------------------------------------------------
# Training behaviour
# ---------------------------------------------------------------------------
def _stage_of_block(model, index):
    return next(s for s, end in enumerate(model.stage_ends) if index <= end)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = NextViT(frozen_stages=frozen_stages, with_extra_norm=True)
    model.train()
    frozen = []
    if frozen_stages >= 0:
        frozen.append(model.stem)
    for i, block in enumerate(model.features):
        if _stage_of_block(model, i) < frozen_stages:
            frozen.append(block)
    frozen += list(model.extra_norm_list[:max(frozen_stages, 0)])
    if frozen_stages == 4:
        frozen.append(model.norm)
    frozen_params = {id(p) for m in frozen for p in m.parameters()}
    for name, param in model.named_parameters():
        assert param.requires_grad == (id(param) not in frozen_params), name
    frozen_modules = {id(sub) for m in frozen for sub in m.modules()}
    for name, module in model.named_modules():
        if name:
            assert module.training == (id(module) not in frozen_modules), name
    # train() keeps returning the model and keeps the freeze.
    assert model.train(True) is model
    assert not any(m.training for m in frozen)


def test_norm_eval_keeps_every_batch_norm_in_eval_mode():
    model = NextViT(norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in norms)
    assert norms and not any(m.training for m in norms)
    conv = model.features[0].mlp.conv1
    assert model.training and conv.training
    # The running statistics stay as they were while training.
    before = [m.running_mean.clone() for m in norms]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = NextViT(drop_path_rate=0.)
    checkpointed = NextViT(drop_path_rate=0., with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    # Same batch-norm statistics in both (recomputation updates them again).
    plain.train()
    checkpointed.train()
    for m in list(plain.modules()) + list(checkpointed.modules()):
        if isinstance(m, _BatchNorm):
            m.eval()
    x = torch.rand(2, 3, 64, 96)
    outs_a = plain(x)
    outs_b = checkpointed(x)
    sum(o.square().mean() for o in outs_a).backward()
    sum(o.square().mean() for o in outs_b).backward()
    for a, b in zip(outs_a, outs_b):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    for (name, pa), pb in zip(plain.named_parameters(),
                              checkpointed.parameters()):
        assert pb.grad is not None, name
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_gradients_reach_every_trainable_parameter(mode):
    model = NextViT(with_extra_norm=(mode == 'seg'), frozen_stages=1,
                    with_cp=True).train()
    outs = model(torch.rand(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


# ---------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch, words', [
    ('tiny', ["'tiny'", "'small'", "'base'", "'large'"]),
    (dict(depths=(3, 4, 10, 3)), ['missing', 'stem_channels']),
    (dict(stem_channels=(64, 32, 64), depths=(3, 4, 10, 3),
          drop_path_rate=0.1, width=2), ['unknown', 'width']),
    (dict(stem_channels=(64, 32, 64), depths=(3, 4, 7, 3),
          drop_path_rate=0.1), ['multiple of 5', '(3, 4, 7, 3)']),
])
def test_bad_arch_is_named(arch, words):
    with pytest.raises(ValueError) as info:
        NextViT(arch=arch)
    message = str(info.value)
    assert message.startswith('Next-ViT')
    for word in words:
        assert word in message


@pytest.mark.parametrize('kwargs, word', [
    (dict(out_indices=(0, 4)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages=5'),
    (dict(frozen_stages=-2), 'frozen_stages=-2'),
])
def test_bad_indices_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        NextViT(**kwargs)


@pytest.mark.parametrize('shape, words', [
    ((1, 3, 20, 20), ['20x20', 'at least 32x32']),
    ((1, 3, 8, 64), ['8x64', 'stage 2', 'only 8']),
    ((1, 1, 64, 64), ['(1, 1, 64, 64)', '3 channels']),
    ((3, 64, 64), ['(3, 64, 64)', 'NCHW']),
])
def test_bad_input_is_named(shape, words):
    model = NextViT().eval()
    with pytest.raises(ValueError) as info:
        model(torch.rand(*shape))
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith('Next-ViT')
    for word in words:
        assert word in first_line


def test_smallest_accepted_input():
    model = NextViT().eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 25, 25))
    assert outs[-1].shape[-2:] == (1, 1)


def test_docstring_example_runs():
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(NextViT, 'NextViT', globs={})
    assert sum(len(t.examples) for t in tests) >= 3
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 3
