# Copyright (c) mmnextvit contributors. All rights reserved.
"""A local file backend whose writes are all-or-nothing."""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` that writes to a temporary file beside the target,
    flushes it to disk and renames it into place.

    A process killed while saving leaves either the previous file or the
    complete new one, never a truncated checkpoint or ``last_checkpoint``
    pointer. Use it for checkpoints with
    ``default_hooks.checkpoint.backend_args = dict(backend='atomic_local')``.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._write(obj, str(filepath))

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self._write(obj.encode(encoding), str(filepath))

    @staticmethod
    def _write(data: bytes, filepath: str) -> None:
        directory = osp.dirname(osp.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=directory)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
