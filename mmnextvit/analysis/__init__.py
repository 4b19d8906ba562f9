# Copyright (c) mmnextvit contributors. All rights reserved.
"""Support for the measuring tools in ``tools/analysis_tools/``: resident-set
and allocator control (``memory``)."""
