# Copyright (c) mmnextvit contributors. All rights reserved.
"""Every change this package makes to mmengine 0.10.7's behaviour, and every
private piece of mmengine it relies on.

:func:`install` (run when :mod:`mmnextvit` is imported) applies the
process-wide overrides (items 1-3, 5 and 7, and 6 on a torch that needs
it); each is idempotent.
``tests/test_compat_mmengine.py`` has one test per item below that fails
when an mmengine release changes what the item relies on.

1. **Safe globals** (:func:`mmengine_checkpoint_types`,
   :func:`allow_mmengine_checkpoint_types`). mmengine's own checkpoints
   hold ``HistoryBuffer`` objects and numpy arrays and scalars besides
   tensors. :func:`mmengine_checkpoint_types` lists exactly those types, for
   the weights-only reads of :mod:`mmnextvit.engine.safe_loading` on every
   torch (:func:`mmnextvit.compat.torch.load_weights_only`). On torch >= 2.6,
   which loads with ``weights_only=True`` by default, they are also added
   to torch's allowlist process-wide (``weights_only`` stays on), so that
   mmengine's other readers (``load_checkpoint`` on a URL) accept them too;
   older torch loads with ``weights_only=False`` by default and needs no
   allowlist for mmengine to work.
2. **Local checkpoint loader** (:func:`install_checkpoint_loader`).
   mmengine reads a local file with ``torch.load(path, map_location)``,
   leaving ``weights_only`` to torch's default: off on torch < 2.6, and off
   on any torch under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``. Registers
   the loader it is given (:func:`mmnextvit.engine.safe_loading.
   load_local_checkpoint`) for paths without a scheme, so every mmengine
   path (``Runner.load_checkpoint``, ``--resume``,
   ``mmengine.runner.load_checkpoint``, ``init_detector``, ``init_model``,
   the inferencers) reads without running code from the file.
3. **``mmnextvit::`` config paths** (:func:`install_config_prefix`).
   mmengine resolves ``pkg::path`` only for the packages in its hard-coded
   ``MODULE2PACKAGE`` table (through the private
   ``Config._get_cfg_path``), and tags every dict inherited that way with
   ``_scope_='pkg'``. Wraps ``Config._get_cfg_path`` so that
   ``mmnextvit::folder/file.py`` resolves to this package's configs and
   carries no scope: our configs build mmdet / mmseg models and name the
   backbone with an explicit prefix (``mmnextvit.NextViT``), so a dict
   tagged ``mmnextvit`` would send ``MaskRCNN`` to a registry that does not
   hold it. The same wrapper resolves ``mmdet::`` / ``mmseg::`` paths to a
   ``.py`` file the package ships (``<package>/.mim/configs/<path>``)
   without mmengine's metafile lookup, which gives that same file and scope
   after parsing every metafile of the package (hundreds of YAML files):
   it looks the name up with ``.py`` stripped, and the metafiles' names
   keep it, so the lookup never matches and mmengine falls back to the
   shipped file. Loading the bundled Mask R-CNN config (four ``mmdet::``
   paths) took 0.58 s that way and 0.03 s without, the Semantic FPN one
   (two ``mmseg::`` paths) 0.95 s (one thread, AMD EPYC, 2026-12-08); a
   tool loads its config at least once. Any other ``pkg::`` path goes to
   mmengine's own code.
4. **Private hook and runner API** used by
   :class:`~mmnextvit.engine.SafeCheckpointHook`: it overrides
   ``CheckpointHook._save_checkpoint_with_step(runner, step, meta)`` (to
   delete old checkpoints only after the new one is written) and reads
   ``Runner._resume`` and ``Runner._train_loop`` through
   :func:`is_resuming` and :func:`built_train_loop`.
5. **pkg_resources deprecation warning** (:func:`quiet_pkg_resources`).
   mmengine imports ``pkg_resources`` to find installed packages (every
   ``mmdet::`` / ``mmseg::`` config path), and setuptools >= 80 warns on
   that import; kept below 82 for it (see requirements/runtime.txt). The
   warning, repeated for every importer, would precede each tool's one-line
   error; it says nothing a user can act on, so it is filtered, by message,
   for ``pkg_resources`` alone.
6. **Fused Adam / AdamW on the CPU** (:func:`install_cpu_fused_fallback`).
   torch >= 2.4 has fused Adam and AdamW kernels for CPU parameters (the
   CPU configs ask for them: a step over Mask R-CNN's 43M parameters takes
   29 ms fused against 125 ms in torch's default loop on 2 cores); older
   torch raises ``RuntimeError`` for ``fused=True`` on CPU parameters. On
   such a torch only, mmengine's ``Adam`` and ``AdamW`` optimizer entries
   are replaced by subclasses that drop ``fused=True`` where a parameter is
   on the CPU, saying so once; the arithmetic is the same.
7. **One yapf pass per config text** (:func:`memoize_config_formatting`).
   ``Config.pretty_text`` formats the whole config with yapf on every read,
   and a training run reads it five times for the same config (the log,
   the dumped file, the visualizer's copy, the message hub, each
   checkpoint's meta): 0.34 s each for the UperNet config (one thread,
   AMD EPYC, 2026-12-08). The yapf call mmengine makes is memoized on its
   input text and style, so an unchanged config is formatted once; a
   changed one gives a new text and is formatted again.
"""
import importlib.util
import os.path as osp
import pickle
import warnings
from typing import Any, Callable, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader

from .torch import torch_at_least, torch_weights_only_takes_allowlist

__all__ = [
    'install', 'mmengine_checkpoint_types', 'allow_mmengine_checkpoint_types',
    'install_checkpoint_loader', 'install_config_prefix', 'is_resuming',
    'built_train_loop', 'quiet_pkg_resources', 'PKG_RESOURCES_WARNING',
    'cpu_fused_optimizers_missing', 'install_cpu_fused_fallback',
    'shipped_config', 'memoize_config_formatting'
]


def install(checkpoint_loader: Callable) -> None:
    """Apply every process-wide override of this module, with
    ``checkpoint_loader`` as mmengine's loader for local files (item 2)."""
    allow_mmengine_checkpoint_types()
    install_checkpoint_loader(checkpoint_loader)
    install_config_prefix()
    quiet_pkg_resources()
    install_cpu_fused_fallback()
    memoize_config_formatting()


# --------------------------------------------------------------------------
# 1. Safe globals
# --------------------------------------------------------------------------
def mmengine_checkpoint_types() -> List[Any]:
    """The non-tensor types mmengine 0.10 writes into its checkpoints
    (``message_hub`` holds ``HistoryBuffer`` objects backed by numpy arrays,
    and numpy scalars appear in runtime info): objects, or ``(object,
    'module.name')`` pairs where files name them otherwise."""
    import argparse

    import numpy as np
    from mmengine.logging import HistoryBuffer

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    # Upstream ImageNet checkpoints keep the training arguments as an
    # ``argparse.Namespace``, a plain attribute container.
    allowed: List[Any] = [HistoryBuffer, np.ndarray, np.dtype,
                          argparse.Namespace]
    # numpy's array and scalar constructors, under the module path of either
    # numpy major version (files record the path of the numpy that wrote
    # them).
    for func in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy.core', 'numpy._core'):
            allowed.append((func, f'{module}.multiarray.{func.__name__}'))
    allowed.append((_history_buffer_method, 'builtins.getattr'))
    allowed += sorted({type(np.dtype(t))
                       for t in np.typecodes['All'] if t not in 'OV'},
                      key=lambda cls: cls.__name__)
    return allowed


def allow_mmengine_checkpoint_types() -> None:
    """On torch >= 2.6, let ``torch.load(weights_only=True)`` read the
    checkpoints mmengine writes, process-wide; nothing on older torch.

    torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine
    0.10.7 relies on that default, so without this its own checkpoints fail
    to load through readers other than ours. This adds exactly the types
    mmengine writes to torch's allowlist; ``weights_only`` stays on, and any
    other object in a file is still refused. Called when :mod:`mmnextvit`
    is imported.
    """
    if torch_weights_only_takes_allowlist():
        torch.serialization.add_safe_globals(mmengine_checkpoint_types())


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: ``HistoryBuffer`` pickles
    its statistics methods as ``getattr(HistoryBuffer, 'mean')``. Only those
    lookups are served; any other use of ``getattr`` in a file is refused."""
    from mmengine.logging import HistoryBuffer

    # The four built-in statistics enter ``_statistics_methods`` only when
    # the first HistoryBuffer is created, which a fresh process (a test
    # tool, ``init_detector``) has not done yet when it loads a checkpoint.
    methods = dict(
        {name: getattr(HistoryBuffer, name)
         for name in ('min', 'max', 'current', 'mean')},
        **HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and isinstance(name, str) and name in methods:
        return methods[name]
    # Reported as any other global the file may not use.
    raise pickle.UnpicklingError(
        f'Weights only load failed: Unsupported global: GLOBAL '
        f'builtins.getattr on {type(owner).__name__}.{name} is not allowed')


# --------------------------------------------------------------------------
# 2. Local checkpoint loader
# --------------------------------------------------------------------------
def install_checkpoint_loader(loader: Callable) -> None:
    """Make ``loader(filename, map_location)`` mmengine's loader for local
    files (the empty prefix, the fallback for every path)."""
    CheckpointLoader.register_scheme(prefixes='', loader=loader, force=True)


# --------------------------------------------------------------------------
# 3. ``mmnextvit::`` config paths
# --------------------------------------------------------------------------
def install_config_prefix() -> None:
    """Make ``Config`` accept ``mmnextvit::`` base paths (idempotent)."""
    from mmnextvit.config_resolver import PREFIX, resolve
    original: Callable = Config._get_cfg_path
    if getattr(original, 'handles_mmnextvit', False):
        return

    def get_cfg_path(cfg_path: str,
                     filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return resolve(cfg_path), None
        shipped = shipped_config(cfg_path)
        if shipped is not None:
            return shipped
        return original(cfg_path, filename)

    get_cfg_path.handles_mmnextvit = True
    get_cfg_path.original = original
    Config._get_cfg_path = staticmethod(get_cfg_path)


def shipped_config(cfg_path: str) -> Optional[Tuple[str, str]]:
    """``(file, scope)`` for ``scope::path.py`` when the installed package
    ``scope`` ships that file under ``.mim/configs/``, else None (what
    mmengine's ``Config._get_cfg_path`` returns for it, see item 3)."""
    scope, sep, path = cfg_path.partition('::')
    if not sep or not scope.isidentifier() or not path.endswith('.py'):
        return None
    spec = importlib.util.find_spec(scope)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        shipped = osp.join(folder, '.mim', 'configs', path)
        if osp.isfile(shipped):
            return shipped, scope
    return None


# --------------------------------------------------------------------------
# 4. Private runner API read by SafeCheckpointHook
# --------------------------------------------------------------------------
def is_resuming(runner) -> bool:
    """Whether the runner loads its checkpoint to resume (``--resume``)
    rather than to start from its weights (``load_from``): mmengine keeps
    that only in the private ``Runner._resume``."""
    return bool(getattr(runner, '_resume', False))


def built_train_loop(runner) -> Optional[Any]:
    """The runner's training loop if it is built already, else None
    (``Runner.train_loop`` would build it: mmengine keeps the built loop in
    the private ``Runner._train_loop``)."""
    loop = getattr(runner, '_train_loop', None)
    return None if isinstance(loop, dict) else loop


# --------------------------------------------------------------------------
# 5. pkg_resources deprecation warning
# --------------------------------------------------------------------------
# The start of the message setuptools >= 80 warns with on
# ``import pkg_resources``.
PKG_RESOURCES_WARNING = 'pkg_resources is deprecated as an API'


def quiet_pkg_resources() -> None:
    """Filter setuptools' deprecation warning for ``pkg_resources``, and
    only that one."""
    warnings.filterwarnings(
        'ignore',
        message=PKG_RESOURCES_WARNING,
        category=UserWarning)


# --------------------------------------------------------------------------
# 6. Fused Adam / AdamW on the CPU
# --------------------------------------------------------------------------
_FUSED_OPTIMIZERS = ('Adam', 'AdamW')
_FALLBACK_MARK = '_mmnextvit_cpu_fused_fallback'


def cpu_fused_optimizers_missing() -> bool:
    """Whether the installed torch lacks fused Adam / AdamW for CPU
    parameters (torch < 2.4)."""
    return not torch_at_least(2, 4)


def _parameters(params) -> list:
    found = []
    for item in params:
        if isinstance(item, dict):
            found.extend(item['params'])
        else:
            found.append(item)
    return found


def _without_cpu_fused(optimizer_cls):
    """``optimizer_cls`` dropping ``fused=True`` for CPU parameters."""

    def __init__(self, params, *args, **kwargs):
        params = list(params)
        if kwargs.get('fused') and any(
                p.device.type == 'cpu' for p in _parameters(params)):
            kwargs['fused'] = None
            if not getattr(type(self), '_warned', False):
                type(self)._warned = True
                warnings.warn(
                    f'{optimizer_cls.__name__}(fused=True) on CPU parameters '
                    f'needs torch >= 2.4 (this is {torch.__version__}); '
                    f'running the unfused {optimizer_cls.__name__}, the '
                    f'same arithmetic')
        optimizer_cls.__init__(self, params, *args, **kwargs)

    return type(optimizer_cls.__name__, (optimizer_cls, ), {
        '__init__': __init__,
        '__module__': __name__,
        _FALLBACK_MARK: True,
    })


def install_cpu_fused_fallback() -> None:
    """On torch < 2.4, make mmengine's ``Adam`` / ``AdamW`` accept
    ``fused=True`` for CPU parameters (idempotent; nothing on newer
    torch)."""
    if not cpu_fused_optimizers_missing():
        return
    import mmengine.optim  # noqa: F401  (registers torch's optimizers)
    from mmengine.registry import OPTIMIZERS
    for name in _FUSED_OPTIMIZERS:
        current = OPTIMIZERS.get(name)
        if getattr(current, _FALLBACK_MARK, False):
            continue
        OPTIMIZERS.register_module(
            name=name, module=_without_cpu_fused(current), force=True)


# --------------------------------------------------------------------------
# 7. One yapf pass per config text
# --------------------------------------------------------------------------
def memoize_config_formatting(size: int = 16) -> None:
    """Memoize the yapf call of ``Config.pretty_text`` on its arguments
    (idempotent); at most ``size`` texts are kept."""
    from mmengine.config import config as config_module
    original: Callable = config_module.FormatCode
    if getattr(original, 'memoized', False):
        return
    cache: dict = {}

    def format_code(text: str, *args, **kwargs):
        key = (text, repr(args), repr(sorted(kwargs.items())))
        if key not in cache:
            if len(cache) >= size:
                cache.clear()
            cache[key] = original(text, *args, **kwargs)
        return cache[key]

    format_code.memoized = True
    format_code.original = original
    config_module.FormatCode = format_code
