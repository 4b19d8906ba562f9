# Copyright (c) mmnextvit contributors. All rights reserved.
"""Resident-set measurements of this process (Linux, glibc), shared by the
measuring tools in ``tools/analysis_tools/``."""
import ctypes
import gc
import os.path as osp
from typing import Optional

__all__ = ['status_kib', 'return_freed_memory_at_once', 'reset_peak_rss']


def status_kib(field: str) -> Optional[int]:
    """A KiB field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None
    where there is none."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def return_freed_memory_at_once() -> bool:
    """Make glibc serve every block over 64 KiB by mmap and return freed
    memory at once, so the resident set follows the live tensors; returns
    whether peak measurements are possible here. It slows allocation down:
    call it after any timing."""
    if not osp.exists('/proc/self/clear_refs'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD, fixed
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def reset_peak_rss() -> Optional[int]:
    """Collect garbage, trim the heap and reset the peak resident set
    (``VmHWM``); returns the resident set (KiB) it starts from.

    Raises:
        OSError: ``/proc/self/clear_refs`` cannot be written.
    """
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as refs:
        refs.write('5')
    return status_kib('VmRSS')
