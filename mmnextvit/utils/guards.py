# Copyright (c) mmnextvit contributors. All rights reserved.
"""Data checks before a run starts, and one-line reports of what stops a
run once it has started."""
import contextlib
import os.path as osp
import sys
from typing import Iterator, Sequence

from .config import ToolError

__all__ = ['check_data_files', 'stops_in_one_line']


def check_data_files(cfg, loaders: Sequence[str]) -> None:
    """The content checks of the datasets the named loaders read: for
    COCO-format detection data the annotation file, its labels and every
    image it lists (:mod:`mmnextvit.datasets.det_checks`); for segmentation
    data a label map for every image (:mod:`mmnextvit.datasets.seg_checks`).
    Call it after :func:`~mmnextvit.utils.check_data_paths`.

    Raises:
        ToolError: the first problem, in one line.
    """
    from mmnextvit.datasets.det_checks import DetDataError, check_det_files
    from mmnextvit.datasets.seg_checks import SegDataError, check_seg_files
    try:
        check_det_files(cfg, loaders)
        check_seg_files(cfg, loaders)
    except (DetDataError, SegDataError) as err:
        raise ToolError(str(err)) from None


@contextlib.contextmanager
def stops_in_one_line(runner) -> Iterator[None]:
    """Around ``runner.train()`` / ``runner.test()``: a run stopped by
    ``StopOnInvalidLossHook`` ends with its message as one line on stderr
    (and in the run's log) and exit status 1; a data error found by a hook
    mid-run (``SegDataCheckHook``) ends like any bad input (status 2)."""
    from mmnextvit.datasets.det_checks import DetDataError
    from mmnextvit.datasets.seg_checks import SegDataError
    try:
        yield
    except (DetDataError, SegDataError) as err:
        raise ToolError(str(err)) from None
    except FloatingPointError as err:
        runner.logger.error(str(err))
        prog = osp.basename(sys.argv[0]) or 'mmnextvit'
        print(f'{prog}: error: {err}', file=sys.stderr, flush=True)
        sys.exit(1)
