# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the command-line tools do with a config before any work starts:
read it, pick the task package, and check every path it names.

Each check raises :class:`ToolError` with one line that names the bad input
and the fix; :func:`run_tool` prints that line and exits with status 2, so a
user never sees a traceback for a typo in a path.
"""
import functools
import importlib
import os.path as osp
import sys
from typing import Callable, List, Mapping, Optional, Sequence

from mmengine.config import Config

from mmnextvit.datasets.config_paths import (is_local, join_root,
                                             loader_datasets)

__all__ = [
    'ToolError', 'run_tool', 'load_config', 'init_task', 'task_of',
    'set_work_dir', 'check_data_paths', 'check_checkpoint'
]

# default_scope -> the package whose register_all_modules sets it up.
TASK_PACKAGES = ('mmdet', 'mmseg')


class ToolError(Exception):
    """A bad input of a command-line tool, reported as one line."""


def run_tool(main: Callable[..., None]) -> Callable[..., None]:
    """Decorate a tool's ``main``: a :class:`ToolError` becomes one line on
    stderr and exit status 2 (the status argparse uses for bad arguments)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ToolError as err:
            prog = osp.basename(sys.argv[0]) or 'mmnextvit'
            print(f'{prog}: error: {err}', file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    text = text[0] if text else ''
    if isinstance(err, SyntaxError) and err.lineno and 'line' not in text:
        text += f' (line {err.lineno})'
    return text if len(text) <= limit else text[:limit] + '...'


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file and apply ``--cfg-options`` to it.

    Raises:
        ToolError: ``path`` is not a file, the file does not parse (syntax,
            a missing ``_base_``, a failing ``custom_imports``), or the
            options do not merge.
    """
    if not osp.isfile(path):
        where = 'is a folder, not a file' if osp.isdir(path) else \
            'does not exist'
        raise ToolError(
            f"config '{path}' {where}; pass the path of a config file, e.g. "
            f'configs/mask_rcnn/nextvit_s_1x.py')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # mmengine raises many kinds for a bad file
        raise ToolError(
            f"config '{path}' does not parse ({type(err).__name__}: "
            f'{_first_line(err)}); fix the file or pass another '
            f'config') from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as err:
            raise ToolError(
                f'--cfg-options {cfg_options} do not apply to '
                f"'{path}' ({type(err).__name__}: {_first_line(err)}); "
                f'check the keys against the config') from None
    return cfg


def task_of(cfg: Config) -> str:
    """``'mmdet'`` or ``'mmseg'``: the package named by ``default_scope``.

    Raises:
        ToolError: the scope is missing or another package's.
    """
    scope = cfg.get('default_scope')
    if scope not in TASK_PACKAGES:
        raise ToolError(
            f"config '{cfg.filename}' has default_scope={scope!r}; the tools "
            f"take detection (default_scope='mmdet') and segmentation "
            f"(default_scope='mmseg') configs: set one of them")
    return scope


def init_task(cfg: Config) -> str:
    """Register the task package's modules and make its scope the default
    one, as its own tools do; returns the package name."""
    task = task_of(cfg)
    importlib.import_module(f'{task}.utils').register_all_modules(
        init_default_scope=True)
    return task


def set_work_dir(cfg: Config, work_dir: Optional[str], config_path: str):
    """``--work-dir``, else the config's ``work_dir``, else
    ``work_dirs/<config name>``: the order of the mmdet/mmseg tools."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


# --------------------------------------------------------------------------
# Data paths
# --------------------------------------------------------------------------
def check_data_paths(cfg: Config, loaders: Sequence[str]) -> None:
    """Check that the data each named dataloader reads is there: its
    ``data_root`` folder, its annotation file and its image/label folders,
    and the annotation file of the matching evaluator.

    Raises:
        ToolError: naming the first missing path, the config key that set
            it and how to point the config elsewhere.
    """
    for loader in loaders:
        # A dataloader the config lacks has nothing to check, nor has its
        # evaluator.
        if not isinstance(cfg.get(loader), dict):
            continue
        for key, dataset in loader_datasets(cfg, loader):
            backend_args = dataset.get('backend_args')
            root = dataset.get('data_root') or ''
            if root and is_local(root, backend_args) and not osp.isdir(root):
                raise ToolError(
                    f"dataset folder '{root}' ({key}.data_root) does not "
                    f'exist; put the data there or pass --cfg-options '
                    f'{key}.data_root=PATH')
            ann_file = dataset.get('ann_file') or ''
            if ann_file:
                path = join_root(root, ann_file)
                if is_local(path, backend_args) and not osp.isfile(path):
                    raise ToolError(
                        f"annotation file '{path}' ({key}.ann_file) does not "
                        f'exist; create it or pass --cfg-options '
                        f'{key}.ann_file=PATH')
            prefixes = dataset.get('data_prefix') or {}
            for name, prefix in (prefixes.items()
                                 if isinstance(prefixes, dict) else ()):
                if not isinstance(prefix, str) or not prefix:
                    continue
                path = join_root(root, prefix)
                if is_local(path, backend_args) and not osp.isdir(path):
                    raise ToolError(
                        f"data folder '{path}' ({key}.data_prefix.{name}) "
                        f'does not exist; create it or pass --cfg-options '
                        f'{key}.data_prefix.{name}=PATH')
        evaluator = loader.replace('_dataloader', '_evaluator')
        for index, metric in enumerate(_as_list(cfg.get(evaluator))):
            ann_file = metric.get('ann_file') if isinstance(metric,
                                                            dict) else None
            if (isinstance(ann_file, str) and ann_file
                    and is_local(ann_file, metric.get('backend_args'))
                    and not osp.isfile(ann_file)):
                key = evaluator if isinstance(cfg.get(evaluator), dict) \
                    else f'{evaluator}.{index}'
                raise ToolError(
                    f"annotation file '{ann_file}' ({key}.ann_file) does not "
                    f'exist; create it or pass --cfg-options '
                    f'{key}.ann_file=PATH')


def _as_list(value) -> List:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
def _shown(keys: Sequence[str], limit: int = 3) -> str:
    keys = sorted(keys)
    return ', '.join(keys[:limit]) + (', ...' if len(keys) > limit else '')


def _variants(state: Mapping, expected: Mapping) -> str:
    """`` (a Next-ViT-X backbone where the config builds Next-ViT-Y)`` when
    the released variants of the file's and the model's backbones differ."""
    from mmnextvit.weights import arch_of_state

    def arch(keys):
        return arch_of_state({k[len('backbone.'):]: None
                              for k in keys if k.startswith('backbone.')})

    found, wanted = arch(state), arch(expected)
    if found and wanted and found != wanted:
        return (f' (a Next-ViT-{found} backbone where the config builds '
                f'Next-ViT-{wanted})')
    return ''


def check_checkpoint(cfg: Config, path: str, flag: str = 'checkpoint',
                     check_fit: bool = True) -> Mapping:
    """Check that ``path`` is a checkpoint of the model ``cfg`` builds,
    without executing anything from the file.

    The file is read with :func:`mmnextvit.weights.read_checkpoint`
    (``weights_only`` loading), the model is built on the CPU, and every one
    of its tensors (the batch-norm counters aside) must be in the file with
    the same shape; extra entries in the file are allowed (released files
    carry unused heads). Call :func:`init_task` first.

    Returns:
        The checkpoint as read.

    Raises:
        ToolError: the file is missing or unreadable, or belongs to another
            model or variant.
    """
    from mmnextvit.weights import CheckpointError, read_checkpoint

    if not osp.isfile(path):
        raise ToolError(
            f"{flag} '{path}' does not exist; pass a .pth file written by "
            f'tools/train.py (work_dirs/<config>/epoch_N.pth or iter_N.pth) '
            f'or a released model')
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        raise ToolError(f'{flag}: {err}') from None
    if not check_fit:
        return checkpoint
    state = checkpoint.get('state_dict', checkpoint)
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in state.items()}

    from .guards import check_model
    model = check_model(cfg)
    expected = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    del model
    missing = [k for k in expected if k not in state]
    other_shape = [
        k for k in expected if k in state and hasattr(state[k], 'shape')
        and tuple(state[k].shape) != expected[k]
    ]
    if missing or other_shape:
        problems = []
        if missing:
            problems.append(f'{len(missing)} of its {len(expected)} tensors '
                            f'are missing ({_shown(missing)})')
        if other_shape:
            problems.append(f'{len(other_shape)} have another shape '
                            f'({_shown(other_shape)})')
        problems[-1] += _variants(state, expected)
        raise ToolError(
            f"{flag} '{path}' does not fit the model of '{cfg.filename}': "
            f"{' and '.join(problems)}; pass a checkpoint trained with this "
            f'config (same model and variant)')
    return checkpoint
