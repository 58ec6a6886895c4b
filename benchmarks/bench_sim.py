# SPDX-License-Identifier: BSD-3-Clause
"""Wall-clock speed of the simulator on bitnet-b1.58-large (0.73B).

Run: ``.venv/bin/python benchmarks/bench_sim.py``. Budgets: one decode token < 1 s; a
128-token prefill plus 256 decoded tokens < 60 s. Prints the measured times per
configuration (the simulated numbers it prints are *modeled*).
"""

import time

from ternedge.sim.cli import build_system

BUDGET_DECODE_TOKEN_S = 1.0
BUDGET_RUN_S = 60.0


def main():
    model, board = "bitnet-b1.58-large", "kv260"
    ok = True
    print(f"{'config':<10} {'1 decode token s':>17} {'128+256 run s':>14}   modeled result")
    for name in ("tellme-v2", "what-if", "default"):        # default: the RTL's cycle model
        sim = build_system(model, board, name)
        start = time.perf_counter()
        sim.decode_step(129)
        one = time.perf_counter() - start
        start = time.perf_counter()
        result = sim.run(128, 256)
        run = time.perf_counter() - start
        ok &= one < BUDGET_DECODE_TOKEN_S and run < BUDGET_RUN_S
        print(f"{name:<10} {one:17.4f} {run:14.3f}   TTFT {result.ttft_s:.3f} s, decode "
              f"{result.decode_tok_s:.1f} tok/s (modeled)")
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
