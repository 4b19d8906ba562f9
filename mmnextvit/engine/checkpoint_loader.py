# Copyright (c) mmnextvit contributors. All rights reserved.
"""Local checkpoint files, read by every mmengine path without running code.

mmengine 0.10.7 reads a local file with ``torch.load(path, map_location)``:
``weights_only`` is left to torch's default. That default is safe on torch
>= 2.6, but ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the environment turns it
off for the whole process, and the error torch gives for a refused object
advises allowlisting it. :func:`install_checkpoint_loader` (run when
:mod:`mmnextvit` is imported) points mmengine's local-file loader at
:func:`mmnextvit.weights.read_checkpoint`, which always passes
``weights_only=True`` with exactly the types mmengine writes allowed, and
names the refused object in one line. It serves ``Runner.load_checkpoint``
and ``--resume``, ``mmengine.runner.load_checkpoint``, mmdet's
``init_detector``, mmseg's ``init_model`` and both inferencers.
"""
import os.path as osp

from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['install_checkpoint_loader', 'load_local_checkpoint']


def load_local_checkpoint(filename: str, map_location=None):
    """The loader mmengine calls for a path without a URL scheme."""
    from mmnextvit.weights import read_checkpoint

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
