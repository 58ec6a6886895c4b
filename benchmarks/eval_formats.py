# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's compact formats (``golden.formats``) measured against the float reference.

Run: ``.venv/bin/python benchmarks/eval_formats.py [--windows N] [--random-models M]``.

For the shipped model: golden with each KV-cache and LM-head format over the first N 512-byte
windows of ``host/data/kjv_heldout.txt`` (teacher-forced): top-1 agreement with the float torch
reference, KL, max logit error relative to the range, and held-out bits per byte (the model is
byte-level: one token per byte). For M random-init transformers ``BitNetConfig`` shapes
(vocab 256, written pre-quantized as transformers writes them): top-1 and KL against the float
reference on random tokens. Prints one JSON object.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402

from ternedge.golden import formats  # noqa: E402
from ternedge.host import numerics  # noqa: E402
from ternedge.host.checkpoint import load_checkpoint  # noqa: E402
from ternedge.host.cli import DEFAULT_MODEL  # noqa: E402
from ternedge.host.evaluate import bits_per_token  # noqa: E402

HELDOUT = Path(__file__).parents[1] / "host" / "data" / "kjv_heldout.txt"
VARIANTS = [("base", None, None)] + [(kind, arg, fmt) for kind, arg, fmt in formats.candidates()]


def _measure(weights, windows):
    """{format name: metrics} over teacher-forced windows ``(ids, targets)``."""
    refs = [numerics.float_trace(weights, ids).logits for ids, _ in windows]
    targets = np.concatenate([t for _, t in windows])
    ref = np.concatenate(refs)
    out = {}
    for kind, arg, fmt in VARIANTS:
        kwargs = {arg: fmt} if arg else {}
        got = np.concatenate([numerics.golden_trace(weights, ids, **kwargs).logits
                              for ids, _ in windows])
        name = "golden (int32 KV, float64 LM head)" if fmt is None else f"{kind} {fmt.name}"
        out[name] = numerics.logit_metrics(got, ref) | {
            "bits_per_byte": bits_per_token(got, targets)}
    out["float reference"] = {"bits_per_byte": bits_per_token(ref, targets)}
    return out


def _random_models(count):
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_numerics_targets import SHAPES, build_model

    results = {}
    for name in list(SHAPES)[:count]:
        weights = build_model(name, Path(f"/tmp/ternedge-formats-{name}"))[0]
        rng = np.random.default_rng(7)
        windows = [(ids[:-1], ids[1:]) for ids in rng.integers(0, 256, (2, 65))]
        results[name] = _measure(weights, windows)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--random-models", type=int, default=3)
    args = parser.parse_args(argv)
    weights = load_checkpoint(DEFAULT_MODEL)
    data = np.frombuffer(HELDOUT.read_bytes(), dtype=np.uint8).astype(np.int64)
    context = weights.config.max_position_embeddings
    windows = [(data[s:s + context], data[s + 1:s + context + 1])
               for s in range(0, args.windows * context, context)]
    cfg = weights.config
    report = {
        "tiny_model": _measure(weights, windows),
        "positions": sum(len(t) for _, t in windows),
        "kv_bits_per_element": {k: formats.KVFormat(k).bits_per_element(
            cfg.num_key_value_heads, cfg.head_dim) for k in formats.KV_FORMATS},
        "lm_head_bits_per_weight": {f.name: f.bits_per_weight(cfg.hidden_size)
                                    for f in formats.LM_HEAD_FORMATS},
    }
    if args.random_models:
        report["random_models"] = _random_models(args.random_models)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
