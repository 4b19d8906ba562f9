"""Next-ViT in reduced precision: under autocast (bf16 on the CPU, fp16 on
CUDA) and as a model cast to bf16, on every path the forward can take
(training with backward, the module path in eval mode, the eval-mode
inference path, after switch_to_deploy(), detection and segmentation mode,
batches of one and two, odd sizes). The features come out in the reduced
dtype and close to the fp32 ones.

The bound. bf16 keeps 8 significant bits: every rounding of a map or a
weight is off by up to 2**-9 (0.2 %) relative. Each of the ~40 layers of
Next-ViT-S rounds its input, weights and output, the errors add up along the
residual stream, and the attention softmax and the batch norms amplify them
a little, so the features differ from fp32 by about 1-2 % of their largest
magnitude (measured: 0.4-1.3 % on these seeded weights, up to 3 % in a
training step from random weights). The tests allow ``BF16_BOUND`` = 4 %, a
margin for other inputs, and ask the mean error to stay under 2 % (measured
0.3-1.2 %): a systematic error, such as a norm folded wrongly or a stage in
the wrong dtype, gives errors of the order of the features themselves.
fp16 keeps 11 bits, 8x finer.
"""
import pytest
import torch
from helpers import rel_err, seeded_model

from mmnextvit.compat.torch import autocast_by_device_type, autocast_dtype
from mmnextvit.models import NextViT
from mmnextvit.ops import cpu_kernels

BF16_BOUND = 4e-2
FP16_BOUND = 1e-2
# Mean absolute error relative to the mean magnitude.
MEAN_BOUND = 2e-2
# A shortened Next-ViT (every block kind, both attention reductions that
# pool) for the training tests: bf16 autograd is slow on CPUs without bf16
# hardware.
SHORT_ARCH = dict(stem_channels=(64, 32, 64), depths=(1, 1, 5, 1),
                  drop_path_rate=0.1)


def _mean_rel_err(actual, expected):
    return ((actual.float() - expected).abs().mean() /
            expected.abs().mean().clamp_min(1e-12)).item()


def _assert_close(feats, reference, dtype, bound=BF16_BOUND):
    assert len(feats) == len(reference)
    for out, ref in zip(feats, reference):
        assert out.dtype == dtype
        assert out.shape == ref.shape
        assert torch.isfinite(out).all()
        assert rel_err(out.float(), ref) < bound
        assert _mean_rel_err(out, ref) < MEAN_BOUND


def _input(batch, height, width, device='cpu'):
    g = torch.Generator().manual_seed(batch * 1000 + height + width)
    return torch.randn(batch, 3, height, width, generator=g).to(device)


@pytest.fixture(scope='module')
def models():
    """Seeded Next-ViT-S for both modes, as loaded and deployed."""
    built = {}
    for mode in ('det', 'seg'):
        built[mode, False] = seeded_model(mode)
        built[mode, True] = seeded_model(mode)
        built[mode, True].switch_to_deploy()
    return built


@pytest.mark.parametrize('mode, deploy, batch, size', [
    ('det', False, 1, (64, 64)),
    ('det', True, 2, (65, 97)),
    ('seg', False, 2, (64, 64)),
    ('seg', True, 1, (97, 65)),
])
def test_autocast_bf16_inference_path(models, mode, deploy, batch, size):
    """What mmengine's test loop with ``fp16=True`` does on a CPU: eval mode
    under ``torch.no_grad()`` and bf16 autocast."""
    model = models[mode, deploy]
    x = _input(batch, *size)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert model._inference_ready()
            feats = model(x)
    _assert_close(feats, reference, torch.bfloat16)
    # NCHW in, NCHW out, as in fp32 (mmcv's CPU RoIAlign reads NCHW).
    assert all(f.is_contiguous() for f in feats)


def test_autocast_bf16_module_path_in_eval_mode(models):
    """Eval mode with autograd on runs the modules, under autocast too."""
    model = models['seg', False]
    x = _input(1, 64, 96).requires_grad_()
    with torch.no_grad():
        reference = model(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not model._inference_ready()
        feats = model(x)
    _assert_close([f.detach() for f in feats], reference, torch.bfloat16)
    sum(f.float().sum() for f in feats).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize('mode, with_cp', [('seg', True)])
def test_autocast_bf16_training_backward(mode, with_cp):
    """A training step under autocast: bf16 features, fp32 gradients on
    every trainable parameter, close to the fp32 step's."""
    torch.manual_seed(0)
    # No drop path in the comparison: mmcv's DropPath draws its mask in the
    # features' dtype, and a bf16 draw from the same seed drops other
    # samples than an fp32 one (on torch 2.1 at the last stage here).
    model = NextViT(
        arch=dict(SHORT_ARCH, drop_path_rate=0.0),
        with_extra_norm=(mode == 'seg'),
        with_cp=with_cp)
    model.init_weights()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _input(2, 64, 64)

    def step(autocast):
        model.load_state_dict(state)
        model.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            feats = model(x)
            loss = sum(f.float().square().mean() for f in feats)
        loss.backward()
        return feats, {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }

    feats32, grads32 = step(False)
    feats16, grads16 = step(True)
    assert all(f.dtype == torch.bfloat16 for f in feats16)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads16) == trainable
    for name, grad in grads16.items():
        assert grad.dtype == torch.float32, name
        assert torch.isfinite(grad).all(), name
    # Gradients are products along the whole network and thus noisier than
    # the features; the total gradient must still point the same way.
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    cosine = torch.nn.functional.cosine_similarity(flat32, flat16, dim=0)
    assert cosine > 0.99
    # Twice the bound: in training the batch norms divide by statistics of
    # few values (at the last stage 2 images x 2 x 2 pixels), which
    # amplifies the rounding of what they normalise.
    _assert_close([f.detach() for f in feats16],
                  [f.detach() for f in feats32], torch.bfloat16,
                  2 * BF16_BOUND)


@pytest.mark.parametrize('mode, deploy, batch, size', [
    ('det', False, 2, (64, 64)),
    ('det', True, 1, (65, 97)),
    ('seg', True, 2, (64, 64)),
])
def test_bf16_model_inference(models, mode, deploy, batch, size):
    """A model cast with ``.to(torch.bfloat16)`` fed a bf16 input, on the
    eval-mode inference path (norms folded per call or deployed)."""
    x = _input(batch, *size)
    with torch.no_grad():
        reference = models[mode, deploy](x)
    model = seeded_model(mode)
    if deploy:
        model.switch_to_deploy()
    model.to(torch.bfloat16)
    with torch.no_grad():
        feats = model(x.to(torch.bfloat16))
    _assert_close(feats, reference, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_bf16_model_deployed_after_the_cast(models):
    """switch_to_deploy() on a bf16 model folds in fp32 and keeps every
    parameter bf16 (the folded biases it creates included)."""
    x = _input(1, 64, 64)
    with torch.no_grad():
        reference = models['seg', False](x)
    model = seeded_model('seg').to(torch.bfloat16)
    model.switch_to_deploy()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        feats = model(x.to(torch.bfloat16))
    _assert_close(feats, reference, torch.bfloat16)


@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_bf16_model_training_backward(mode):
    model = NextViT(arch=SHORT_ARCH, with_extra_norm=(mode == 'seg'))
    model.to(torch.bfloat16).train()
    x = _input(2, 64, 64).to(torch.bfloat16).requires_grad_()
    feats = model(x)
    assert all(f.dtype == torch.bfloat16 for f in feats)
    sum(f.float().square().mean() for f in feats).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.dtype == torch.bfloat16, name
        assert torch.isfinite(param.grad).all(), name
    assert torch.isfinite(x.grad).all()


def _set_cuda_autocast(enabled):
    if autocast_by_device_type():
        torch.set_autocast_enabled('cuda', enabled)
    else:  # torch < 2.4: the flag without a device is CUDA's
        torch.set_autocast_enabled(enabled)


def test_fp32_is_untouched_by_an_autocast_elsewhere(models):
    """Autocast of another device type leaves a CPU forward in fp32, on the
    exact fp32 path."""
    model = models['det', True]
    x = _input(1, 64, 64)
    with torch.no_grad():
        reference = model(x)
        # CUDA autocast switched on (its thread-local flag: a CPU-only
        # build cannot enter torch.autocast('cuda')), CPU autocast off.
        previous = autocast_dtype('cuda') is not None
        _set_cuda_autocast(True)
        try:
            assert autocast_dtype('cuda') is not None
            assert autocast_dtype('cpu') is None
            feats = model(x)
        finally:
            _set_cuda_autocast(previous)
    for out, ref in zip(feats, reference):
        assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_onednn_kernels_serve_reduced_precision_only_where_supported():
    """bf16 maps go to oneDNN's fused kernels exactly where the CPU has bf16
    kernels for them (elsewhere oneDNN refuses them), never to the oneDNN
    attention (its softmax would round the scores)."""
    x = torch.zeros(1, 8, 4, 4, dtype=torch.bfloat16)
    supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_kernels.fused_kernels_usable(x) == (
        supported and cpu_kernels._FUSED_CONV is not None)
    assert cpu_kernels.fused_kernels_usable(x.float()) == (
        cpu_kernels._FUSED_CONV is not None)
    q = torch.zeros(1, 256, 64, dtype=torch.bfloat16)
    assert not cpu_kernels.attention_usable(q, q)


@pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
    reason='this CPU has no oneDNN bf16 kernels (AVX-512 BF16 / AMX)')
def test_fused_bf16_kernels_match_standard_ops(models, monkeypatch):
    """Where oneDNN runs bf16, the fused path gives what torch's standard
    bf16 operators give, within bf16 rounding."""
    model = seeded_model('det')
    model.switch_to_deploy()
    model.to(torch.bfloat16)
    x = _input(1, 64, 96).to(torch.bfloat16)
    with torch.no_grad():
        fused = model(x)
        monkeypatch.setattr(cpu_kernels, '_FUSED_CONV', None)
        standard = model(x)
    for a, b in zip(fused, standard):
        assert rel_err(a.float(), b.float()) < BF16_BOUND


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('deploy', [False, True])
def test_autocast_fp16_on_cuda(deploy):
    model = seeded_model('seg')
    if deploy:
        model.switch_to_deploy()
    model.cuda()
    x = _input(2, 64, 96, device='cuda')
    with torch.no_grad():
        reference = [f.float() for f in model(x)]
        with torch.autocast('cuda', dtype=torch.float16):
            feats = model(x)
    _assert_close(feats, reference, torch.float16, FP16_BOUND)
