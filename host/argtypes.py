# SPDX-License-Identifier: BSD-3-Clause
"""argparse ``type=`` validators for the ``ternedge`` commands' numeric options and paths.

A bad value raises ``InputError`` naming the option, which argparse does not catch, so
``ternedge`` prints it on one line (``ternedge: error: --max-bins must be ...``) and exits 1
before the command starts any work (no checkpoint loads, no synthesis, no simulation). NaN and
infinities are never accepted, and every option has an upper bound, so a huge value is refused
instead of allocating or elaborating something absurd.
"""

import math
from pathlib import Path

from .errors import InputError

__all__ = ["SEED_MAX", "COUNT_MAX", "integer", "real", "seed", "output_dir", "check_output_dir"]

#: seeds are 32-bit (numpy's legacy and torch's manual_seed both take them)
SEED_MAX = 2**32 - 1
#: the upper bound of a count (tokens, bins, epochs, ...) unless a command sets a smaller one
COUNT_MAX = 1 << 24


def integer(option: str, minimum: int = 1, maximum: int = COUNT_MAX, what: str = "an integer",
            note: str = ""):
    """A type function for ``option``: base-10 integers in ``[minimum, maximum]``."""
    rule = f"{option} must be {what} in [{minimum}, {maximum}]{note}"

    def parse(text):
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise InputError(f"{rule}, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise InputError(f"{rule}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(option: str, minimum: float = 0.0, maximum: float = 1e6, exclusive_min: bool = False,
         what: str = "a finite number", note: str = ""):
    """A type function for ``option``: finite floats in ``[minimum, maximum]`` (``(minimum,
    maximum]`` with ``exclusive_min``)."""
    rule = (f"{option} must be {what} in {'(' if exclusive_min else '['}{minimum:g}, "
            f"{maximum:g}]{note}")

    def parse(text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise InputError(f"{rule}, got {text!r}") from None
        if not (math.isfinite(value) and value <= maximum
                and (value > minimum if exclusive_min else value >= minimum)):
            raise InputError(f"{rule}, got {text}")
        return value

    parse.__name__ = "real"
    return parse


def seed(option: str = "--seed"):
    """A type function for a random seed: an integer in [0, 2**32 - 1]."""
    return integer(option, 0, SEED_MAX, what="a seed (integer)")


def check_output_dir(path, option: str = "--plots") -> Path:
    """Raise ``InputError`` unless ``path`` is a directory or can be created as one (no part
    of it is an existing file). Returns it as a ``Path``."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"runs through a file ({part})"
                raise InputError(f"{option} {path} {what}, not a directory; give a directory "
                                 f"path")
            break
    return path


def output_dir(option: str = "--plots"):
    """A type function for a directory to be written: refuses paths through a file."""

    def parse(text):
        return check_output_dir(text, option)

    parse.__name__ = "directory"
    return parse
