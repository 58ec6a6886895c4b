# SPDX-License-Identifier: BSD-3-Clause
"""argparse ``type=`` validators for the ``ternedge`` commands' numeric options and paths.

A bad value ends in argparse's one-line ``error: argument --x: ...`` and exit status 2 before
any command starts work (no checkpoint loads, no synthesis, no simulation). NaN and infinities
are never accepted; every option has an upper bound, so a huge value is refused instead of
allocating or elaborating something absurd.
"""

import argparse
import math
from pathlib import Path

from .errors import InputError

__all__ = ["SEED_MAX", "COUNT_MAX", "integer", "real", "seed", "output_dir", "check_output_dir"]

#: seeds are 32-bit (numpy's legacy and torch's manual_seed both take them)
SEED_MAX = 2**32 - 1
#: the upper bound of a count (tokens, bins, epochs, ...) unless a command sets a smaller one
COUNT_MAX = 1 << 24


def _range_text(minimum, maximum):
    if maximum is None:
        return f">= {minimum}"
    return f"in [{minimum}, {maximum}]"


def integer(minimum: int = 1, maximum: int | None = COUNT_MAX, what: str = "an integer"):
    """A type function accepting base-10 integers in ``[minimum, maximum]``."""

    def parse(text):
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"must be {what} {_range_text(minimum, maximum)}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(
                f"must be {what} {_range_text(minimum, maximum)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(minimum: float = 0.0, maximum: float = 1e6, exclusive_min: bool = False,
         what: str = "a number"):
    """A type function accepting finite floats in ``[minimum, maximum]`` (``(minimum, ..]``
    with ``exclusive_min``)."""
    lo = "(" if exclusive_min else "["
    bounds = f"in {lo}{minimum:g}, {maximum:g}]"

    def parse(text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text!r}") from None
        ok = math.isfinite(value) and value <= maximum and (
            value > minimum if exclusive_min else value >= minimum)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text}")
        return value

    parse.__name__ = "real"
    return parse


#: a random seed: an integer in [0, 2**32 - 1]
seed = integer(0, SEED_MAX, what="a seed (integer)")


def check_output_dir(path, option: str = "--plots") -> Path:
    """Raise ``InputError`` unless ``path`` is a directory or can be created as one (no part
    of it is an existing file). Returns it as a ``Path``."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "is" if part == path else f"has a file, {part}, in its path: it"
                raise InputError(f"{option} {path} {where} not a directory; give a directory "
                                 f"path")
            break
    return path


def output_dir(option: str = "--plots"):
    """A type function for a directory to be written: refuses paths through a file."""

    def parse(text):
        try:
            return check_output_dir(text, option)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option} ")) from None

    parse.__name__ = "directory"
    return parse
