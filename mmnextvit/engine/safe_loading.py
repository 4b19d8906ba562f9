# Copyright (c) mmnextvit contributors. All rights reserved.
"""Reading weight files without running code from them: ``.pth`` files
through a weights-only load that allows only the types mmengine writes
(:func:`mmnextvit.compat.torch.load_weights_only` with
:func:`mmnextvit.compat.mmengine.mmengine_checkpoint_types`, on every torch
this package supports), safetensors files as such. Every tool, mmengine's
own loader for local files (:func:`load_local_checkpoint`, installed by
:mod:`mmnextvit.compat.mmengine`) and the backbone's ``Pretrained`` init
read through :func:`read_checkpoint`."""
import os
import os.path as osp
import re
from typing import Any, Mapping

from mmnextvit.compat.mmengine import mmengine_checkpoint_types
from mmnextvit.compat.torch import load_weights_only

__all__ = ['CheckpointError', 'read_checkpoint', 'load_local_checkpoint']


class CheckpointError(ValueError):
    """A weight file that cannot be read, or does not fit the model."""


def _is_safetensors(path: str) -> bool:
    with open(path, 'rb') as f:
        head = f.read(9)
    # 8-byte little-endian header size, then a JSON object.
    return len(head) == 9 and head[8:9] == b'{' and not head.startswith(
        b'PK')


def read_checkpoint(path: str, map_location: Any = 'cpu') -> Mapping:
    """Read a weight file without executing anything from it.

    ``.pth`` files are read weights-only, allowing only tensors, plain
    containers and the few types mmengine itself writes;
    safetensors files are read as such (to the CPU). ``map_location`` is
    passed to ``torch.load``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, not a checkpoint, or holds
            objects that would have to run code to load.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Next-ViT weights: no file at '{path}'; check the path given as "
            f'the checkpoint (e.g. init_cfg.checkpoint or --cfg-options).')
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Next-ViT weights: '{path}' is not a readable safetensors "
                f'file ({err}); download it again.') from None
    try:
        obj = load_weights_only(path, map_location,
                                mmengine_checkpoint_types())
    except Exception as err:  # torch raises several types for bad files
        text = str(err)
        if 'Weights only load failed' in text or 'Unsupported global' in text:
            found = re.search(r'GLOBAL ([\w.]+)', text)
            what = found.group(1) if found else 'a non-tensor object'
            raise CheckpointError(
                f"Next-ViT weights: refusing to load '{path}': it holds "
                f'{what}, which only loads by running code from the file; '
                f're-save just its tensors (a state dict) with a trusted '
                f'tool.') from None
        raise CheckpointError(
            f"Next-ViT weights: '{path}' is not a readable PyTorch "
            f'checkpoint (truncated or another kind of file: '
            f'{type(err).__name__}); download or export it again.') from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Next-ViT weights: '{path}' holds a {type(obj).__name__}, not a "
            f'state dict; save the model with model.state_dict().')
    return obj


def load_local_checkpoint(filename: str, map_location=None):
    """The loader mmengine calls for a path without a URL scheme
    (registered by :func:`mmnextvit.compat.mmengine.install`)."""
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        # The message and type of mmengine's own loader.
        raise FileNotFoundError(f'{path} can not be found.')
    return read_checkpoint(path, map_location=map_location)
