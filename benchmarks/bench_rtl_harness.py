# SPDX-License-Identifier: BSD-3-Clause
"""Simulation speed of the whole accelerator top: the Verilator C++ harness (``rtl.harness``)
against the cocotb path (cocotbext-axi's ``AxiRam`` and ``AxiLiteMaster`` in Python), in one
run, on one core each.

- ``tiny``: the RTL backend's geometry (3,24,4) on the shipped tiny model: a 24-token prefill
  and decode steps, on the harness (``ideal`` DDR) and on cocotb (the same decode pass);
- ``kv260``: the KV260 default configuration ((3,28,16), LUTRAM tables, 160-column jobs) on
  one layer of bitnet-b1.58-large's shapes (``ternedge rtl-bench``), ``kv260`` DDR.

Simulated cycles per CPU second of the simulating process (one core: both paths are
single-threaded, and CPU time does not depend on what else the machine runs) and per second of
wall time, builds excluded (reported apart). This file is also the cocotb test module of the
cocotb path (the cocotb process's CPU time includes its Python AXI models, which is the
point).

    .venv/bin/python benchmarks/bench_rtl_harness.py [--skip-kv260] [--json FILE]

``--compare LIB [LIB ...]`` times prebuilt harness libraries of the tiny top (``rtl.harness.build``
outputs of the same design, e.g. before and after a change) on the tiny workload, alternating,
``--rounds`` times: on a shared machine, alternating runs are the fair comparison.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
HERE = pathlib.Path(__file__).resolve().parent
TOPLEVEL = "ternedge_accelerator"
MODEL = HERE.parent / "host" / "models" / "tiny-kjv"
PROMPT = b"And God said unto Moses,"


def _tiny_backend_parts():
    from ternedge.golden.layout import Layout
    from ternedge.golden.model import GoldenModel
    from ternedge.host.checkpoint import load_checkpoint
    from ternedge.host.rtl_backend import MAX_CONTEXT, MAX_TOKENS, RTL_CONFIG

    weights = load_checkpoint(MODEL)
    layout = Layout(GoldenModel(weights, RTL_CONFIG), RTL_CONFIG, max_tokens=MAX_TOKENS,
                    max_context=MAX_CONTEXT)
    return weights, layout


def bench_harness_tiny(decode_steps):
    from ternedge.host.rtl_backend import RTLBackend

    weights, _ = _tiny_backend_parts()
    start = time.perf_counter()
    backend = RTLBackend(weights)
    build = time.perf_counter() - start
    backend.hidden(list(PROMPT), "prefill")
    for token in range(decode_steps):
        backend.hidden([65 + token], "decode")
    backend.close()
    cycles = sum(c.sim_cycles for c in backend.cycle_log)
    wall = sum(c.wall_s for c in backend.cycle_log)
    cpu = sum(c.cpu_s for c in backend.cycle_log)
    return {"build_s": round(build, 1), "cycles": cycles, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "cycles_per_s": round(cycles / wall),
            "cycles_per_cpu_s": round(cycles / cpu)}


def bench_harness_kv260():
    from ternedge.host.rtl_bench import bench
    from ternedge.sim import presets

    start = time.perf_counter()
    report = bench(presets.load_model("bitnet-b1.58-large"), layers=1, board="kv260",
                   ddr="kv260", prompt_len=16, decode_tokens=2)
    total = time.perf_counter() - start
    return {"cycles": report["sim_cycles"], "wall_s": report["sim_wall_s"],
            "cycles_per_s": report["sim_cycles_per_s"],
            "cycles_per_cpu_s": report["sim_cycles_per_cpu_s"],
            "build_and_setup_s": round(total - report["sim_wall_s"], 1),
            "bit_exact": report["bit_exact"], "cycle_exact": report["cycle_exact"]}


def compare_libraries(libraries, rounds, decode_steps):
    """Cycles per CPU second of each prebuilt library on the tiny workload, alternating."""
    from ternedge.rtl import harness

    build, rates = harness.build, {str(lib): [] for lib in libraries}
    try:
        for _ in range(rounds):
            for lib in libraries:
                harness.build = lambda top, lib=lib, **kwargs: pathlib.Path(lib)
                rate = bench_harness_tiny(decode_steps)["cycles_per_cpu_s"]
                rates[str(lib)].append(rate)
                print(f"{lib}: {rate:,} cycles per CPU second", flush=True)
    finally:
        harness.build = build
    return rates


def bench_cocotb_tiny(work):
    """One decode pass of the tiny model on the cocotb path (this file as the test module)."""
    from ternedge.host.rtl_backend import MAX_CONTEXT, MAX_TOKENS, RTL_CONFIG
    from ternedge.rtl import cosim
    from ternedge.rtl.accelerator import Accelerator

    weights, layout = _tiny_backend_parts()
    # the range-scaled model's config (its RMSNorm epsilon), as RTLBackend builds the top
    top = Accelerator(config=RTL_CONFIG, model=layout.model.config, max_tokens=MAX_TOKENS,
                      max_context=MAX_CONTEXT, gates=(weights.config.hidden_act,))
    build_dir = work / "cocotb-tiny"
    start = time.perf_counter()
    runner = cosim.build(top, toplevel=TOPLEVEL, sim="verilator", build_dir=build_dir,
                         log_file=str(build_dir) + ".log")
    build = time.perf_counter() - start
    result = work / "cocotb-result.json"
    sys.path.insert(0, str(HERE))
    with cosim.environment("verilator"):
        runner.test(hdl_toplevel=TOPLEVEL, test_module="bench_rtl_harness",
                    build_dir=build_dir, test_dir=work, log_file=str(work / "cocotb-run.log"),
                    extra_env={"TERNEDGE_BENCH_RESULT": str(result),
                               "COCOTB_LOG_LEVEL": "WARNING"})
    out = json.loads(result.read_text())
    out["build_s"] = round(build, 1)
    return out


try:
    import cocotb
except ImportError:                      # the benchmark driver does not need it
    cocotb = None

if cocotb is not None and os.environ.get("TERNEDGE_BENCH_RESULT"):
    @cocotb.test()
    async def decode_pass(dut):
        """Load the DDR, prefill the prompt (unmeasured), then time one decode pass."""
        import warnings

        import numpy as np
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles, RisingEdge
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

        from ternedge.golden import isa
        from ternedge.rtl.regs import Reg

        warnings.filterwarnings("ignore", category=DeprecationWarning)
        weights, layout = _tiny_backend_parts()
        ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "ctrl_"), dut.clk, dut.rst)
        ram = AxiRam(AxiBus.from_prefix(dut, "ddr_"), dut.clk, dut.rst, size=layout.size)
        # the WeightStreamer's ports read the same memory
        for port in range(layout.config.fill_entries_per_cycle):
            AxiRam(AxiBus.from_prefix(dut, f"weight_ddr{port}_"), dut.clk, dut.rst,
                   size=layout.size, mem=ram.mem)
        for addr, data in layout.blocks():
            ram.write(addr, data)
        Clock(dut.clk, 4, unit="ns").start()
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

        async def write(offset, value):
            await ctrl.write(offset, int(value).to_bytes(4, "little"))

        async def read(offset):
            return int.from_bytes((await ctrl.read(offset, 4)).data, "little")

        from ternedge.golden.model import GoldenModel
        embed = GoldenModel(weights).embed_q16

        async def run(ids, position):
            program = layout.program(len(ids), position)
            ram.write(layout.buffers["x"], embed[np.array(ids)].astype("<i4").tobytes())
            ram.write(layout.program_addr, isa.encode(program))
            for reg, value in ((Reg.DDR_BASE, 0), (Reg.DDR_SIZE, layout.size),
                               (Reg.PROGRAM_ADDR, layout.program_addr),
                               (Reg.PROGRAM_LEN, len(program)), (Reg.CTRL, 1)):
                await write(reg, value)
            cycles = 0
            while not await read(Reg.STATUS) & 2:
                await ClockCycles(dut.clk, 256)
                cycles += 256
            return cycles

        await run(list(PROMPT), 0)
        start, cpu = time.perf_counter(), time.process_time()
        cycles = await run([65], len(PROMPT))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        pathlib.Path(os.environ["TERNEDGE_BENCH_RESULT"]).write_text(json.dumps(
            {"cycles": cycles, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
             "cycles_per_s": round(cycles / wall), "cycles_per_cpu_s": round(cycles / cpu)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode-steps", type=int, default=8)
    parser.add_argument("--skip-kv260", action="store_true")
    parser.add_argument("--skip-cocotb", action="store_true")
    parser.add_argument("--work", type=pathlib.Path, default=HERE.parent / "build" / "bench-rtl")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--compare", type=pathlib.Path, nargs="+", metavar="LIBRARY")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.compare:
        missing = [str(lib) for lib in args.compare if not lib.is_file()]
        if missing:
            parser.error(f"no such harness library: {', '.join(missing)} (rtl.harness.build "
                         "writes them as libharness-*.so in its build folder)")
        rates = compare_libraries(args.compare, args.rounds, args.decode_steps)
        print(json.dumps(rates, indent=1))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"harness_tiny": bench_harness_tiny(args.decode_steps)}
    print(f"harness, tiny (3,24,4): {results['harness_tiny']['cycles_per_cpu_s']:,} cycles per "
          "CPU second", flush=True)
    if not args.skip_cocotb:
        results["cocotb_tiny"] = bench_cocotb_tiny(args.work)
        print(f"cocotb,  tiny (3,24,4): {results['cocotb_tiny']['cycles_per_cpu_s']:,} cycles "
              "per CPU second", flush=True)
    if not args.skip_kv260:
        results["harness_kv260"] = bench_harness_kv260()
        print(f"harness, KV260 (3,28,16) lutram: "
              f"{results['harness_kv260']['cycles_per_cpu_s']:,} cycles per CPU second",
              flush=True)
    # CPU-time rates drop 10-20 % when other jobs share the cores (caches, memory bandwidth)
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
