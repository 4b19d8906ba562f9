# Copyright (c) mmnextvit contributors. All rights reserved.
"""Resident-set measurements of this process (Linux, glibc), shared by the
measuring tools in ``tools/analysis_tools/``."""
import ctypes
import gc
import os.path as osp
from typing import Optional

__all__ = [
    'status_kib', 'keep_freed_memory', 'return_freed_memory_at_once',
    'reset_peak_rss'
]

# glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_INT_MAX = 2**31 - 1


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


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse, as tcmalloc and jemalloc do:
    no block is served by its own mmap (glibc maps every block over 32 MiB
    afresh and page-faults it again at each use), the heap is never
    trimmed and grows 512 MiB at a time. What the environment variables
    ``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296
    MALLOC_TOP_PAD_=536870912`` do, from inside the process. Returns
    whether it took effect (False without glibc)."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        return bool(
            libc.mallopt(_M_MMAP_MAX, 0)
            and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
            and libc.mallopt(_M_TOP_PAD, 512 << 20))
    except (OSError, AttributeError):
        return False


def return_freed_memory_at_once() -> bool:
    """Make glibc serve every block over 64 KiB by mmap and return freed
    memory at once, so the resident set follows the live tensors; returns
    whether peak measurements are possible here. It slows allocation down:
    call it after any timing."""
    if not osp.exists('/proc/self/clear_refs'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's default
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)  # fixed
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024)
        libc.mallopt(_M_TOP_PAD, 0)
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
