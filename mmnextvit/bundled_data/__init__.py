# Copyright (c) mmnextvit contributors. All rights reserved.
"""The bundled data sets, drawn deterministically at run time: ``shapes``
(COCO-format instance segmentation, the main job's data) and ``seg_shapes``
(ADE20K-layout semantic segmentation); ``generated`` writes either
atomically and skips a complete copy."""
