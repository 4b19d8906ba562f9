# Copyright (c) mmnextvit contributors. All rights reserved.
"""Generate the synthetic shapes instance-segmentation dataset (COCO format)
that configs/mask_rcnn/nextvit_s_shapes-cpu.py trains on.

    python tools/dataset_converters/make_shapes.py [--root data/shapes]

A second run with the same arguments finds the data up to date and does
nothing. See mmnextvit/datasets/shapes.py for what the images contain.
"""
import os.path as osp
import sys

# The tools run from a checkout as well as from an installed package.
sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmnextvit.datasets.shapes import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
