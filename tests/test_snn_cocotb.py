# SPDX-License-Identifier: BSD-3-Clause
"""rtl.snn / rtl.bessel Verilog under cocotb (Verilator always, Icarus when installed)."""

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("cocotb_tools")

TESTS = Path(__file__).parent
SIMS = ["verilator"] + (["icarus"] if shutil.which("iverilog") else [])
CASES = [(design, sim) for design in ("decoder", "filter", "block", "amortized")
         for sim in SIMS]


@pytest.mark.cocotb
@pytest.mark.parametrize("design,sim", CASES)
def test_cocotb_stream(sim, design, tmp_path, request):
    sys.path.insert(0, str(TESTS))
    import cocotb_snn_bench as bench

    from ternedge.rtl import bessel, cosim, snn

    seed = 21
    print(f"seed={seed}")
    dut = {"decoder": lambda: snn.Decoder(network=bench.bench_network(seed)),
           "filter": bessel.CausalFilter,
           "block": lambda: bessel.BlockFilter(tap="middle"),
           "amortized": bessel.AmortizedBlockFilter}[design]()
    top = f"snn_{design}"
    # a persistent build per design and simulator (``rtl.cosim.build``: Verilog-2005 for
    # Icarus, rebuilt only when the Verilog changes)
    cache = getattr(request.config, "cache", None)          # absent under -p no:cacheprovider
    root = Path(cache.mkdir("cocotb_snn")) if cache is not None else tmp_path
    build_dir = root / f"{design}-{sim}"
    waves = os.environ.get("WAVES") == "1"
    runner = cosim.build(dut, toplevel=top, sim=sim, build_dir=build_dir, waves=waves)
    # the bench imports from tests/ through sys.path (cocotb's runner sets PYTHONPATH itself)
    with cosim.environment(sim):
        runner.test(hdl_toplevel=top, test_module="cocotb_snn_bench", build_dir=build_dir,
                    test_dir=tmp_path, extra_env={"SNN_DESIGN": design, "SNN_SEED": str(seed)},
                    waves=waves)
