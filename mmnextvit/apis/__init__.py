# Copyright (c) mmnextvit contributors. All rights reserved.
"""High-level entry points that complete mmdet's and mmseg's own APIs."""
from .segmentation import init_segmentor

__all__ = ['init_segmentor']
