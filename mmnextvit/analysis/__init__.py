# Copyright (c) mmnextvit contributors. All rights reserved.
"""Support for the measuring tools in ``tools/analysis_tools/``: resident-set
and allocator control (``memory``), FLOP counting (``flops``), the machine's
description (``machine``), the distance between model outputs
(``output_error``) and the GPU benchmark (``gpu_benchmark``)."""
