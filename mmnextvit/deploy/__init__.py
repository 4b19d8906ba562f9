# Copyright (c) mmnextvit contributors. All rights reserved.
"""Whole-model deployment through mmdeploy: the export rewrites mmdeploy
imports (:mod:`.rewriters`) and the export / compare / evaluate steps of
``tools/deployment/deploy.py`` (:mod:`.pipeline`). Importing this package
does not import mmdeploy, so a tool can report it missing in one line."""
from .pipeline import (MMDEPLOY_INSTALL, ONNX_FILE, SDK_FILES, build_models,
                       check_backend, check_task, compare_predictions, draw,
                       evaluate, export, first_test_image,
                       load_deploy_config, predict, require_mmdeploy)

__all__ = [
    'MMDEPLOY_INSTALL', 'ONNX_FILE', 'SDK_FILES', 'require_mmdeploy',
    'load_deploy_config',
    'check_backend', 'check_task', 'export', 'build_models', 'predict',
    'compare_predictions', 'draw', 'evaluate', 'first_test_image'
]
