# SPDX-License-Identifier: BSD-3-Clause
"""Bad input to the benchmark scripts: a clear one-line error, a non-zero exit."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_rtl_harness_compare_names_a_missing_library(tmp_path):
    missing = tmp_path / "libharness-none.so"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "bench_rtl_harness.py"),
                          "--compare", str(missing)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.endswith(f"no such harness library: {missing} (rtl.harness.build writes them "
                         "as libharness-*.so in its build folder)")
    assert run.stdout == ""
