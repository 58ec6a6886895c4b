# SPDX-License-Identifier: BSD-3-Clause
"""R² with and without the Bessel output filter, fixed vs float, ops, footprint and cycles
per bin for the shipped neural decoders on a synthetic session (the README table); with
``--neurobench``, NeuroBench's own metrics (``host.neural_neurobench``) for the no-filter and
block-middle runs, and the modeled energy per decode (``sim.snn_power``).

    python benchmarks/bench_snn.py [--seed 0] [--channels 96] [--neurobench] [--json]
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
    p.add_argument("--neurobench", action="store_true",
                   help="also NeuroBench's metrics (none and block-middle filters)")
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
            row.update(neural._energy(rep, args.channels))
            if args.neurobench and filt in ("none", "block-middle"):
                from ternedge.host import neural_neurobench

                b, mdl, meta = neural.make_backend(backend, path)
                nb = neural_neurobench.run(session, mdl, meta, b, filter=filt)
                row["neurobench"] = {k: v for k, v in nb.items()
                                     if k not in ("predictions", "labels")}
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
    if args.neurobench:
        print("\nNeuroBench's Benchmark on the same runs (R2, Effective_ACs, Effective_MACs, "
              "Dense, Footprint, ConnectionSparsity, ActivationSparsity):\n")
        print("| model | arithmetic | filter | R2 | Eff. ACs | Eff. MACs | Dense | footprint B "
              "| conn. sparsity | act. sparsity |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            nb = r.get("neurobench")
            if not nb:
                continue
            arith = "fixed (golden)" if r["backend"] == "golden" else "float (torch)"
            syn, act = nb["SynapticOperations"], nb["ActivationSparsity"]
            print(f"| {r['model']} | {arith} | {r['filter']} | {nb['R2']:.4f} | "
                  f"{syn['Effective_ACs']:.0f} | {syn['Effective_MACs']:.0f} | "
                  f"{syn['Dense']:.0f} | {nb['Footprint']:.0f} | "
                  f"{nb['ConnectionSparsity']:.4f} | "
                  + (f"{act:.3f} |" if act is not None else "n/a |"))
    print("\nmodeled energy at 250 decodes/s (sim.snn_power), fixed-point decoder + filter:")
    for r in results:
        if r["backend"] == "golden" and r["energy"]:
            ice, ecp = r["energy"]["icebreaker"], r["energy"]["ulx3s-85f"]
            print(f"  {r['filter']:15} iCEBreaker {ice['energy_uj_per_decode']:.3f} µJ/decode, "
                  f"{ice['power_uw_per_channel']:.2f} µW/channel | ULX3S "
                  f"{ecp['energy_uj_per_decode']:.1f} µJ/decode, "
                  f"{ecp['power_uw_per_channel']:.0f} µW/channel  "
                  f"(busy {ice['busy_cycles']:.0f} cycles/decode)")
    fixed = {r["filter"]: r["r2"] for r in results
             if r["model"] == "snn_streaming" and r["backend"] == "golden"}
    flt = {r["filter"]: r["r2"] for r in results
           if r["model"] == "snn_streaming" and r["backend"] == "torch"}
    if fixed and flt:
        print("\nfixed-point R² loss (float - fixed), snn_streaming: "
              + ", ".join(f"{k} {flt[k] - fixed[k]:+.4f}" for k in fixed))


if __name__ == "__main__":
    main()
