# Copyright (c) mmnextvit contributors. All rights reserved.
"""Dataset helpers. The detection and segmentation datasets themselves are
mmdet's and mmseg's; this package only makes data (see ``shapes``)."""
