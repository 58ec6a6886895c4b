# SPDX-License-Identifier: BSD-3-Clause
"""Golden (fixed point) against the torch float reference on the shipped model's held-out text.

Run: ``.venv/bin/python benchmarks/eval_tiny.py`` (``make bench``). Prints next-token top-1
agreement, max and mean absolute logit error, and each backend's held-out bits per byte over
``host/data/kjv_heldout.txt`` in windows of the model's 512-byte context.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

from ternedge.host.checkpoint import load_checkpoint  # noqa: E402
from ternedge.host.cli import DEFAULT_MODEL  # noqa: E402
from ternedge.host.evaluate import compare_on_text  # noqa: E402
from ternedge.host.tokenizer import ByteTokenizer  # noqa: E402

HELDOUT = Path(__file__).parents[1] / "host" / "data" / "kjv_heldout.txt"


def main():
    weights = load_checkpoint(DEFAULT_MODEL)
    ids = ByteTokenizer().encode(HELDOUT.read_text())
    print(json.dumps(compare_on_text(weights, ids), indent=2))


if __name__ == "__main__":
    main()
