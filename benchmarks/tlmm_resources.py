# SPDX-License-Identifier: BSD-3-Clause
"""Yosys resource estimate of the TLMM engine for each ``AcceleratorConfig.table_memory``.

Reproduces ``sim/constants.py``'s ``LUT_PER_TERNARY_MAC`` measurement (``ternedge build --design
tlmm --board kv260 --geometry 3,28,16``: ``boards.tops.TlmmTestTop`` with max_k = 2 K-steps,
max_n = 2 N-blocks, max_tokens = 4; Yosys ``synth_xilinx -family xcup -top top -flatten``) once
per table memory, and prints LUT (logic), LUTRAM (primitives and the LUTs they occupy), FF and
LUT / FF per ternary MAC (G*T*N); a LUTRAM primitive counts as the LUTs it occupies
(``boards.build._LUTRAM_LUTS``: RAM32M16 = 8), as ``LUT_PER_TERNARY_MAC`` does. Each synthesis
takes 5-20 minutes (about 11 on two busy cores).

Run: ``.venv/bin/python benchmarks/tlmm_resources.py [--variants registers lutram]
[--geometry 3,28,16] [--out-dir build/tlmm-resources] [--parse-only]``
(``--parse-only`` re-reads the logs of an earlier run).
"""

import argparse
import json
from pathlib import Path

from ternedge.boards import build
from ternedge.golden.config import AcceleratorConfig
from ternedge.rtl.tlmm import TABLE_MEMORIES


def measure(variant, geometry, out_dir, parse_only=False):
    g, t, n = geometry
    config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n,
                               table_memory=variant)
    run_dir = Path(out_dir) / f"g{g}t{t}n{n}-{variant}"
    log = run_dir / "vivado" / "synth_xilinx.log"
    seconds = None
    if not parse_only:
        run_dir.mkdir(parents=True, exist_ok=True)
        top = build._tlmm_top(config, None, None, 4)       # the `ternedge build` defaults
        seconds = build._estimate_kv260(top, run_dir)["build_seconds"]
    counts = build._parse_yosys_stat(log.read_text())
    lut = sum(counts.get(c, 0) for c in build._XILINX_CELLS["lut"])
    lutram_cells = {c: counts[c] for c in build._XILINX_CELLS["lutram"] if counts.get(c)}
    lutram_luts = sum(k * build._LUTRAM_LUTS.get(c, 1) for c, k in lutram_cells.items())
    ff = sum(counts.get(c, 0) for c in build._XILINX_CELLS["ff"])
    macs = config.macs_per_cycle
    return {"variant": variant, "geometry": list(geometry), "macs": macs, "lut_logic": lut,
            "lutram_cells": lutram_cells, "lutram_luts": lutram_luts,
            "lut_total": lut + lutram_luts, "ff": ff,
            "carry": sum(counts.get(c, 0) for c in build._XILINX_CELLS["carry"]),
            "muxf7": counts.get("MUXF7", 0),
            "muxf8": counts.get("MUXF8", 0),
            "bram36": counts.get("RAMB36E2", 0), "bram18": counts.get("RAMB18E2", 0),
            "lut_per_mac": round((lut + lutram_luts) / macs, 2),
            "ff_per_mac": round(ff / macs, 2), "synth_seconds": seconds, "log": str(log)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(TABLE_MEMORIES),
                        choices=TABLE_MEMORIES)
    parser.add_argument("--geometry", default="3,28,16", metavar="G,T,N")
    parser.add_argument("--out-dir", default="build/tlmm-resources")
    parser.add_argument("--parse-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    geometry = tuple(int(x) for x in args.geometry.split(","))
    rows = [measure(v, geometry, args.out_dir, args.parse_only) for v in args.variants]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"TLMM engine, G,T,N = {args.geometry} ({rows[0]['macs']} ternary MACs/cycle), "
          "Yosys synth_xilinx -family xcup -flatten")
    print(f"{'table_memory':12} {'LUT logic':>9} {'LUTRAM LUT':>10} {'LUT total':>9} "
          f"{'FF':>7} {'CARRY':>6} {'LUT/MAC':>7} {'FF/MAC':>6}  LUTRAM cells")
    for r in rows:
        cells = ", ".join(f"{k} {c}" for c, k in r["lutram_cells"].items()) or "none"
        print(f"{r['variant']:12} {r['lut_logic']:9} {r['lutram_luts']:10} {r['lut_total']:9} "
              f"{r['ff']:7} {r['carry']:6} {r['lut_per_mac']:7} {r['ff_per_mac']:6}  {cells}")


if __name__ == "__main__":
    main()
