# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the command-line tools do with a config first: read it, apply
``--cfg-options``, pick the task package and the work dir."""
import importlib
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .errors import ToolError, first_line

__all__ = ['load_config', 'task_of', 'init_task', 'set_work_dir']

# default_scope -> the package whose register_all_modules sets it up.
TASK_PACKAGES = ('mmdet', 'mmseg')


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
            f'{first_line(err)}); fix the file or pass another '
            f'config') from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as err:
            raise ToolError(
                f'--cfg-options {cfg_options} do not apply to '
                f"'{path}' ({type(err).__name__}: {first_line(err)}); "
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
