"""The Semantic FPN and UperNet configs: they load and build, reproduce the
upstream ADE20K recipes (backbone, heads, optimizer, no-decay set,
schedules, pipelines, multi-scale testing), have the paper's parameter
counts, and take a released upstream segmentation checkpoint."""
import math
import os.path as osp
import re

import pytest
import torch
from helpers import rel_err, results_table, seeded_state, upstream_keys
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.runner import load_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

from mmnextvit.models import NextViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARCHS = ('small', 'base', 'large')
# Folder and schedule part of the file name of each method.
METHODS = {'semfpn': '40k-bs32', 'upernet': '160k'}
CONFIGS = [(method, arch) for method in METHODS for arch in ARCHS]

# Parameters of the segmentors in millions (upstream README, "Semantic FPN
# 80k" and "UperNet 160k" tables; the same in the Next-ViT paper).
PAPER_PARAMS = {
    ('semfpn', 'small'): 36.3,
    ('semfpn', 'base'): 49.3,
    ('semfpn', 'large'): 62.4,
    ('upernet', 'small'): 66.3,
    ('upernet', 'base'): 79.3,
    ('upernet', 'large'): 92.4,
}
# What released upstream segmentation models hold but never use: the
# ImageNet classifier (Linear 1024 -> 1000) and the fourth extra norm
# (BN 1024, weight and bias).
UNUSED_UPSTREAM_PARAMS = 1024 * 1000 + 1000 + 2 * 1024


def config_path(method: str, arch: str) -> str:
    return osp.join(ROOT, 'configs', method,
                    f'nextvit_{arch[0]}_{METHODS[method]}.py')


def load(method: str, arch: str = 'small') -> Config:
    return Config.fromfile(config_path(method, arch))


_SEGMENTORS = {}


def segmentor(method: str, arch: str = 'small'):
    """The segmentor a config builds (SyncBN as configured), built once per
    module run."""
    if (method, arch) not in _SEGMENTORS:
        cfg = load(method, arch)
        init_default_scope(cfg.default_scope)
        from mmseg.registry import MODELS
        _SEGMENTORS[method, arch] = MODELS.build(cfg.model)
    return _SEGMENTORS[method, arch]


# ---------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('method,arch', CONFIGS)
def test_config_builds_the_upstream_segmentor(method, arch):
    cfg = load(method, arch)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(
        imports=['mmnextvit'], allow_failed_imports=False)
    assert cfg.model.pretrained is None
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.type == 'mmnextvit.NextViT'
    assert backbone_cfg.arch == arch
    assert backbone_cfg.frozen_stages == -1
    assert backbone_cfg.norm_eval is False
    assert backbone_cfg.with_extra_norm is True
    # Upstream's segmentation code: 0.2 for every variant.
    assert backbone_cfg.drop_path_rate == 0.2
    assert backbone_cfg.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/nextvit_{arch}_in1k_224.pth')
    assert cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.custom_hooks == [
        dict(type='mmnextvit.SegDataCheckHook'),
        dict(type='mmnextvit.StopOnInvalidLossHook')
    ]

    model = segmentor(method, arch)
    assert type(model).__name__ == 'EncoderDecoder'
    assert isinstance(model.backbone, NextViT)
    assert model.backbone.with_extra_norm
    assert model.backbone.arch['depths'] == NextViT.arch_settings[arch][
        'depths']
    # Synchronised batch norms in the backbone and every head, as upstream.
    heads = [model.backbone, model.decode_head] + (
        [model.auxiliary_head] if method == 'upernet' else [])
    for part in heads:
        norms = [m for m in part.modules() if isinstance(m, _BatchNorm)]
        assert norms and all(
            isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    assert model.decode_head.num_classes == 150
    # Variants change the backbone and nothing else.
    small = load(method, 'small')
    small.model.backbone.arch = arch
    small.model.backbone.init_cfg.checkpoint = \
        backbone_cfg.init_cfg.checkpoint
    assert small.model == cfg.model
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'train_dataloader', 'tta_pipeline'):
        assert small[key] == cfg[key], key


def test_semantic_fpn_heads():
    model = load('semfpn').model
    assert model.neck.type == 'FPN'
    assert model.neck.in_channels == [96, 256, 512, 1024]
    assert model.neck.out_channels == 256 and model.neck.num_outs == 4
    head = model.decode_head
    assert head.type == 'FPNHead'
    assert (head.channels, head.dropout_ratio) == (128, 0.1)
    assert 'auxiliary_head' not in model


def test_upernet_heads():
    model = load('upernet').model
    assert 'neck' not in model
    head = model.decode_head
    assert head.type == 'UPerHead'
    assert head.in_channels == [96, 256, 512, 1024]
    assert head.in_index == [0, 1, 2, 3]
    assert head.pool_scales == (1, 2, 3, 6)
    assert (head.channels, head.num_classes) == (512, 150)
    aux = model.auxiliary_head
    assert aux.type == 'FCNHead'
    # Stage 3 of Next-ViT has 512 channels.
    assert (aux.in_channels, aux.in_index, aux.channels) == (512, 2, 256)
    assert aux.num_classes == 150
    assert aux.loss_decode.loss_weight == 0.4


@pytest.mark.parametrize('method', METHODS)
def test_pipelines(method):
    """mmseg 1.x's ADE20K pipelines are upstream's mmseg 0.x ones: train
    resize (2048, 512) x 0.5..2.0, 512 crop with cat_max_ratio 0.75, flip,
    photometric distortion; test (2048, 512) keeping the ratio, whole
    image; ADE's label 0 ignored."""
    cfg = load(method)
    train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['LoadAnnotations']['reduce_zero_label'] is True
    assert train['RandomResize']['scale'] == (2048, 512)
    assert train['RandomResize']['ratio_range'] == (0.5, 2.0)
    assert train['RandomCrop'] == dict(
        type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75)
    assert train['RandomFlip']['prob'] == 0.5
    assert 'PhotoMetricDistortion' in train
    test = {t['type']: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test['Resize'] == dict(
        type='Resize', scale=(2048, 512), keep_ratio=True)
    assert test['LoadAnnotations']['reduce_zero_label'] is True
    assert cfg.model.test_cfg == dict(mode='whole')
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'


@pytest.mark.parametrize('method', METHODS)
def test_multi_scale_flip_testing(method):
    """The "ms" column: upstream's MultiScaleFlipAug resizes within
    (2048, 512) x ratio for ratios 0.5..1.75, each with and without a
    horizontal flip, and averages the softmax scores."""
    cfg = load(method)
    assert cfg.tta_model.type == 'SegTTAModel'
    load_image, tta = cfg.tta_pipeline
    assert load_image['type'] == 'LoadImageFromFile'
    resizes, flips, annotations, pack = tta['transforms']
    ratios = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert [r['scale'] for r in resizes] == [(int(2048 * r), int(512 * r))
                                             for r in ratios]
    assert all(r['keep_ratio'] for r in resizes)
    assert [f['prob'] for f in flips] == [0., 1.]
    assert annotations == [dict(type='LoadAnnotations')]
    assert pack == [dict(type='PackSegInputs')]

    # The scales the transforms produce on a 683 x 512 ADE-sized image.
    init_default_scope('mmseg')
    import numpy as np
    from mmcv.transforms import Compose
    sizes = []
    for resize in resizes:
        out = Compose([resize])(dict(img=np.zeros((512, 683, 3), np.uint8)))
        sizes.append(out['img'].shape[:2])
    assert sizes == [(256, 342), (384, 512), (512, 683), (640, 854),
                     (768, 1025), (896, 1195)]


# ---------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('method,arch', CONFIGS)
def test_parameter_count_matches_the_paper(method, arch):
    """The paper's counts are those of upstream's model objects, which
    still carried the unused ImageNet classifier (1.025M) and fourth extra
    norm (2k). Measured here, without them: Semantic FPN 35.23 / 48.28 /
    61.34M, UperNet (auxiliary head included) 65.26 / 78.31 / 91.37M; with
    them 36.26 / 49.31 / 62.37M and 66.29 / 79.34 / 92.40M."""
    model = segmentor(method, arch)
    total = sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    own = {k for k, _ in model.backbone.named_parameters()}
    unused = sum(
        torch.Size(shape).numel()
        for name, shape in upstream_keys(model.backbone)
        if name not in own and name.endswith(('weight', 'bias')))
    assert unused == UNUSED_UPSTREAM_PARAMS
    counted_upstream_way = (total + unused) / 1e6
    assert abs(counted_upstream_way - PAPER_PARAMS[method, arch]) < 0.05, (
        f'{method} {arch}: {counted_upstream_way:.3f}M counted as upstream '
        f'did ({total / 1e6:.3f}M built) vs the paper\'s '
        f'{PAPER_PARAMS[method, arch]}M')


# ---------------------------------------------------------------------------
# Optimizer and schedules
# ---------------------------------------------------------------------------
def _weight_decay_by_name(model, optim_cfg):
    wrapper = build_optim_wrapper(model, optim_cfg)
    assert type(wrapper).__name__ == 'OptimWrapper'
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[names[id(param)]] = (group['lr'], group['betas'],
                                       group['weight_decay'])
    assert set(decay) == set(names.values())
    return decay


def _norm_params(model):
    return {
        f'{module_name}.{name}'
        for module_name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        for name, _ in module.named_parameters(recurse=False)
    }


def test_semantic_fpn_optimizer_decays_everything():
    cfg = load('semfpn')
    assert cfg.optim_wrapper.get('clip_grad') is None
    assert 'paramwise_cfg' not in cfg.optim_wrapper
    decay = _weight_decay_by_name(segmentor('semfpn'), cfg.optim_wrapper)
    assert set(decay.values()) == {(1e-4, (0.9, 0.999), 1e-4)}


def test_upernet_optimizer_has_no_decay_exactly_on_norms():
    cfg = load('upernet')
    model = segmentor('upernet')
    decay = _weight_decay_by_name(model, cfg.optim_wrapper)
    assert {(lr, betas) for lr, betas, _ in decay.values()} == {
        (6e-5, (0.9, 0.999))
    }
    no_decay = {name for name, (_, _, wd) in decay.items() if wd == 0}
    # Every batch-norm parameter of backbone and heads (the heads' are
    # ConvModule ``bn``s), found by the 'norm'/'bn' name keys, and nothing
    # else.
    norm_params = _norm_params(model)
    assert any(n.startswith('decode_head.') for n in norm_params)
    assert any(n.startswith('auxiliary_head.') for n in norm_params)
    assert no_decay == norm_params
    assert all(decay[name][2] == 0.01 for name in set(decay) - no_decay)


def _run_schedulers(cfg, base_lr, points):
    """The learning rate of each iteration in ``points`` when the config's
    schedulers run as mmengine's ParamSchedulerHook drives them."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(c, optimizer=optimizer))
        for c in cfg.param_scheduler
    ]
    lrs, wanted = {}, set(points)
    for iteration in range(max(points) + 1):
        if iteration in wanted:
            lrs[iteration] = optimizer.param_groups[0]['lr']
        for scheduler in schedulers:
            scheduler.step()
    return lrs


def test_semantic_fpn_schedule():
    """40k iterations at 8 x 4 = 32 images: upstream's "80k" run, which
    halves mmseg's 80k iterations because it doubles the batch. Poly decay
    with power 0.9 to 1e-6 and no warmup, as mmcv 1.x computes it."""
    cfg = load('semfpn')
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size == 4  # 8 GPUs x 4 = 32
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=32)
    assert cfg.default_hooks.checkpoint.interval == 4000
    assert cfg.train_cfg.val_interval == 4000
    points = [0, 1, 100, 10000, 20000, 39000, 39999]
    lrs = _run_schedulers(cfg, 1e-4, points)
    for it in points:
        upstream = (1e-4 - 1e-6) * (1 - it / 40000)**0.9 + 1e-6
        assert lrs[it] == pytest.approx(upstream, rel=1e-9), it


def test_upernet_schedule():
    """160k iterations at 8 x 2 = 16 images. mmcv 1.x multiplies the
    linear warmup (1500 iterations from 1e-6) onto the poly decay (power 1,
    to 0) of the whole run, which mmengine's two schedulers reproduce."""
    cfg = load('upernet')
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2  # 8 GPUs x 2 = 16
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    points = [0, 1, 750, 1499, 1500, 1501, 80000, 159999]
    lrs = _run_schedulers(cfg, 6e-5, points)
    for it in points:
        regular = 6e-5 * (1 - it / 160000)
        if it < 1500:
            k = (1 - it / 1500) * (1 - 1e-6)
            upstream = regular * (1 - k)
        else:
            upstream = regular
        assert lrs[it] == pytest.approx(upstream, rel=1e-9), it
    assert lrs[0] == pytest.approx(6e-11)


# ---------------------------------------------------------------------------
# Released upstream checkpoints
# ---------------------------------------------------------------------------
def ade20k_meta():
    """The ``meta`` of an mmseg 0.x checkpoint (class names and palette)."""
    from mmseg.datasets import ADE20KDataset
    return dict(
        mmseg_version='0.23.0',
        config='# mmseg 0.x config text',
        CLASSES=tuple(ADE20KDataset.METAINFO['classes']),
        PALETTE=[list(c) for c in ADE20KDataset.METAINFO['palette']],
        iter=160000)


def write_upstream_checkpoint(model, path):
    """A file in the layout of upstream's released Semantic FPN / UperNet
    checkpoints: ``state_dict`` with the backbone in upstream's layout under
    ``backbone.`` (all four extra norms, the classifier norm and head),
    neck and heads under mmseg 1.x's names (unchanged since 0.x), and an
    mmseg 0.x ``meta``."""
    # The backbone's tensors are seeded by their upstream names, as in the
    # parity fixture, so upstream's outputs on them are known.
    state = {
        f'backbone.{name}': tensor
        for name, tensor in seeded_state(upstream_keys(
            model.backbone)).items()
    }
    state.update(
        seeded_state([(name, tuple(tensor.shape))
                      for name, tensor in model.state_dict().items()
                      if not name.startswith('backbone.')]))
    torch.save(dict(state_dict=state, meta=ade20k_meta()), path)
    return state


@pytest.mark.parametrize('method', METHODS)
def test_upstream_checkpoint_loads_without_missing_keys(
        method, tmp_path, capsys):
    model = segmentor(method)
    path = str(tmp_path / f'{method}_nextvit_small.pth')
    state = write_upstream_checkpoint(model, path)

    capsys.readouterr()
    load_checkpoint(model, path, map_location='cpu')
    report = capsys.readouterr().out

    own = model.state_dict()
    assert set(own) - set(state) == set()
    unused = set(state) - set(own)
    assert unused == {
        f'backbone.{name}'
        for name in ('extra_norm_list.3.weight', 'extra_norm_list.3.bias',
                     'extra_norm_list.3.running_mean',
                     'extra_norm_list.3.running_var',
                     'extra_norm_list.3.num_batches_tracked',
                     'proj_head.0.weight', 'proj_head.0.bias')
    }
    for name, tensor in own.items():
        assert torch.equal(tensor, state[name]), name
    # MMEngine's own report: the unused tensors, nothing missing.
    assert 'missing keys' not in report
    reported = re.search(r'unexpected key in source state_dict: (.*)',
                         report).group(1)
    assert set(reported.split(', ')) == unused


@pytest.mark.parametrize('method', METHODS)
def test_upstream_checkpoint_gives_upstream_logits(method, parity, tmp_path):
    """With a released checkpoint loaded, the backbone's four features are
    upstream's (the fixture: upstream's segmentation Next-ViT-S on the same
    seeded weights), so the segmentor's logits are upstream's: its heads
    applied to upstream's features and resized to the input, which is what
    mmseg 0.x's ``encode_decode`` computed."""
    model = segmentor(method).eval()
    path = str(tmp_path / 'upstream.pth')
    write_upstream_checkpoint(model, path)
    load_checkpoint(model, path, map_location='cpu', logger='silent')
    x = parity['inputs'][0]
    expected_feats = parity['arches']['small']['seg']['feats'][0]
    metas = [dict(img_shape=tuple(x.shape[-2:]),
                  ori_shape=tuple(x.shape[-2:]),
                  pad_shape=tuple(x.shape[-2:]))]
    with torch.no_grad():
        feats = model.backbone(x)
        for out, ref in zip(feats, expected_feats):
            assert out.shape == ref.shape
            assert rel_err(out, ref) < 1e-5
        logits = model.encode_decode(x, metas)
        neck_in = tuple(expected_feats)
        if model.with_neck:
            neck_in = model.neck(neck_in)
        reference = torch.nn.functional.interpolate(
            model.decode_head(list(neck_in)),
            size=x.shape[-2:],
            mode='bilinear',
            align_corners=False)
    assert logits.shape == (1, 150) + tuple(x.shape[-2:])
    assert rel_err(logits, reference) < 1e-5


def test_upstream_checkpoint_in_init_model(tmp_path):
    """``mmseg.apis.init_model`` (and so MMSegInferencer) reads the class
    names of an mmseg 0.x ``meta`` and runs on a CPU with the config's
    SyncBN (eval mode needs no process group)."""
    from mmseg.apis import inference_model, init_model
    path = str(tmp_path / 'upstream.pth')
    state = write_upstream_checkpoint(segmentor('upernet'), path)
    model = init_model(config_path('upernet', 'small'), path, device='cpu')
    meta = ade20k_meta()
    assert tuple(model.dataset_meta['classes']) == meta['CLASSES']
    name = 'backbone.features.19.e_mhsa.q.weight'
    assert torch.equal(model.state_dict()[name], state[name])
    import numpy as np
    image = np.random.default_rng(0).integers(
        0, 256, size=(80, 112, 3), dtype=np.uint8)
    result = inference_model(model, image)
    assert result.pred_sem_seg.data.shape == (1, 80, 112)
    assert math.isfinite(float(result.seg_logits.data.abs().max()))


# ---------------------------------------------------------------------------
# Metafiles and READMEs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('method', METHODS)
def test_metafile_lists_every_config_with_the_readme_numbers(method):
    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        assert f'configs/{method}/metafile.yml' in yaml.safe_load(
            f)['Import']
    folder = osp.join(ROOT, 'configs', method)
    with open(osp.join(folder, 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    assert sorted(m['Config'] for m in models) == sorted(
        osp.relpath(config_path(method, arch), ROOT) for arch in ARCHS)
    with open(osp.join(folder, 'README.md')) as f:
        rows = results_table(f.read())
    for model, arch in zip(models, ARCHS):
        assert model['Weights'] is None
        params = model['Metadata']['Parameters'] / 1e6
        assert params == pytest.approx(PAPER_PARAMS[method, arch])
        name = osp.basename(model['Config'])
        in1k, in6m = (r['Metrics'] for r in model['Results'])
        for pretrain, metrics in (('ImageNet-1K', in1k),
                                  ('ImageNet-1K-6M', in6m)):
            (row, ) = [r for r in rows if r['pretrain'] == pretrain
                       and r['config'].startswith(f'[config]({name})')]
            assert row['params'] == f'{params:.1f}M'
            assert row['FLOPs'] == f"{model['Metadata']['FLOPs'] // 10**9}G"
            metric = next(k for k in row if k.startswith('mIoU'))
            assert row[metric] == ' / '.join(str(v)
                                             for v in metrics.values())
            assert re.fullmatch(
                r'\[ckpt\]\(https://\S+\) \x00 \[log\]\(https://\S+\.log\)',
                row['download'])


def test_resnet101_semantic_fpn_reference():
    """configs/semfpn/fpn_r101_ade20k-512x512.py is needed while mmseg's
    "r101" Semantic FPN config builds a ResNet-50, and it is that config
    with a ResNet-101 and nothing else changed."""
    from mmnextvit.config_resolver import resolve_any
    stock = Config.fromfile(
        resolve_any('mmseg::sem_fpn/fpn_r101_4xb4-160k_ade20k-512x512.py'))
    assert stock.model.backbone.depth == 50, (
        "mmseg's sem_fpn/fpn_r101 config builds a ResNet-101 now: remove "
        'configs/semfpn/fpn_r101_ade20k-512x512.py and compare with it')
    ours = Config.fromfile(
        osp.join(ROOT, 'configs', 'semfpn', 'fpn_r101_ade20k-512x512.py'))
    assert ours.model.backbone.depth == 101
    assert ours.model.pretrained == 'open-mmlab://resnet101_v1c'
    ours.model.backbone.depth = 50
    ours.model.pretrained = stock.model.pretrained

    def unscoped(value):
        # A base read as `mmseg::...` marks its dicts with their scope.
        if isinstance(value, dict):
            return {k: unscoped(v) for k, v in value.items() if k != '_scope_'}
        if isinstance(value, (list, tuple)):
            return type(value)(unscoped(v) for v in value)
        return value

    for key in ('model', 'test_dataloader', 'train_dataloader'):
        assert unscoped(ours[key].to_dict()) == unscoped(
            stock[key].to_dict()), key
