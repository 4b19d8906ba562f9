# Copyright (c) mmnextvit contributors. All rights reserved.
__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Turn a version string such as '0.1.0' or '0.2.0rc1' into a tuple.

    Numeric parts become ints; a pre-release suffix stays a string, e.g.
    '0.2.0rc1' -> (0, 2, 0, 'rc1').
    """
    info = []
    for part in version_str.split('.'):
        if part.isdigit():
            info.append(int(part))
        else:
            digits = ''.join(c for c in part if c.isdigit())
            suffix = part[len(digits):]
            if digits:
                info.append(int(digits))
            info.append(suffix)
    return tuple(info)


version_info = parse_version_info(__version__)

__all__ = ['__version__', 'version_info', 'parse_version_info']
