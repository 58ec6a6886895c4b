# SPDX-License-Identifier: BSD-3-Clause
"""Golden against HF transformers on random-init ``BitNetConfig`` models (the shapes of
``tests/test_numerics_targets.py``), teacher-forced on random tokens.

Run: ``.venv/bin/python benchmarks/eval_numerics_random.py [--sequences N]``. Prints, per
shape and pooled, golden's top-1 agreement, KL and max logit error relative to the range, and
the float32 torch reference's top-1 agreement with transformers beside it (the float noise
floor of these chaotic models).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from test_numerics_targets import CONTEXT, SHAPES, build_model  # noqa: E402

from ternedge.golden.model import GoldenModel  # noqa: E402
from ternedge.host import numerics  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4, help="64-token sequences per shape")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SHAPES:
            weights, hf = build_model(name, Path(tmp) / name)
            ids = np.random.default_rng(100 + sorted(SHAPES).index(name)).integers(
                0, 256, (args.sequences, CONTEXT))
            with torch.no_grad():
                ref = hf(input_ids=torch.as_tensor(ids), use_cache=False).logits.double().numpy()
            golden, float32 = [], []
            for row in ids:
                model = GoldenModel(weights)
                golden.append(model.logits(model.forward(row)))
                float32.append(numerics.float_trace(weights, row).logits)
            ref = ref.reshape(-1, 256)
            rows[name] = numerics.logit_metrics(np.concatenate(golden), ref) | {
                "torch_ref_top1": numerics.logit_metrics(np.concatenate(float32), ref)["top1"]}
    pooled = {key: float(np.mean([r[key] for r in rows.values()]))
              for key in ("top1", "kl", "torch_ref_top1")}
    pooled["max_err_rel"] = max(r["max_err_rel"] for r in rows.values())
    print(json.dumps({"positions_per_shape": args.sequences * CONTEXT, "shapes": rows,
                      "pooled": pooled}, indent=1))


if __name__ == "__main__":
    main()
