# Copyright (c) mmnextvit contributors. All rights reserved.
"""Data checks before a run starts, and one-line reports of what stops a
run once it has started."""
import contextlib
import os.path as osp
import sys
from typing import Iterator, Sequence, Tuple

from .config import ToolError

__all__ = [
    'check_data_files', 'check_model', 'check_pretrained', 'stops_in_one_line'
]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def check_model(cfg):
    """Build the config's model once, on the CPU, before the Runner is
    made (the Runner creates the work dir and its log first): a bad
    ``arch``, ``out_indices``, ``frozen_stages`` or head setting ends the
    tool with one line and nothing written. Returns the model.

    Raises:
        ToolError: the model does not build.
    """
    from mmengine.registry import MODELS
    try:
        return MODELS.build(cfg.model)
    except Exception as err:  # the builders raise many kinds
        raise ToolError(
            f"the model of '{cfg.filename}' does not build "
            f'({type(err).__name__}: {_first_line(err)}); fix the model '
            f'settings (--cfg-options model.KEY=VALUE)') from None


def _pretrained(node, key: str) -> Iterator[Tuple[str, str]]:
    """(config key, path) of every ``Pretrained`` init_cfg in a model
    config."""
    if isinstance(node, dict):
        init_cfgs = node.get('init_cfg')
        for index, init in enumerate(init_cfgs if isinstance(
                init_cfgs, (list, tuple)) else [init_cfgs]):
            if (isinstance(init, dict)
                    and str(init.get('type', '')).split('.')[-1]
                    == 'Pretrained'
                    and isinstance(init.get('checkpoint'), str)):
                where = f'{key}.init_cfg' + (
                    f'.{index}' if isinstance(init_cfgs, (list, tuple))
                    else '')
                yield f'{where}.checkpoint', init['checkpoint']
        for name, value in node.items():
            if name != 'init_cfg':
                yield from _pretrained(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained(value, f'{key}.{index}')


def check_pretrained(cfg) -> None:
    """Every local ``Pretrained`` weight file the model starts from exists.

    The Runner loads them in ``init_weights``, after it has created the
    work dir, and also when resuming (it initialises before it loads the
    checkpoint).

    Raises:
        ToolError: naming the first missing file and its config key.
    """
    for key, path in _pretrained(cfg.get('model'), 'model'):
        if '://' in path or osp.isfile(osp.expanduser(path)):
            continue
        init_key = key[:key.rindex('.init_cfg') + len('.init_cfg')]
        raise ToolError(
            f"pretrained weights '{path}' ({key}) do not exist; download "
            f'them (see README.md), or pass --cfg-options {key}=PATH, or '
            f'{init_key}=None to start from random weights')


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
    mid-run (``SegDataCheckHook``, the backbone's input checks) ends like
    any bad input (status 2)."""
    from mmnextvit.datasets.det_checks import DetDataError
    from mmnextvit.datasets.seg_checks import SegDataError
    try:
        yield
    except (DetDataError, SegDataError) as err:
        raise ToolError(str(err)) from None
    except ValueError as err:
        # The backbone's input checks (too small, wrong channel count) name
        # the input and the fix in their first line.
        if not str(err).startswith('Next-ViT'):
            raise
        raise ToolError(_first_line(err)) from None
    except FloatingPointError as err:
        runner.logger.error(str(err))
        prog = osp.basename(sys.argv[0]) or 'mmnextvit'
        print(f'{prog}: error: {err}', file=sys.stderr, flush=True)
        sys.exit(1)
