# Copyright (c) mmnextvit contributors. All rights reserved.
"""Where this package's configs are: the files behind ``mmnextvit::`` config
paths, e.g. ``_base_ = 'mmnextvit::mask_rcnn/nextvit_s_1x.py'`` in a
downstream project (:func:`mmnextvit.compat.mmengine.install_config_prefix`
teaches mmengine the prefix).

Configs are read from the copy
shipped inside the installed package (``mmnextvit/.mim/configs``, written
when a wheel is built) or, in a source checkout or editable install, from
the repository's ``configs/``.
"""
import os
import os.path as osp
PREFIX = 'mmnextvit::'
_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def config_root() -> str:
    """Folder holding this package's configs (``mask_rcnn/``, ...)."""
    for candidate in (osp.join(_PACKAGE_DIR, '.mim', 'configs'),
                      osp.join(osp.dirname(_PACKAGE_DIR), 'configs')):
        if osp.isdir(candidate):
            return candidate
    raise FileNotFoundError(
        f'mmnextvit: no configs next to {_PACKAGE_DIR}; reinstall the '
        f'package (pip install mmnextvit or pip install -e <checkout>).')


def resolve(path: str) -> str:
    """Absolute file of an ``mmnextvit::folder/name.py`` path."""
    relative = path[len(PREFIX):] if path.startswith(PREFIX) else path
    root = config_root()
    full = osp.join(root, relative)
    if not osp.isfile(full):
        folders = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d)))
        raise FileNotFoundError(
            f"mmnextvit: no config '{relative}' in {root}; use "
            f"'{PREFIX}<folder>/<file>.py' with a folder among {folders}.")
    return full


def resolve_any(path: str) -> str:
    """A config file path, or the file of ``pkg::folder/file.py`` in an
    installed OpenMMLab package (``mmdet``, ``mmseg``: its ``.mim/configs``)
    or in this one; ``path`` itself when the package is not installed."""
    if '::' not in path:
        return path
    package, relative = path.split('::', 1)
    if package == 'mmnextvit':
        return resolve(path)
    from mmengine.utils import get_installed_path
    try:
        root = get_installed_path(package)
    except Exception:
        return path
    return osp.join(root, '.mim', 'configs', relative)
