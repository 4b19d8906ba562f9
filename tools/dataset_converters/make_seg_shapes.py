# Copyright (c) mmnextvit contributors. All rights reserved.
"""Generate the synthetic semantic-segmentation shapes dataset (ADE20K
layout) that configs/bundled_data/nextvit_s_seg-shapes-cpu.py trains on.

    python tools/dataset_converters/make_seg_shapes.py [--root data/seg_shapes]

A second run with the same arguments finds the data up to date and does
nothing. See mmnextvit/bundled_data/seg_shapes.py for what the images contain.
"""
import sys

from mmnextvit.bundled_data.seg_shapes import main

if __name__ == '__main__':
    sys.exit(main())
