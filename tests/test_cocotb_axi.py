# SPDX-License-Identifier: BSD-3-Clause
"""rtl.axi's DMAs and rtl.regs.Registers as Verilog under cocotb, against cocotbext-axi's
``AxiRam`` and ``AxiLiteMaster`` (Verilator always, Icarus when ``iverilog`` is on PATH).

The bench is ``tests/cocotb_axi_bench.py`` (its ``Top`` wraps the three blocks). Builds are
cached per simulator in pytest's cache directory (``ternedge.rtl.cosim.build``) and redone only
when the generated Verilog changes. WAVES=1 dumps waveforms into the build directory.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("cocotb_tools")
pytest.importorskip("cocotbext.axi")

pytestmark = pytest.mark.cocotb

TESTS = Path(__file__).parent
TOPLEVEL = "axi_top"
BENCH_TESTS = 6          # cocotb tests in cocotb_axi_bench.py
SEED = 2024


def _simulators():
    return [pytest.param("verilator", id="verilator"),
            pytest.param("icarus", id="icarus", marks=pytest.mark.skipif(
                shutil.which("iverilog") is None, reason="iverilog is not on PATH"))]


@pytest.fixture(scope="module")
def cache_dir(request):
    return Path(request.config.cache.mkdir("cocotb_axi"))


@pytest.mark.parametrize("sim", _simulators())
def test_axi_cocotb(sim, cache_dir):
    from cocotb_tools.runner import get_results

    from ternedge.rtl import cosim

    sys.path.insert(0, str(TESTS))
    import cocotb_axi_bench as bench

    waves = os.environ.get("WAVES") == "1"
    build_dir = cache_dir / sim
    runner = cosim.build(bench.Top(), toplevel=TOPLEVEL, sim=sim, build_dir=build_dir,
                         waves=waves)
    print(f"seed={SEED}")
    env = {"AXI_SEED": str(SEED),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS),
                                                       os.environ.get("PYTHONPATH")]))}
    with cosim.environment(sim):
        results = runner.test(hdl_toplevel=TOPLEVEL, test_module="cocotb_axi_bench",
                              build_dir=build_dir, test_dir=build_dir, waves=waves,
                              extra_env=env)
    tests, failures = get_results(results)
    assert tests == BENCH_TESTS and failures == 0, \
        f"seed={SEED}: {failures} of {tests} cocotb tests failed"
