# Copyright (c) mmnextvit contributors. All rights reserved.
"""Kernels that serve the models faster than the standard operators:
:mod:`.cpu_kernels` for the CPU inference path."""
