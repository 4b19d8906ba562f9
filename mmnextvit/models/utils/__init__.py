# Copyright (c) mmnextvit contributors. All rights reserved.
"""Helpers of the model definitions."""
