# Copyright (c) mmnextvit contributors. All rights reserved.
"""Generate the synthetic shapes instance-segmentation dataset (COCO format)
that configs/bundled_data/nextvit_s_shapes-cpu.py trains on.

    python tools/dataset_converters/make_shapes.py [--root data/shapes]

A second run with the same arguments finds the data up to date and does
nothing. See mmnextvit/bundled_data/shapes.py for what the images contain.
"""
import sys

from mmnextvit.bundled_data.shapes import main

if __name__ == '__main__':
    sys.exit(main())
