# Copyright (c) mmnextvit contributors. All rights reserved.
"""Where a dataset config reads its files: shared by the tools' path checks
(:mod:`mmnextvit.cli`) and the content checks of
:mod:`mmnextvit.data_checks.detection` and
:mod:`mmnextvit.data_checks.segmentation`."""
import os.path as osp
from typing import Any, Iterator, Optional, Sequence, Tuple

__all__ = [
    'leaf_datasets', 'loader_datasets', 'distinct_datasets', 'is_local',
    'join_root'
]


def leaf_datasets(dataset,
                  key: str = 'dataset') -> Iterator[Tuple[str, Any]]:
    """The datasets that read files, with their config key, looking
    through wrappers (``RepeatDataset``, ``ConcatDataset``, ...).

    ``dataset`` is a dataset config (a dict) or a built dataset: wrappers
    hold the wrapped dataset as ``dataset`` (a key or an attribute) or the
    wrapped datasets as ``datasets``."""
    if isinstance(dataset, dict):
        inner, many = dataset.get('dataset'), dataset.get('datasets')
        if not isinstance(inner, dict):
            inner = None
    elif dataset is None:
        return
    else:
        inner = getattr(dataset, 'dataset', None)
        many = getattr(dataset, 'datasets', None)
    if inner is not None:
        yield from leaf_datasets(inner, f'{key}.dataset')
    elif isinstance(many, (list, tuple)):
        for index, wrapped in enumerate(many):
            yield from leaf_datasets(wrapped, f'{key}.datasets.{index}')
    else:
        yield key, dataset


def loader_datasets(cfg, loader: str) -> Iterator[Tuple[str, dict]]:
    """The file-reading datasets of dataloader ``loader`` of ``cfg`` with
    their config keys (see :func:`leaf_datasets`); none when ``cfg`` has no
    such dataloader."""
    loader_cfg = cfg.get(loader)
    if isinstance(loader_cfg, dict):
        yield from leaf_datasets(loader_cfg.get('dataset'),
                                 f'{loader}.dataset')


def distinct_datasets(cfg,
                      loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """The file-reading datasets of the named dataloaders of ``cfg`` (see
    :func:`loader_datasets`), each once: a dataset whose settings other than
    its pipeline repeat an earlier one (``test_dataloader`` is often
    ``val_dataloader``) is skipped. Dataloaders ``cfg`` lacks are skipped."""
    seen = set()
    for loader in loaders:
        for key, dataset in loader_datasets(cfg, loader):
            identity = repr(sorted((k, repr(v)) for k, v in dataset.items()
                                   if k != 'pipeline'))
            if identity not in seen:
                seen.add(identity)
                yield key, dataset


def is_local(path: str, backend_args: Optional[dict]) -> bool:
    """Whether ``path`` is a local file path read by a local backend (the
    only kind the checks look at)."""
    if '://' in path or path.startswith('s3:'):
        return False
    backend = (backend_args or {}).get('backend', 'local')
    return backend in ('local', 'atomic_local')


def join_root(root: str, path: str) -> str:
    """``path`` under the dataset's ``data_root`` unless it is absolute."""
    return path if (not root or osp.isabs(path)) else osp.join(root, path)
