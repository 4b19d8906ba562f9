# Copyright (c) mmnextvit contributors. All rights reserved.
"""A local file backend whose writes are all-or-nothing."""
import glob
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


def file_mode() -> int:
    """The permissions ``open(path, 'w')`` gives a new file: 0o666 less the
    umask. ``tempfile.mkstemp`` makes its files 0o600, which would leave
    checkpoints unreadable to the rest of a group on a shared machine."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it
    os.umask(mask)
    return 0o666 & ~mask


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` that writes to a temporary file beside the target,
    flushes it to disk and renames it into place.

    A process killed while saving leaves either the previous file or the
    complete new one, never a truncated checkpoint. (mmengine writes the
    ``last_checkpoint`` pointer with plain ``open``; ``SafeCheckpointHook``
    replaces it in one step too.) A writer killed mid-way leaves only its
    hidden temporary file (``.<name>.<random>.tmp``), which the next write
    of the same file (or ``SafeCheckpointHook`` on resume) removes. Use it
    for checkpoints with
    ``default_hooks.checkpoint.backend_args = dict(backend='atomic_local')``.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self.write_file(obj, str(filepath))

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self.write_file(obj.encode(encoding), str(filepath))

    @staticmethod
    def write_file(data: bytes, filepath: str) -> None:
        """Write ``data`` to ``filepath`` all at once (see the class); also
        what ``SafeCheckpointHook`` writes ``last_checkpoint`` with."""
        directory = osp.dirname(osp.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        # Leftovers of a writer of this file that was killed mid-way.
        pattern = osp.join(glob.escape(directory),
                           f'.{glob.escape(osp.basename(filepath))}.*.tmp')
        for stale in glob.glob(pattern):
            os.remove(stale)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=directory)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), file_mode())
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
