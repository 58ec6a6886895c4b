# SPDX-License-Identifier: BSD-3-Clause
"""Every calibration constant of the simulator, with where it comes from.

The same constants apply to every accelerator configuration (``tellme-v2``, ``default`` or a
user's JSON file): a configuration changes the *architecture* (AcceleratorConfig fields), never
these numbers. Labels: [P] paper, [C] TeLLMe's released code, [3P] third-party note quoting
the paper, [D] derived here, [E] engineering estimate (no measurement behind it yet),
[F] fitted to a published TeLLMe v2 number (named in the comment).
"""

from ..golden import ddr as _ddr

__all__ = [
    "DDR_STREAM_EFFICIENCY", "DDR_BURST_OVERHEAD_BYTES", "DDR_READ_LATENCY_S",
    "TLMM_JOB_OVERHEAD_CYCLES", "NORM_LATENCY_CYCLES", "ELEMENTWISE_LATENCY_CYCLES",
    "ATTENTION_LATENCY_CYCLES", "HOST_CALL_OVERHEAD_S", "HOST_TOKEN_OVERHEAD_S",
    "HOST_SAMPLING_S",
    "ARM_LM_HEAD_BYTES_PER_S", "FABRIC_LM_HEAD_MACS_PER_CYCLE", "VOCAB_PAD",
    "URAM_BITS", "URAM_DEPTH", "BRAM36_DEPTH", "MEMORY_WIDTH",
    "LUT_PER_TERNARY_MAC", "FF_PER_TERNARY_MAC", "LUT_PER_FP16_LANE", "FF_PER_FP16_LANE",
    "LUT_PER_AXI_PORT", "LUT_PLATFORM", "FF_PLATFORM", "LUT_UTILIZATION_CAP",
    "P_STATIC_W", "E_DDR_J_PER_BYTE", "E_TERNARY_MAC_J", "E_FP16_OP_J", "P_ARM_ACTIVE_W",
]

# -- DDR -----------------------------------------------------------------------------------
#: [3P] fraction of peak DDR bandwidth a long sequential read stream reaches on the KV260
#: (Li et al., arXiv 2502.10659: LLaMA2-7B on a bare-metal KV260 at 85 % of the bandwidth
#: bound); [E] first-beat read latency through the Zynq UltraScale+ PS DDR controller (order of
#: 100-250 ns), paid once per DMA request that starts a stream. Both live in ``golden.ddr``,
#: whose ``kv260`` profile the RTL harness and the top's cycle model use too. The stream
#: efficiency is applied to every stream, then derated per burst (below).
DDR_STREAM_EFFICIENCY = _ddr.DDR_STREAM_EFFICIENCY
DDR_READ_LATENCY_S = _ddr.DDR_READ_LATENCY_S
#: [E] dead time per AXI read burst on the DDR side (command, address, bank/turnaround), as
#: bytes of lost transfer: one 64-byte DDR4 BL8 access. Burst efficiency is
#: ``burst / (burst + DDR_BURST_OVERHEAD_BYTES)``: 89 % for HLS's default 512-byte bursts,
#: 98 % for 4 KB bursts.
DDR_BURST_OVERHEAD_BYTES = 64

# -- fabric blocks -------------------------------------------------------------------------
#: [measured, rtl/tlmm.py] cycles of one TLMM job beyond fill + lookups, less the adder tree's
#: stages (``blocks.TlmmEngine.job_overhead_cycles`` adds ceil(log2(T + 1))): the registered
#: bank write, the cycle handing the filled bank to the issue stage, the bank read and its
#: register, the lookup register, the accumulate stage and two through the result FIFO
#: (tests/test_sim_vs_rtl.py measures it on the Amaranth simulator).
TLMM_JOB_OVERHEAD_CYCLES = 7
#: [E] RMSNorm pipeline latency (FP32 sum of squares, rsqrt, FP16 scale) per norm call.
NORM_LATENCY_CYCLES = 60
#: [E] depth of the read -> quantize -> TLMM -> dequantize -> elementwise -> write FIFO
#: pipeline, paid once per linear call (the streaming hides the rest behind the TLMM).
ELEMENTWISE_LATENCY_CYCLES = 40
#: [E] attention pipeline latency per call (FP16 exp/reciprocal, reduction tree).
ATTENTION_LATENCY_CYCLES = 80

# -- host ----------------------------------------------------------------------------------
#: [E] one accelerator call from PYNQ (Python on the Cortex-A53): ~20 AXI-Lite MMIO writes of
#: buffer addresses and lengths (0x10-0x9c in TeLLMe's chatbot.py) at ~10 us each from Python,
#: start, poll for done, cache maintenance on the activation buffers.
HOST_CALL_OVERHEAD_S = 300e-6
#: [E] host work per forward pass outside the calls and the LM head: embedding row lookup,
#: RoPE table, tokenizer, NumPy glue.
HOST_TOKEN_OVERHEAD_S = 0.5e-3
#: [E] sampling on the host (FP16 logits to FP32, argmax / top-k over the vocabulary in
#: NumPy); paid when the LM head runs on the host. A fabric LM head ends in an argmax unit
#: and returns one token id (greedy decoding only).
HOST_SAMPLING_S = 1.0e-3
#: [3P]+[D] the ARM NEON FP16 LM head takes ~9 ms for 32016 x 1536 FP16 weights
#: (98.4 MB): 98.4 MB / 9 ms = 10.9 GB/s of effective weight streaming. An INT8 head is
#: assumed to stream at the same rate (memory-bound GEMV), i.e. half the time.
ARM_LM_HEAD_BYTES_PER_S = 32016 * 1536 * 2 / 9e-3
#: [E] INT8 MACs per cycle of an LM head on the fabric: 256 DSP48E2 with two INT8 MACs each.
FABRIC_LM_HEAD_MACS_PER_CYCLE = 512
#: [C] LM_HEAD_LENGTH 32016 for vocab 32002: the vocabulary is padded to a multiple of 16.
VOCAB_PAD = 16

# -- on-chip memory (UltraScale+ primitives) -----------------------------------------------
URAM_BITS = 288 * 1024          #: URAM288: 4096 x 72 bits
URAM_DEPTH = 4096
BRAM36_DEPTH = 512              #: BRAM36 in 512 x 72 simple-dual-port mode
MEMORY_WIDTH = 72               #: data width of one URAM288 / BRAM36 (512 x 72) column

# -- resources -----------------------------------------------------------------------------
#: [M] LUTs per ternary MAC of the TLMM engine, per ``AcceleratorConfig.table_memory``: Yosys
#: ``synth_xilinx -family xcup -flatten`` of ``rtl.tlmm.Engine`` at TeLLMe's geometry
#: (3, 28, 16), 1,344 MACs, LUTRAM counted as the LUTs it occupies (RAM32M16 = 8):
#: ``registers`` 51,272 LUTs (``ternedge build --design tlmm --board kv260 --geometry
#: 3,28,16``), ``lutram`` 23,738 LUTs (``python benchmarks/tlmm_resources.py``).
LUT_PER_TERNARY_MAC = {"registers": 51_272 / 1344, "lutram": 23_738 / 1344}
#: [M] flip-flops per ternary MAC, same estimates: 8,819 and 6,098 FFs for 1,344 MACs.
FF_PER_TERNARY_MAC = {"registers": 8_819 / 1344, "lutram": 6_098 / 1344}
#: [E] LUTs / FFs per FP16 lane of the attention and elementwise datapaths (adder, exp/recip
#: LUT pieces, muxing; multipliers go to DSPs).
LUT_PER_FP16_LANE = 150
FF_PER_FP16_LANE = 250
#: [E] AXI DMA master, width converter and interconnect slice per DDR port.
LUT_PER_AXI_PORT = 2500
#: [E] control, AXI-Lite registers, FIFOs, PS interface.
LUT_PLATFORM = 8000
FF_PLATFORM = 12000
#: [E] highest LUT utilization that still places and routes at 250 MHz on an UltraScale+.
LUT_UTILIZATION_CAP = 0.80

# -- power ---------------------------------------------------------------------------------
#: [F] board static power (PS idle, PL static, DDR background, regulators). Chosen so that the
#: tellme-v2 configuration averages ~4.8 W in decode ("under 5 W" [P]; 4.8 W [3P]) together
#: with the dynamic terms below; the same for every configuration.
P_STATIC_W = 3.6
#: [E] DDR4 energy per byte read or written, device + PHY + controller (~20 pJ/bit).
E_DDR_J_PER_BYTE = 160e-12
#: [E] energy of one ternary table-lookup MAC on 16 nm FPGA fabric (table build amortised).
E_TERNARY_MAC_J = 0.4e-12
#: [E] energy of one FP16 operation on DSP/LUT fabric (attention, norm, elementwise).
E_FP16_OP_J = 3e-12
#: [E] extra power of the Cortex-A53 cluster while it runs the LM head or host code.
P_ARM_ACTIVE_W = 1.5
