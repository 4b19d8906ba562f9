# Copyright (c) mmnextvit contributors. All rights reserved.
"""Every override of a dependency's behaviour lives in this package, one
module per dependency, each saying what it bridges and why:
:mod:`.mmengine` (checkpoint loading, config paths, the private API the
checkpoint hook relies on), :mod:`.mmcv` (its CPU ops under autocast),
:mod:`.mmdet` (its box post-processing under autocast) and
:mod:`.mmdeploy` (what mmdeploy 1.3.1 needs from torch 2.x and current
OpenVINO: the TorchScript exporter, a removed symbolic helper, its OpenVINO
backend on ``openvino.convert_model`` and ``openvino.Core``)."""
