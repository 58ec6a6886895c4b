# SPDX-License-Identifier: BSD-3-Clause
"""Golden (fixed point) against the torch float reference on the shipped model's held-out text.

Run: ``.venv/bin/python benchmarks/eval_tiny.py [--float64]`` (``make bench``). Prints next-token
top-1 agreement, max and mean absolute logit error, and each backend's held-out bits per byte
over ``host/data/kjv_heldout.txt`` in windows of the model's 512-byte context.

``--float64`` adds the float noise floor: a float64 forward with the same HF BitNet math
(``tests/float_reference.py``) against the float32 torch reference, and golden against it.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402

from ternedge.golden.model import GoldenModel  # noqa: E402
from ternedge.host import numerics  # noqa: E402
from ternedge.host.checkpoint import load_checkpoint  # noqa: E402
from ternedge.host.cli import DEFAULT_MODEL  # noqa: E402
from ternedge.host.evaluate import compare_on_text  # noqa: E402
from ternedge.host.tokenizer import ByteTokenizer  # noqa: E402

HELDOUT = Path(__file__).parents[1] / "host" / "data" / "kjv_heldout.txt"


def float64_floor(weights, ids) -> dict:
    """Top-1 agreement and KL of float64 HF math against torch float32, and of golden against
    float64, over the same windows as ``compare_on_text``."""
    import torch

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from float_reference import float_forward

    from ternedge.host.torch_ref import BitNetTorch

    window = weights.config.max_position_embeddings
    golden = GoldenModel(weights)
    reference = BitNetTorch.from_weights(weights, device="cpu")
    logits = {"golden": [], "torch": [], "float64": []}
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1][:-1]
        golden.reset()
        logits["golden"].append(golden.logits(golden.forward(chunk)))
        with torch.no_grad():
            logits["torch"].append(reference(torch.as_tensor(chunk[None]))[0].double().numpy())
        logits["float64"].append(float_forward(weights, chunk))
    g, t, f = (np.concatenate(logits[k]) for k in ("golden", "torch", "float64"))
    pick = ("top1", "kl", "max_err_rel")
    return {"float64_vs_torch": {k: numerics.logit_metrics(f, t)[k] for k in pick},
            "golden_vs_float64": {k: numerics.logit_metrics(g, f)[k] for k in pick},
            "golden_vs_torch": {k: numerics.logit_metrics(g, t)[k] for k in pick}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float64", action="store_true",
                        help="also compare a float64 forward with torch and with golden")
    args = parser.parse_args(argv)
    weights = load_checkpoint(DEFAULT_MODEL)
    ids = np.asarray(ByteTokenizer().encode(HELDOUT.read_text()), dtype=np.int64)
    report = compare_on_text(weights, ids)
    if args.float64:
        report["float64"] = float64_floor(weights, ids)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
