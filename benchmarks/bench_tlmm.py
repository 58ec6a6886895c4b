# SPDX-License-Identifier: BSD-3-Clause
"""Golden TLMM kernel against a plain NumPy integer matmul at bitnet_b1_58-large layer shapes.

Run: ``.venv/bin/python benchmarks/bench_tlmm.py`` (``make bench``). Both compute the same
int64 accumulators (checked); the table is the median of repeated runs of each, side by side.
"""

import time

import numpy as np

from ternedge.golden import tlmm

SHAPES = [(1536, 1536), (1536, 4096), (4096, 1536)]      # (K, N): q/k/v/o, up/gate, down


def median_time(fn, *args, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    print(f"{'M':>3} {'K':>5} {'N':>5} {'tlmm ms':>9} {'int matmul ms':>14} {'tlmm/matmul':>12}")
    for m in (1, 16):
        for k, n in SHAPES:
            acts = rng.integers(-127, 128, (m, k)).astype(np.int8)
            weights = rng.integers(-1, 2, (n, k)).astype(np.int8)
            indices = tlmm.encode_weights(weights)
            assert np.array_equal(tlmm.tlmm(acts, indices), tlmm.int_matmul(acts, weights))
            t_lut = median_time(tlmm.tlmm, acts, indices)
            t_mm = median_time(tlmm.int_matmul, acts, weights)
            print(f"{m:>3} {k:>5} {n:>5} {t_lut * 1e3:>9.2f} {t_mm * 1e3:>14.2f} "
                  f"{t_lut / t_mm:>12.2f}")


if __name__ == "__main__":
    main()
