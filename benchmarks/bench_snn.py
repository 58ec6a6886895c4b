# SPDX-License-Identifier: BSD-3-Clause
"""R² with and without the Bessel output filter, fixed vs float, ops, footprint and cycles
per bin for the shipped neural decoders on a synthetic session (the README table).

    python benchmarks/bench_snn.py [--seed 0] [--channels 96] [--json]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

from ternedge.host import neural  # noqa: E402
from ternedge.host.errors import CheckpointError  # noqa: E402

ROWS = [("snn_streaming", "golden"), ("snn_streaming", "torch"), ("snn_3d", "torch"),
        ("ann_2d", "torch")]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=96, choices=[96, 192])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    session, name = neural.load_session(None, args.seed, args.channels)
    results = []
    for model, backend in ROWS:
        try:
            path = neural.model_path(model, args.channels)
        except CheckpointError as exc:
            print(f"skip: {exc}")
            continue
        for filt in neural.FILTERS:
            start = time.perf_counter()
            b, mdl, meta = neural.make_backend(backend, path)
            rep = neural.decode_session(session, b, mdl, meta, filter=filt, data_name=name)
            row = rep.to_dict()
            row["seconds"] = time.perf_counter() - start
            results.append(row)
    if args.json:
        print(json.dumps(results))
        return
    print(f"data: {name}, test part of the 0.5 split ({results[0]['bins']} bins)\n")
    print("| model | arithmetic | filter | R² | R² x | R² y | ACs | MACs | filter MACs "
          "| footprint B | cycles/bin mean (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        arith = "fixed (golden)" if r["backend"] == "golden" else "float (torch)"
        cyc = r["cycles_per_bin"]
        cycles = f"{cyc['mean']:.0f} ({cyc['max']})" if cyc else "-"
        o = r["ops_per_decode"]
        print(f"| {r['model']} | {arith} | {r['filter']} | {r['r2']:.4f} | {r['r2_x']:.4f} | "
              f"{r['r2_y']:.4f} | {o['acs']:.0f} | {o['macs']:.0f} | {o['filter_macs']:.0f} | "
              f"{r['footprint_bytes']} | {cycles} |")
    fixed = {r["filter"]: r["r2"] for r in results
             if r["model"] == "snn_streaming" and r["backend"] == "golden"}
    flt = {r["filter"]: r["r2"] for r in results
           if r["model"] == "snn_streaming" and r["backend"] == "torch"}
    if fixed and flt:
        print("\nfixed-point R² loss (float - fixed), snn_streaming: "
              + ", ".join(f"{k} {flt[k] - fixed[k]:+.4f}" for k in fixed))


if __name__ == "__main__":
    main()
