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


CASES = [(design, sim) for design in ("decoder", "filter", "block") for sim in SIMS]

# Icarus is run in Verilog-2005 mode. cocotb's runner compiles with ``iverilog -g2012``; in
# SystemVerilog mode a declaration initializer (``reg x = 0;``) is applied before any process
# starts and raises no event (IEEE 1800 6.8). Yosys' write_verilog, which Amaranth uses, relies
# on that event: it emits ``reg \$auto$verilog_backend...$1 = 0;`` and reads it in every
# ``always @*`` so that each combinational block runs once at time 0. Under -g2012 a block
# whose real inputs do not change (``i__ready = (fsm_state == IDLE)`` while reset holds the
# state at its initial 0) stays X; the bench reads the X ready as "not ready" and presents
# beat 0 again, while the DUT's next-state logic (evaluated, since i__valid changed) has
# already taken it. The filter then sees x0 twice and every output is one sample late (on a
# slow input that looked like a 1 LSB drift from the third sample). A later -g2005 overrides
# the runner's -g2012; the Amaranth output is plain Verilog-2005.
ICARUS_ARGS = ["-g2005"]


@pytest.mark.cocotb
@pytest.mark.parametrize("design,sim", CASES)
def test_cocotb_stream(sim, design, tmp_path, request):
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    sys.path.insert(0, str(TESTS))
    import cocotb_snn_bench as bench

    from ternedge.rtl import bessel, snn

    seed = 21
    print(f"seed={seed}")
    dut = {"decoder": lambda: snn.Decoder(network=bench.bench_network(seed)),
           "filter": bessel.CausalFilter,
           "block": lambda: bessel.BlockFilter(tap="middle")}[design]()
    top = f"snn_{design}"
    # a persistent build per design and simulator: Verilator recompiles only when the
    # Verilog changes (it is rewritten only then, so its mtime says so)
    cache = getattr(request.config, "cache", None)          # absent under -p no:cacheprovider
    root = Path(cache.mkdir("cocotb_snn")) if cache is not None else tmp_path
    build_dir = root / f"{design}-{sim}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{top}.v"
    text = verilog.convert(dut, name=top)
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    runner = get_runner(sim)
    # Icarus compiles in well under a second, so it is always rebuilt: the runner's
    # up-to-date check looks only at source mtimes, not at build_args
    runner.build(sources=[src], hdl_toplevel=top, build_dir=build_dir,
                 always=sim == "icarus", timescale=("1ns", "1ps"),
                 build_args=["-Wno-fatal"] if sim == "verilator" else ICARUS_ARGS,
                 waves=os.environ.get("WAVES") == "1")
    env = {"SNN_DESIGN": design, "SNN_SEED": str(seed),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    runner.test(hdl_toplevel=top, test_module="cocotb_snn_bench", build_dir=build_dir,
                test_dir=tmp_path, extra_env=env, waves=os.environ.get("WAVES") == "1")
