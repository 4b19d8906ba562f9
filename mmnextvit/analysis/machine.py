# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the measuring tools record about the machine they ran on."""
import platform

__all__ = ['cpu_model']


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor
    name elsewhere)."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
