# Copyright (c) mmnextvit contributors. All rights reserved.
"""Which checkpoint ``tools/train.py --resume`` (without a path) continues
from.

mmengine reads ``<work_dir>/last_checkpoint``
(``mmengine.runner.find_latest_checkpoint``) and trusts it. After a crash it
can be empty (mmengine writes it with ``open(..., 'w')``), or name a file that
is truncated (a save killed half-way without the atomic backend) or gone.
:func:`find_resume_checkpoint` reads the pointer the same way, checks the
file it names, and falls back to the newest complete ``iter_N.pth`` /
``epoch_N.pth`` of the work dir, saying so.
"""
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.runner import find_latest_checkpoint

__all__ = ['find_resume_checkpoint', 'is_complete_checkpoint']

_STEP = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole file as ``torch.save`` writes it.

    ``torch.save`` writes a zip archive whose directory is at the end, so a
    file cut short anywhere fails to open as one; reading the directory
    costs one seek, not a read of the file. (Whether the content is safe to
    load is checked when it is read.)
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _candidates(work_dir: str) -> List[str]:
    """``iter_N.pth`` / ``epoch_N.pth`` of ``work_dir``, newest first (by
    modification time, then by N)."""
    found = []
    for name in os.listdir(work_dir):
        match = _STEP.match(name)
        path = osp.join(work_dir, name)
        if match and osp.isfile(path):
            found.append((osp.getmtime(path), int(match.group(2)), path))
    return [path for _, _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """The checkpoint to resume from and a line saying how it was chosen.

    Returns ``(None, reason)`` when the work dir holds no complete
    checkpoint: the run then starts from the beginning.
    """
    if not osp.isdir(work_dir):
        return None, f"no work dir '{work_dir}' yet: starting from scratch"
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = ''
    if osp.isfile(pointer):
        named = find_latest_checkpoint(work_dir) or ''
        # A work dir moved since: the file may sit beside the pointer.
        if named and not osp.isfile(named) and osp.isfile(
                osp.join(work_dir, osp.basename(named))):
            named = osp.join(work_dir, osp.basename(named))
        if named and is_complete_checkpoint(named):
            return named, f"resuming from '{named}' (last_checkpoint)"
    if named:
        problem = (f"last_checkpoint names '{named}', which is "
                   + ('incomplete' if osp.isfile(named) else 'missing'))
    elif osp.isfile(pointer):
        problem = 'last_checkpoint is empty'
    else:
        problem = 'no last_checkpoint'
    for path in _candidates(work_dir):
        if is_complete_checkpoint(path):
            return path, (f"{problem}; resuming from '{path}', the newest "
                          f'complete checkpoint in {work_dir}')
    return None, (f'{problem} and {work_dir} holds no complete checkpoint: '
                  f'starting from scratch')
