"""Registries of mmnextvit.

``MODELS`` is a child of MMEngine's root model registry, so a config whose
default scope is ``mmdet`` or ``mmseg`` can name ``type='mmnextvit.NextViT'``:
MMEngine imports ``mmnextvit.registry`` when it meets the scope prefix, and the
registry imports ``mmnextvit.models`` the first time a name is looked up.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmnextvit',
    locations=['mmnextvit.models'])

HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmnextvit',
    locations=['mmnextvit.engine'])
