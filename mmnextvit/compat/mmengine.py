# Copyright (c) mmnextvit contributors. All rights reserved.
"""Every change this package makes to mmengine 0.10.7's behaviour, and every
private piece of mmengine it relies on.

:func:`install` (run when :mod:`mmnextvit` is imported) applies the
process-wide overrides (items 1-3 and 5); each is idempotent.
``tests/test_compat_mmengine.py`` has one test per item below that fails
when an mmengine release changes what the item relies on.

1. **Safe globals** (:func:`allow_mmengine_checkpoint_types`). torch >= 2.6
   loads with ``weights_only=True`` by default, and mmengine's own
   checkpoints hold ``HistoryBuffer`` objects and numpy arrays, so
   ``load_checkpoint``, ``--resume``, ``init_detector`` and ``init_model``
   fail on them. Adds exactly those types to torch's allowlist;
   ``weights_only`` stays on.
2. **Local checkpoint loader** (:func:`install_checkpoint_loader`).
   mmengine reads a local file with ``torch.load(path, map_location)``,
   leaving ``weights_only`` to torch's default, which
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns off for the whole process.
   Registers :func:`load_local_checkpoint` for paths without a scheme, so
   every mmengine path (``Runner.load_checkpoint``, ``--resume``,
   ``mmengine.runner.load_checkpoint``, ``init_detector``, ``init_model``,
   the inferencers) reads through
   :func:`mmnextvit.engine.safe_loading.read_checkpoint`.
3. **``mmnextvit::`` config paths** (:func:`install_config_prefix`).
   mmengine resolves ``pkg::path`` only for the packages in its hard-coded
   ``MODULE2PACKAGE`` table (through the private
   ``Config._get_cfg_path``), and tags every dict inherited that way with
   ``_scope_='pkg'``. Wraps ``Config._get_cfg_path`` so that
   ``mmnextvit::folder/file.py`` resolves to this package's configs and
   carries no scope: our configs build mmdet / mmseg models and name the
   backbone with an explicit prefix (``mmnextvit.NextViT``), so a dict
   tagged ``mmnextvit`` would send ``MaskRCNN`` to a registry that does not
   hold it.
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
"""
import os.path as osp
import warnings
from typing import Any, Callable, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'install', 'allow_mmengine_checkpoint_types', 'install_checkpoint_loader',
    'load_local_checkpoint', 'install_config_prefix', 'is_resuming',
    'built_train_loop', 'quiet_pkg_resources', 'PKG_RESOURCES_WARNING'
]


def install() -> None:
    """Apply every process-wide override of this module."""
    allow_mmengine_checkpoint_types()
    install_checkpoint_loader()
    install_config_prefix()
    quiet_pkg_resources()


# --------------------------------------------------------------------------
# 1. Safe globals
# --------------------------------------------------------------------------
def _mmengine_safe_globals() -> List[Any]:
    """The non-tensor types mmengine 0.10 writes into its checkpoints
    (``message_hub`` holds ``HistoryBuffer`` objects backed by numpy arrays,
    and numpy scalars appear in runtime info)."""
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
    """Let ``torch.load(weights_only=True)`` read the checkpoints mmengine
    writes, process-wide.

    torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine
    0.10.7 (``load_checkpoint``, ``--resume``, ``init_detector``,
    ``init_model``) relies on that default, so without this its own
    checkpoints fail to load. This adds exactly the types mmengine writes to
    torch's allowlist; ``weights_only`` stays on, and any other object in a
    file is still refused. Called when :mod:`mmnextvit` is imported.
    """
    torch.serialization.add_safe_globals(_mmengine_safe_globals())


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
    from mmnextvit.engine.safe_loading import CheckpointError
    raise CheckpointError(
        f'getattr({type(owner).__name__}, {name!r}) in a checkpoint is not '
        f'allowed')


# --------------------------------------------------------------------------
# 2. Local checkpoint loader
# --------------------------------------------------------------------------
def load_local_checkpoint(filename: str, map_location=None):
    """The loader mmengine calls for a path without a URL scheme."""
    from mmnextvit.engine.safe_loading import read_checkpoint

    path = osp.expanduser(filename)
    if not osp.isfile(path):
        # The message and type of mmengine's own loader.
        raise FileNotFoundError(f'{path} can not be found.')
    return read_checkpoint(path, map_location=map_location)


def install_checkpoint_loader() -> None:
    """Make :func:`load_local_checkpoint` mmengine's loader for local
    files (the empty prefix, the fallback for every path)."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


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
        return original(cfg_path, filename)

    get_cfg_path.handles_mmnextvit = True
    Config._get_cfg_path = staticmethod(get_cfg_path)


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
