# Copyright (c) mmnextvit contributors. All rights reserved.
"""How the command-line tools report a bad input: one line naming the input
and the fix, exit status 2 (the status argparse uses for bad arguments),
never a traceback."""
import contextlib
import functools
import os.path as osp
import sys
from typing import Callable, Iterator

__all__ = [
    'ToolError', 'run_tool', 'fail', 'first_line', 'stops_in_one_line'
]


class ToolError(Exception):
    """A bad input of a command-line tool, reported as one line."""


def run_tool(main: Callable[..., None]) -> Callable[..., None]:
    """Decorate a tool's ``main``: a :class:`ToolError` becomes one line on
    stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ToolError as err:
            fail(str(err))

    return wrapper


def fail(message: str, status: int = 2) -> None:
    """Print ``message`` as the tool's one error line and exit."""
    prog = osp.basename(sys.argv[0]) or 'mmnextvit'
    print(f'{prog}: error: {message}', file=sys.stderr, flush=True)
    sys.exit(status)


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of ``err``'s message (its type name when it has
    none), with the line number of a syntax error, cut at ``limit``
    characters: what a one-line error quotes of an exception."""
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    if isinstance(err, SyntaxError) and err.lineno and 'line' not in text:
        text += f' (line {err.lineno})'
    return text if len(text) <= limit else text[:limit] + '...'


@contextlib.contextmanager
def stops_in_one_line(runner) -> Iterator[None]:
    """Around ``runner.train()`` / ``runner.test()``: a run stopped by
    ``StopOnInvalidLossHook`` ends with its message as one line on stderr
    (and in the run's log) and exit status 1; a data error found by a hook
    mid-run (``SegDataCheckHook``, the backbone's input checks) ends like
    any bad input (status 2)."""
    from mmnextvit.data_checks.detection import DetDataError
    from mmnextvit.data_checks.segmentation import SegDataError
    try:
        yield
    except (DetDataError, SegDataError) as err:
        raise ToolError(str(err)) from None
    except ValueError as err:
        # The backbone's input checks (too small, wrong channel count) name
        # the input and the fix in their first line.
        if not str(err).startswith('Next-ViT'):
            raise
        raise ToolError(first_line(err)) from None
    except FloatingPointError as err:
        runner.logger.error(str(err))
        fail(str(err), status=1)
