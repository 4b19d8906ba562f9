# Copyright (c) mmnextvit contributors. All rights reserved.
"""Every override of a dependency's behaviour lives in this package, one
module per dependency, each saying what it bridges and why:
:mod:`.mmengine` (checkpoint loading, config paths, the private API the
checkpoint hook relies on), :mod:`.mmcv` (its CPU ops under autocast),
:mod:`.mmdet` (its box post-processing under autocast) and
:mod:`.mmdeploy` (what mmdeploy 1.3.1 needs from torch 2.x and current
OpenVINO: the TorchScript exporter, a removed symbolic helper, its OpenVINO
backend on ``openvino.convert_model`` and ``openvino.Core``).

The bridges to mmcv's compiled ops and to mmdet apply when the module they
patch is imported (:func:`when_imported`), not when :mod:`mmnextvit` is:
the backbone needs neither, so ``from mmnextvit.models import NextViT``
works with mmengine and an mmcv built without ops (``MMCV_WITH_OPS=0``),
and importing the package does not import mmdet's models.
"""
import importlib.abc
import sys
import threading
from typing import Callable, Dict, List

__all__ = ['when_imported', 'patch_when_imported']

_CALLBACKS: Dict[str, List[Callable]] = {}
_LOCK = threading.RLock()


def _run(name: str, module) -> None:
    with _LOCK:
        callbacks = _CALLBACKS.pop(name, [])
    for callback in callbacks:
        callback(module)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a module with pending callbacks it asks
    the other finders for the module's spec and makes its loader run the
    callbacks once the module has executed."""

    def find_spec(self, name, path=None, target=None):
        if name not in _CALLBACKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        exec_module = loader.exec_module

        def exec_then_bridge(module):
            exec_module(module)
            _run(name, module)

        # Each module has a loader object of its own (a source file
        # loader), so this changes nothing for any other module.
        loader.exec_module = exec_then_bridge
        return spec


_FINDER = _PostImportFinder()


def when_imported(name: str, callback: Callable) -> None:
    """Call ``callback(module)`` once module ``name`` has been imported:
    now if it already is, else right after its import (whoever imports
    it). Nothing is imported here."""
    with _LOCK:
        module = sys.modules.get(name)
        if module is None:
            _CALLBACKS.setdefault(name, []).append(callback)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    callback(module)


def patch_when_imported(targets, patch: Callable) -> None:
    """Call ``patch(cls)`` for each ``(module name, class name)`` of
    ``targets`` once that module is imported (see :func:`when_imported`)."""
    for module_name, class_name in targets:
        when_imported(
            module_name,
            lambda module, class_name=class_name: patch(
                getattr(module, class_name)))
