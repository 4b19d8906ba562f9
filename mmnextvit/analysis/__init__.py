# Copyright (c) mmnextvit contributors. All rights reserved.
"""Support for the measuring tools in ``tools/analysis_tools/``: resident-set
and allocator control (``memory``), FLOP counting (``flops``), the machine's
description (``machine``), the distance between model outputs
(``output_error``), the GPU benchmark (``gpu_benchmark``) and the latency
benchmark of ``benchmark.py``: its run (``latency_benchmark``), how it
times (``latency``), models made ready in an engine and a precision
(``engine_setup``), whole detection / segmentation models
(``whole_models``) and its report (``latency_report``)."""
