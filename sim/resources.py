# SPDX-License-Identifier: BSD-3-Clause
"""FPGA resource estimates per block, as documented formulas. *Modeled*.

The per-MAC LUT/FF costs of the TLMM engine (``LUT_PER_TERNARY_MAC``,
``FF_PER_TERNARY_MAC`` in ``sim/constants.py``) are the Yosys ``synth_xilinx`` estimate of
``rtl/tlmm.py`` at TeLLMe's geometry; the other blocks' are estimates; memories follow the
UltraScale+ primitives exactly (URAM288 4096 x 72, BRAM36 512 x 72).

Per block:

* ``tlmm``: LUT = macs * LUT_PER_TERNARY_MAC, FF = macs * FF_PER_TERNARY_MAC for the
  configuration's ``table_memory``, DSP = 0 (the table builder's adders are in LUTs; TeLLMe
  binds them to DSP SIMD adders instead).
* ``weight_buffer``: ``WeightBuffer.memories()``.
* ``attention``: DSP = query_tile * lanes (QK) + pv_queries * lanes * (1 fused FMA or 2)
  + 2 * (decode lanes beyond ``min(query_tile, pv_queries) * lanes``, which the decode passes
  share with the prefill units);
  LUT/FF per FP16 lane; URAM for the decode score FIFO: ``ceil(heads*16/72)`` columns of
  ``ceil(max_context/4096)``; BRAM36 for the Q tile and its accumulators:
  ``2 * ceil(query_tile * q_dim * 16 / 36864)``.
* ``elementwise``: norm + dequantize + fused elementwise, 3 FP16 datapaths of
  ``elementwise_lanes``; 2 DSP per lane.
* ``dma``: LUT_PER_AXI_PORT per port; ``lm_head`` (fabric only): FABRIC_LM_HEAD_MACS / 2 DSP,
  LUT for the unpacking and argmax; ``platform``: control and PS interface.
"""

from math import ceil

from ..golden.config import AcceleratorConfig, ModelConfig
from ..host.errors import ConfigurationError
from . import blocks
from . import constants as c

__all__ = ["estimate", "totals", "check", "RESOURCES"]

RESOURCES = ("lut", "ff", "dsp", "bram36", "uram")


def estimate(config: AcceleratorConfig, model: ModelConfig) -> dict:
    """``{block: {resource: count}}`` for this configuration running this model."""
    macs = config.macs_per_cycle
    lanes = config.attention_lanes
    passes = 1 if config.attention_fused_rescale else 2
    attn_lanes = config.attention_query_tile * lanes + config.attention_pv_queries * lanes * passes
    # decode lanes beyond what the prefill units provide (K pass: QK units, V pass: P.V units)
    shared = min(config.attention_query_tile, config.attention_pv_queries) * lanes
    attn_lanes += 2 * max(0, config.decode_attention_lanes - shared)
    q_dim = model.num_attention_heads * model.head_dim
    mem = blocks.WeightBuffer(config).memories()
    score_fifo = (ceil(model.num_attention_heads * 16 / c.MEMORY_WIDTH)
                  * ceil(config.max_context / c.URAM_DEPTH))
    out = {
        "tlmm": {"lut": ceil(macs * c.LUT_PER_TERNARY_MAC[config.table_memory]),
                 "ff": ceil(macs * c.FF_PER_TERNARY_MAC[config.table_memory]),
                 "dsp": 0, "bram36": 0, "uram": 0},
        "weight_buffer": {"lut": 0, "ff": 0, "dsp": 0, **mem},
        "attention": {"lut": attn_lanes * c.LUT_PER_FP16_LANE,
                      "ff": attn_lanes * c.FF_PER_FP16_LANE, "dsp": attn_lanes,
                      "bram36": 2 * ceil(config.attention_query_tile * q_dim * 16 / 36864),
                      "uram": score_fifo},
        "elementwise": {"lut": 3 * config.elementwise_lanes * c.LUT_PER_FP16_LANE,
                        "ff": 3 * config.elementwise_lanes * c.FF_PER_FP16_LANE,
                        "dsp": 2 * config.elementwise_lanes, "bram36": 4, "uram": 0},
        "dma": {"lut": config.ddr_ports * c.LUT_PER_AXI_PORT,
                "ff": config.ddr_ports * c.LUT_PER_AXI_PORT, "dsp": 0,
                "bram36": 2 * config.ddr_ports, "uram": 0},
        "platform": {"lut": c.LUT_PLATFORM, "ff": c.FF_PLATFORM, "dsp": 0, "bram36": 4,
                     "uram": 0},
    }
    if config.lm_head.startswith("fabric"):
        dsp = c.FABRIC_LM_HEAD_MACS_PER_CYCLE // 2
        out["lm_head"] = {"lut": 4 * dsp, "ff": 8 * dsp, "dsp": dsp, "bram36": 4, "uram": 0}
    return out


def totals(config: AcceleratorConfig, model: ModelConfig) -> dict:
    est = estimate(config, model)
    return {r: sum(block[r] for block in est.values()) for r in RESOURCES}


def check(config: AcceleratorConfig, model: ModelConfig, board) -> dict:
    """Raise ``ConfigurationError`` naming the first resource that does not fit ``board``.

    LUTs may use at most ``LUT_UTILIZATION_CAP`` of the device; memories and DSPs all of it.
    AXI ports and their width must exist on the board. Returns the totals.
    """
    if config.ddr_ports > board.axi_ports:
        raise ConfigurationError(
            f"configuration uses ddr_ports={config.ddr_ports} but {board.name} has "
            f"{board.axi_ports} PL-to-DDR AXI ports; use at most {board.axi_ports}")
    if config.port_width_bits > board.port_width_bits:
        raise ConfigurationError(
            f"configuration uses port_width_bits={config.port_width_bits} but {board.name}'s "
            f"AXI ports are at most {board.port_width_bits} bits; use {board.port_width_bits}")
    if config.ddr_peak_gbps > board.ddr_peak_gbps:
        raise ConfigurationError(
            f"configuration assumes ddr_peak_gbps={config.ddr_peak_gbps} but {board.name} "
            f"peaks at {board.ddr_peak_gbps} GB/s; use at most {board.ddr_peak_gbps}")
    used = totals(config, model)
    limits = {"lut": int(board.lut * c.LUT_UTILIZATION_CAP), "ff": board.ff, "dsp": board.dsp,
              "bram36": board.bram36, "uram": board.uram}
    hints = {"uram": "lower weight_buffer_depth or max_context, or use weight_buffer_memory "
                     "'bram'",
             "bram36": "lower weight_buffer_depth or use weight_buffer_memory 'uram'",
             "lut": "lower tables_per_step * cols_per_cycle or the attention lanes",
             "ff": "lower tables_per_step * cols_per_cycle or the attention lanes",
             "dsp": "lower the attention lanes / query tile or use a host LM head"}
    # a published design's logic is not our RTL: only its memories are checked
    checked = RESOURCES if config.resource_model == "ternedge" else ("bram36", "uram")
    for res in checked:
        if used[res] > limits[res]:
            raise ConfigurationError(
                f"configuration needs {used[res]} {res.upper()} but {board.name} has "
                f"{limits[res]} usable; {hints[res]}")
    return used
