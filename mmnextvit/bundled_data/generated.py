# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the bundled data generators (:mod:`mmnextvit.bundled_data.shapes`,
:mod:`mmnextvit.bundled_data.seg_shapes`) share: writing a dataset folder all
at once unless it is already there, and a command line made from a parameter
dataclass."""
import argparse
import dataclasses
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
from typing import Callable, Iterable, Optional, Sequence

__all__ = [
    'write_atomically', 'is_complete', 'generate_dataset', 'dataclass_main'
]


def write_atomically(root: str, meta_file: str, meta: dict,
                     write: Callable[[str], None], name: str,
                     fix: str) -> None:
    """Make the dataset folder ``root`` with ``write(folder)``, then record
    ``meta`` in ``meta_file`` in it.

    The files are made in a temporary sibling folder and moved into place at
    the end, so an interrupted run leaves no half-written dataset behind. A
    ``root`` made by the generator (it holds ``meta_file``) is replaced; a
    non-empty ``root`` without it is refused with ``FileExistsError``,
    naming the generator ``name`` and the ``fix``.
    """
    if osp.isdir(root) and os.listdir(root) and not osp.isfile(
            osp.join(root, meta_file)):
        raise FileExistsError(
            f'{name}: {root} exists and was not made by this generator; '
            f'{fix}')
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{name}-', dir=parent)
    try:
        write(tmp)
        with open(osp.join(tmp, meta_file), 'w', encoding='utf-8') as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        if osp.isdir(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)


def is_complete(root: str, meta_file: str, meta: dict,
                last_files: Iterable[str]) -> bool:
    """Whether ``root`` holds a complete dataset made with the parameters
    ``meta``: :func:`write_atomically` recorded exactly ``meta`` in
    ``meta_file`` and every path of ``last_files`` (relative to ``root``;
    the last file of each part written) exists."""
    try:
        with open(osp.join(root, meta_file), encoding='utf-8') as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return False
    return stored == meta and all(
        osp.isfile(osp.join(root, path)) for path in last_files)


def generate_dataset(root: str, cfg, name: str, meta_file: str,
                     last_files: Iterable[str], write: Callable[[str], None],
                     fix: str, summary: str, progress: bool) -> bool:
    """Check the parameter dataclass ``cfg`` (``validate()``), then write
    the dataset with ``write(folder)`` unless ``root`` already holds it
    (:func:`is_complete` with ``cfg.as_meta()`` and ``last_files``).

    The writing goes through :func:`write_atomically`: an interrupted run
    leaves nothing behind, a ``root`` made with other parameters is replaced
    and a non-empty ``root`` that the generator did not make is refused.
    With ``progress``, one line prefixed with the generator ``name`` says
    that ``root`` is up to date, or what was written (``summary``), where and
    in how long.

    Returns:
        bool: True if files were written, False if they were up to date.
    """
    cfg.validate()
    root, meta = osp.abspath(root), cfg.as_meta()
    if is_complete(root, meta_file, meta, last_files):
        if progress:
            print(f'[{name}] {root} is up to date', flush=True)
        return False
    start = time.perf_counter()
    write_atomically(root, meta_file, meta, write, name, fix)
    if progress:
        print(
            f'[{name}] wrote {summary} to {root} in '
            f'{time.perf_counter() - start:.1f}s',
            flush=True)
    return True


def dataclass_main(config_cls: type, generate: Callable, description: str,
                   default_root: str,
                   argv: Optional[Sequence[str]] = None) -> int:
    """Command line of a generator: ``--root`` and one integer option per
    field of ``config_cls``; bad parameters or a foreign folder give one
    line on stderr and exit status 2."""
    defaults = config_cls()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--root', default=default_root, help='output folder')
    fields = dataclasses.fields(config_cls)
    for field in fields:
        parser.add_argument(
            '--' + field.name.replace('_', '-'),
            type=int,
            default=getattr(defaults, field.name),
            help=f'(default: {getattr(defaults, field.name)})')
    args = parser.parse_args(argv)
    cfg = config_cls(**{f.name: getattr(args, f.name) for f in fields})
    try:
        generate(args.root, cfg)
    except (ValueError, FileExistsError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0
