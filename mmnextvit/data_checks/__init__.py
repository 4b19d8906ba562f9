# Copyright (c) mmnextvit contributors. All rights reserved.
"""Checks of the data a config reads, run by the tools before any work
starts and by the segmentation hooks mid-run: ``dataset_paths`` (which files
a dataset config reads), ``detection`` (COCO annotations and images) and
``segmentation`` (image / label-map pairs and label values)."""
