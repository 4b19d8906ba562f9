"""The inference path of Next-ViT (norms folded per call, fused attention,
channels-last layout, fused oneDNN convolutions) computes what the plain
modules compute: checked against the upstream fixture and against the
autograd path, in every layout and kernel choice it can take."""
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_matches_upstream, rel_err, seeded_model

from mmnextvit.models import NextViT
from mmnextvit.models.backbones import nextvit as nextvit_module
from mmnextvit.ops import cpu_kernels

TOLERANCE = 1e-5


@pytest.fixture
def layout(request, monkeypatch):
    """Force the channels-last choice of the inference path either way."""
    monkeypatch.setattr(NextViT, 'inference_channels_last',
                        request.param == 'channels_last')
    return request.param


@pytest.fixture
def kernel(request, monkeypatch):
    if request.param == 'standard':
        monkeypatch.setattr(cpu_kernels, '_FUSED_CONV', None)
    elif cpu_kernels._FUSED_CONV is None:
        pytest.skip('this torch build has no fused oneDNN convolution')
    return request.param


@pytest.mark.parametrize('layout', ['channels_last', 'nchw'], indirect=True)
@pytest.mark.parametrize('kernel', ['fused', 'standard'], indirect=True)
@pytest.mark.parametrize('mode, deploy', [('det', False), ('det', True),
                                          ('seg', True)])
def test_inference_path_matches_upstream(parity, layout, kernel, mode,
                                         deploy):
    model = seeded_model(mode)
    if deploy:
        model.switch_to_deploy()
    with torch.no_grad():
        assert model._inference_ready()
    assert_matches_upstream(model, parity, mode, TOLERANCE)


@pytest.fixture
def small_blocks(monkeypatch):
    """Make the size-dependent parts of the inference path (strip-wise
    MLPs, attention on oneDNN convolutions in blocks of queries, features
    copied back to NCHW a few rows at a time) act on the small test inputs,
    with uneven last strips and blocks."""
    if (cpu_kernels._FUSED_CONV_ADD_ is None
            or cpu_kernels._REORDER_WEIGHT is None):
        pytest.skip('this torch build lacks the in-place oneDNN convolution')
    monkeypatch.setattr(nextvit_module, 'STRIP_HIDDEN_BYTES', 40 << 10)
    monkeypatch.setattr(cpu_kernels, 'ONEDNN_ATTENTION_MIN_KEYS', 1)
    monkeypatch.setattr(cpu_kernels, 'ATTENTION_BLOCK_BYTES', 24 << 10)
    monkeypatch.setattr(cpu_kernels, 'PLAIN_COPY_BYTES', 3 << 10)


@pytest.mark.parametrize('mode, deploy', [('det', False), ('det', True),
                                          ('seg', True)])
def test_blockwise_inference_matches_upstream(parity, small_blocks, mode,
                                              deploy):
    model = seeded_model(mode)
    if deploy:
        model.switch_to_deploy()
    # The running maps are overwritten in place, never the input.
    assert_matches_upstream(model, parity, mode, TOLERANCE)


@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3), (2, )])
def test_blockwise_inference_keeps_returned_features(small_blocks,
                                                     out_indices):
    """Features handed out are never overwritten by the stages after
    them, whatever is returned; batches go strip by strip per image."""
    model = seeded_model('seg')
    model.out_indices = out_indices
    x = torch.randn(3, 3, 97, 131, generator=torch.Generator().manual_seed(5))
    for layout in (torch.contiguous_format, torch.channels_last):
        x = x.contiguous(memory_format=layout)
        with torch.no_grad():
            fast = model(x)
        slow = model(x)  # autograd on: the modules as they are
        assert len(fast) == len(out_indices)
        for a, b in zip(fast, slow):
            assert rel_err(a, b.detach()) < TOLERANCE


@pytest.mark.parametrize('keys, block_bytes', [(50, 24 << 10), (49, 1 << 30),
                                               (7, 1)])
def test_onednn_attention_equals_explicit_attention(keys, block_bytes,
                                                    monkeypatch):
    if (cpu_kernels._FUSED_CONV is None
            or cpu_kernels._REORDER_WEIGHT is None):
        pytest.skip('this torch build has no fused oneDNN convolution')
    monkeypatch.setattr(cpu_kernels, 'ATTENTION_BLOCK_BYTES', block_bytes)
    g = torch.Generator().manual_seed(1)
    batch, length, channels, heads = 2, 203, 192, 6
    q, k, v = (torch.randn(batch, n, channels, generator=g) * 3
               for n in (length, keys, keys))
    got = cpu_kernels.attention(q, k, v, heads, 32**-0.5)
    split = lambda t: t.reshape(batch, -1, heads, 32).transpose(1, 2)  # noqa
    attn = ((split(q) @ split(k).transpose(-2, -1)) * 32**-0.5).softmax(-1)
    expected = (attn @ split(v)).transpose(1, 2).reshape(batch, length,
                                                         channels)
    assert rel_err(got, expected) < TOLERANCE


@pytest.mark.parametrize('mode', ['det', 'seg'])
def test_autograd_path_matches_upstream(parity, mode):
    """Eval mode with autograd on runs the modules themselves."""
    model = seeded_model(mode)
    expected = parity['arches']['small'][mode]['feats']
    x = parity['inputs'][0].clone().requires_grad_()
    assert not model._inference_ready()
    outs = model(x)
    for out, ref in zip(outs, expected[0]):
        assert rel_err(out.detach(), ref) < TOLERANCE
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_channels_last_input_gives_channels_last_features():
    model = seeded_model()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        plain = model(x)
        cl = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(plain, cl):
        assert b.is_contiguous(memory_format=torch.channels_last)
        assert rel_err(b, a) < TOLERANCE


@pytest.mark.parametrize('arch, batch', [('small', 3), ('base', 1)])
def test_inference_path_matches_autograd_path(arch, batch):
    model = seeded_model('seg', arch)
    x = torch.randn(batch, 3, 97, 131,
                    generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast = model(x)
    slow = model(x)  # autograd on: the modules as they are
    for a, b in zip(fast, slow):
        assert rel_err(a, b.detach()) < TOLERANCE


def test_training_mode_never_takes_the_inference_path():
    model = seeded_model()
    model.train()
    with torch.no_grad():
        assert not model._inference_ready()
    model.eval()
    model.features[3].norm.train()  # a norm with batch statistics
    with torch.no_grad():
        assert not model._inference_ready()


def test_group_norm_keeps_the_module_path():
    model = NextViT(norm_cfg=dict(type='GN', num_groups=8)).eval()
    with torch.no_grad():
        assert not model._inference_ready()
        outs = model(torch.rand(1, 3, 64, 64))
    assert outs[-1].shape == (1, 1024, 2, 2)


@pytest.mark.parametrize('sr_ratio, length', [(4, 16 * 16 + 7), (2, 50),
                                              (1, 49)])
def test_fused_attention_equals_explicit_attention(sr_ratio, length):
    """E-MHSA with F.scaled_dot_product_attention against the written-out
    upstream formula: AvgPool1d over the token sequence, BatchNorm1d,
    softmax(q k^T * 32^-0.5) v."""
    torch.manual_seed(0)
    attention = nextvit_module.EfficientAttention(
        192, sr_ratio, 0., 0., dict(type='BN')).eval()
    if sr_ratio > 1:
        attention.norm.running_mean.uniform_(-0.5, 0.5)
        attention.norm.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, length, 192)
    with torch.no_grad():
        got = attention(x)
        batch, n, c = x.shape
        heads = c // 32
        q = attention.q(x).reshape(batch, n, heads, 32).permute(0, 2, 1, 3)
        kv = x
        if sr_ratio > 1:
            pool = torch.nn.AvgPool1d(sr_ratio**2, stride=sr_ratio**2)
            kv = attention.norm(pool(x.transpose(1, 2))).transpose(1, 2)
        k = attention.k(kv).reshape(batch, -1, heads, 32).permute(0, 2, 3, 1)
        v = attention.v(kv).reshape(batch, -1, heads, 32).permute(0, 2, 1, 3)
        attn = ((q @ k) * 32**-0.5).softmax(dim=-1)
        expected = attention.proj(
            (attn @ v).transpose(1, 2).reshape(batch, n, c))
    assert rel_err(got, expected) < TOLERANCE


def test_attention_dropout_only_in_training():
    attention = nextvit_module.EfficientAttention(64, 1, 0.5, 0.,
                                                  dict(type='BN'))
    x = torch.randn(1, 20, 64)
    attention.eval()
    assert torch.equal(attention(x), attention(x))
    attention.train()
    torch.manual_seed(0)
    a = attention(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, attention(x))


def test_fused_convolution_matches_standard_ops():
    if cpu_kernels._FUSED_CONV is None:
        pytest.skip('this torch build has no fused oneDNN convolution')
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=2)
    x = torch.randn(1, 64, 17, 23)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xf = x.contiguous(memory_format=memory_format)
        with torch.no_grad():
            for relu, residual in ((True, None), (False, xf)):
                args = (xf, conv, conv.weight, conv.bias, relu, residual)
                fused = cpu_kernels.conv2d(*args, fused_kernel=True)
                plain = F.conv2d(xf, conv.weight, conv.bias, padding=1,
                                 groups=2)
                plain = plain.relu() if relu else xf + plain
                assert rel_err(fused, plain) < TOLERANCE
                assert fused.is_contiguous(memory_format=memory_format)


def test_tracing_sees_standard_operators_only():
    model = seeded_model()
    model.switch_to_deploy()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, ), check_trace=False)
        expected = model(x)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert not any(kind.startswith('mkldnn::') for kind in kinds)
    for a, b in zip(traced(x), expected):
        assert rel_err(a, b) < TOLERANCE


def test_switch_to_deploy_keeps_state_dict_keys():
    model = seeded_model()
    keys = {k: v.shape for k, v in model.state_dict().items()}
    model.switch_to_deploy()
    after = {k: v.shape for k, v in model.state_dict().items()}
    # Folding removes the norms and adds biases; nothing is renamed.
    assert set(after) - set(keys) <= {
        k for k in after if k.endswith('.bias')
    }
    assert all(after[k] == keys[k] for k in set(after) & set(keys))


def _deployed_pair(prepack_first=True):
    """The same seeded model deployed with and without prepacked weights."""
    packed, plain = seeded_model(), seeded_model()
    plain.inference_prepack = False
    packed.switch_to_deploy()
    plain.switch_to_deploy()
    return packed, plain


def test_prepacked_weights_give_the_same_features(parity):
    if (cpu_kernels._FUSED_CONV is None
            or cpu_kernels._REORDER_WEIGHT is None):
        pytest.skip('this torch build has no oneDNN weight reorder')
    packed, plain = _deployed_pair()
    convs = [
        m for m in packed.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert any(isinstance(m, torch.nn.Linear) for m in convs)
    assert all(m.prepack_weight for m in convs)
    assert not any(
        getattr(m, 'prepack_weight', False) for m in plain.modules())
    expected = parity['arches']['small']['det']['feats']
    (x, feats), = zip(parity['inputs'], expected)
    other = torch.randn(1, 3, 64, 96,
                        generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        # The fixture's size, another size, then the first again: the
        # packed weights follow the input shape.
        for image, reference in ((x, feats), (other, None), (x, feats)):
            outs, plains = packed(image), plain(image)
            for index, (out, same) in enumerate(zip(outs, plains)):
                assert rel_err(out, same) < 1e-6
                if reference is not None:
                    assert rel_err(out, reference[index]) < TOLERANCE
    # A packed copy per input shape met (the stem's first convolution sees
    # both images as they are).
    stem_conv = packed.stem[0].conv
    shapes = {key[0] for key in cpu_kernels._PACKED_WEIGHTS[stem_conv]}
    assert shapes == {tuple(x.shape), tuple(other.shape)}, shapes
    # Every convolution and linear ran on a packed copy, kept outside the
    # module (linears where this build can reorder their weights).
    if cpu_kernels._REORDER_LINEAR_WEIGHT is None:
        convs = [m for m in convs if isinstance(m, torch.nn.Conv2d)]
    assert all(m in cpu_kernels._PACKED_WEIGHTS for m in convs)
    assert not any(
        isinstance(v, torch.Tensor) and v.is_mkldnn
        for m in convs for v in vars(m).values())


def test_prepacked_weights_follow_new_weights():
    """Weights loaded after switch_to_deploy() (and after a forward made the
    packed copies) are the ones used."""
    if cpu_kernels._REORDER_WEIGHT is None:
        pytest.skip('this torch build has no oneDNN weight reorder')
    packed, plain = _deployed_pair()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        packed(x)
        other = {k: v * 1.1 if v.is_floating_point() else v
                 for k, v in plain.state_dict().items()}
        packed.load_state_dict(other)
        plain.load_state_dict(other)
        # Stale packed weights would be off by the 10% change; two fp32
        # kernel paths differ by rounding (1.1e-6 seen on torch 2.1 on an
        # AVX-512 Zen 5 CPU).
        for out, ref in zip(packed(x), plain(x)):
            assert rel_err(out, ref) < 1e-5


def test_a_used_deployed_model_copies_pickles_and_saves(tmp_path):
    import copy
    import pickle
    packed, _ = _deployed_pair()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = packed(x)
        clone = copy.deepcopy(packed)
        restored = pickle.loads(pickle.dumps(packed))
        torch.save(packed.state_dict(), tmp_path / 'deployed.pth')
        for model in (clone, restored):
            for out, ref in zip(model(x), before):
                assert torch.equal(out, ref)
