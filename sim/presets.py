# SPDX-License-Identifier: BSD-3-Clause
"""Named boards, models and accelerator configurations, and loaders for user files.

Configurations:

``tellme-v2``
    TeLLMe v2 (FPGA'26) as its released code builds it: G=3, T=28, N=16 at 250 MHz; weights
    loaded before each linear (one bank, no overlap) in 768-bit beats of 5 entries + FP16
    gamma + pad, through three 256-bit AXI masters (128-bit HP ports); a URAM weight buffer
    partitioned cyclically by 8 (two cycles per 16-column lookup); HLS loop nest reading the
    84 activations of a K-step before its lookups; attention with 8-query tiles, one query's
    P.V at a time, rescale and accumulate as two passes; FP16 LM head on the ARM; one PYNQ
    call per decoder layer.
``default``
    The accelerator RTL as built (``rtl.accelerator``) at the board's default configuration
    (``golden.config.ACCELERATOR_DEFAULTS``; KV260: G=3, T=28, N=16, LUTRAM tables, two weight
    ports, 160-column engine jobs, 128-token passes, a 1024-key int32 KV cache, 4-query
    attention tiles, FP16 LM head on the ARM). ``ternedge simulate --config default`` runs
    its exact cycle model (``sim.rtl_top.RtlSystem``), not the transaction-level ``System``:
    what ``ternedge rtl-bench`` measures on the RTL.
``what-if``
    A design point the RTL does not implement (a what-if), picked by ``sweep.sweep`` (see
    ``sweep.DEFAULT_SPACE``), modeled transaction-level:
    G=3, T=42, N=16 with the TLMM tables in LUTRAM (``table_memory="lutram"``: 17.7 LUT per
    ternary MAC against 38.2 with register tables); double-buffered BRAM weight banks
    streaming ahead across linears and layers; 1.6-bit (base-243) weights in 4 KB bursts over
    six 128-bit HP ports; the RTL's overlapped TLMM schedule; 4-query tiles with parallel
    P.V; 32-lane decode attention sharing the prefill units; INT4 LM head with argmax on the
    fabric; one call per token. Every number it produces is *modeled*, for a design that
    does not exist as RTL.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

from ..golden.config import AcceleratorConfig, ConfigError, ModelConfig
from ..host.errors import ConfigurationError, InputError
from .rtl_top import rtl_config

__all__ = ["Board", "BOARDS", "MODELS", "CONFIGS", "RTL_CONFIGS", "load_board", "load_model",
           "load_config"]


@dataclass(frozen=True)
class Board:
    """An FPGA board: fabric resources, DDR and default clock.

    ``axi_ports`` and ``port_width_bits`` are the PL-to-PS DDR ports (Zynq UltraScale+:
    S_AXI_HP0-3 and S_AXI_HPC0-1, each at most 128 bits).
    """

    name: str
    lut: int
    ff: int
    dsp: int
    bram36: int
    uram: int
    ddr_peak_gbps: float
    ddr_bytes: int
    axi_ports: int
    port_width_bits: int
    clock_mhz: float


#: AMD Kria KV260 (XCK26): AMD DS971 resource counts; DDR4 64-bit at 2400 MT/s, 4 GB.
BOARDS = {
    "kv260": Board(name="kv260", lut=117_120, ff=234_240, dsp=1_248, bram36=144, uram=64,
                   ddr_peak_gbps=19.2, ddr_bytes=4 << 30, axi_ports=6, port_width_bits=128,
                   clock_mhz=250.0),
}

#: model presets; field names are HF ``config.json`` names
MODELS = {
    # 1bitLLM/bitnet_b1_58-large as TeLLMe runs it (config.hpp: 24 layers, 1536, 4096, 16
    # heads MHA of 96, vocab 32002 padded to 32016, SiLU)
    "bitnet-b1.58-large": ModelConfig(
        vocab_size=32002, hidden_size=1536, intermediate_size=4096, num_hidden_layers=24,
        num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
        hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
        family="llama-bitnet", bos_token_id=1, eos_token_id=2),
    # microsoft/bitnet-b1.58-2B-4T (HF BitNetConfig defaults + the checkpoint's config.json)
    "bitnet-b1.58-2B-4T": ModelConfig(
        vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
        num_attention_heads=20, num_key_value_heads=5, max_position_embeddings=4096,
        hidden_act="relu2", rope_theta=500000.0, tie_word_embeddings=True, family="bitnet",
        bos_token_id=128000, eos_token_id=128001),
    # 1bitLLM/bitnet_b1_58-3B
    "bitnet-b1.58-3B": ModelConfig(
        vocab_size=32002, hidden_size=3200, intermediate_size=8640, num_hidden_layers=26,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
        hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
        family="llama-bitnet", bos_token_id=1, eos_token_id=2),
}

CONFIGS = {
    "tellme-v2": AcceleratorConfig(
        group_size=3, tables_per_step=28, cols_per_cycle=16, clock_mhz=250.0, acc_width=24,
        max_k=16384,
        ddr_peak_gbps=19.2, ddr_ports=3, port_width_bits=128,
        burst_bytes=512,                    # HLS m_axi default: 16 beats of 256 bits
        weight_layout="tellme", weight_beat_bits=768, entries_per_beat=5,
        weight_buffer_memory="uram", weight_buffer_partitions=8,
        weight_buffer_depth=3 * 19 * 1536 // 8,   # weights_buffer[3][19][1536], cyclic 8
        double_buffer=False, fill_entries_per_cycle=5, tlmm_schedule="sequential",
        attention_lanes=16, attention_query_tile=8, attention_pv_queries=1,
        attention_fused_rescale=False, decode_attention_lanes=16, elementwise_lanes=16,
        max_context=1024,
        lm_head="host-fp16", host_call_scope="layer", resource_model="published"),
    "default": rtl_config("kv260"),
    "what-if": AcceleratorConfig(
        group_size=3, tables_per_step=42, cols_per_cycle=16, clock_mhz=250.0, acc_width=24,
        max_k=16384, table_memory="lutram",
        ddr_peak_gbps=19.2, ddr_ports=6, port_width_bits=128, burst_bytes=4096,
        weight_layout="base243", weight_beat_bits=512,
        weight_buffer_memory="bram", weight_buffer_partitions=0, weight_buffer_depth=512,
        double_buffer=True, fill_entries_per_cycle=4, tlmm_schedule="overlapped",
        attention_lanes=16, attention_query_tile=4, attention_pv_queries=2,
        attention_fused_rescale=True, decode_attention_lanes=32, elementwise_lanes=16,
        max_context=2048,
        lm_head="fabric-int4", host_call_scope="token"),
}
#: configurations that are the RTL top (``sim.rtl_top.RtlSystem`` models them, not ``System``)
RTL_CONFIGS = ("default",)


def _names(table) -> str:
    return ", ".join(sorted(table))


def load_board(name: str) -> Board:
    """A board preset by name."""
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(f"unknown board {name!r}; choose one of: {_names(BOARDS)}") from None


def _read_json(path: Path, what: str) -> dict:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} {path} is not valid JSON ({exc.msg} at line "
                                 f"{exc.lineno}); fix the file") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{what} {path} must hold one JSON object")
    return raw


def load_model(name_or_path) -> ModelConfig:
    """A model preset by name, or an HF ``config.json`` (or a checkpoint directory holding
    one) parsed into ``ModelConfig``."""
    if isinstance(name_or_path, ModelConfig):
        return name_or_path
    key = str(name_or_path)
    if key in MODELS:
        return MODELS[key]
    path = Path(key)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(f"unknown model {key!r}: not a preset ({_names(MODELS)}) and no "
                         "config.json at that path; pass a preset name or an HF config.json")
    from ..host.checkpoint import config_from_hf

    return config_from_hf(_read_json(path, "model config"))


def load_config(name_or_path="default") -> AcceleratorConfig:
    """An accelerator configuration by name (``default``, ``tellme-v2``, ``what-if``) or a
    JSON file of ``AcceleratorConfig`` fields for the transaction-level model (missing fields
    take the ``what-if`` configuration's values)."""
    if isinstance(name_or_path, AcceleratorConfig):
        return name_or_path
    key = str(name_or_path)
    if key in CONFIGS:
        return CONFIGS[key]
    path = Path(key)
    if not path.is_file():
        raise InputError(f"unknown configuration {key!r}: not a preset ({_names(CONFIGS)}) "
                         "and no such JSON file; pass a preset name or a JSON file of "
                         "AcceleratorConfig fields")
    raw = _read_json(path, "accelerator configuration")
    known = {f.name for f in fields(AcceleratorConfig)} - {"extra"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(f"accelerator configuration {path} has unknown field "
                                 f"{unknown[0]!r}; known fields: {', '.join(sorted(known))}")
    base = {f.name: getattr(CONFIGS["what-if"], f.name) for f in fields(AcceleratorConfig)
            if f.name != "extra"}
    base.update(raw)
    try:
        return AcceleratorConfig(**base)
    except (ConfigError, TypeError) as exc:
        raise ConfigurationError(f"accelerator configuration {path} is invalid: {exc}; "
                                 "fix the value") from None
