# SPDX-License-Identifier: BSD-3-Clause
"""Model and accelerator configuration shared by golden/, rtl/, sim/, host/ and boards/.

``ModelConfig`` describes a BitNet b1.58 decoder (either family); ``AcceleratorConfig`` is the
one object that rtl/ elaborates from, sim/ models and boards/ builds, so the three never
disagree about geometry.
"""

from dataclasses import dataclass, field, fields

__all__ = ["ModelConfig", "AcceleratorConfig", "ConfigError", "FAMILIES", "ACCELERATOR_DEFAULTS",
           "BRAM_BANK_WORDS", "bram_max_job_n"]

#: model families: HF ``BitNetForCausalLM`` (GQA, ReLU², ``attn_sub_norm``/``ffn_sub_norm``)
#: and LLaMA-style 1bitLLM ``BitnetForCausalLM`` (MHA, SiLU, ``inner_attn_ln``/``ffn_layernorm``).
FAMILIES = ("bitnet", "llama-bitnet")


class ConfigError(ValueError):
    """A configuration value is missing or out of range."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a BitNet b1.58 decoder.

    Field names follow HF ``BitNetConfig`` so that a ``config.json`` maps onto them directly.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    hidden_act: str = "relu2"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    family: str = "bitnet"
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by "
                              f"num_attention_heads {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads {self.num_attention_heads} is not a multiple "
                              f"of num_key_value_heads {self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.hidden_act not in ("relu2", "silu"):
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; "
                              "use 'relu2' (BitNet) or 'silu' (LLaMA-style BitNet)")
        if self.family not in FAMILIES:
            raise ConfigError(f"family {self.family!r} is not one of {FAMILIES}")
        if not self.rms_norm_eps > 0:
            raise ConfigError(f"rms_norm_eps must be positive, got {self.rms_norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head (1 for MHA)."""
        return self.num_attention_heads // self.num_key_value_heads

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AcceleratorConfig:
    """Geometry and clocking of the TLMM accelerator.

    Parameters
    ----------
    group_size : G, activations per table (TeLLMe: 3).
    tables_per_step : T, tables built per K-step (TeLLMe: 28).
    cols_per_cycle : N, output columns looked up per cycle (TeLLMe: 16).
    clock_mhz : fabric clock.
    acc_width : accumulator width in bits; must hold 127 * K for the longest K supported.
    max_k : longest reduction dimension the accumulators are sized for.

    The fields below drive the system-level models of sim/ (and, where the RTL has the
    feature, rtl/ and boards/); their defaults describe the RTL engine as it is built.

    ddr_peak_gbps : DDR peak bandwidth in GB/s (KV260: 64-bit DDR4-2400 = 19.2).
    ddr_ports : AXI ports from the fabric to the DDR controller used for weights and caches.
    port_width_bits : data width of each port (Zynq UltraScale+ S_AXI_HP: at most 128), clocked
        at ``clock_mhz``.
    burst_bytes : bytes per AXI read burst (AXI4 allows up to 4096 without crossing a 4 KB
        boundary).
    weight_layout : ``"dense"`` (the ternedge weight image: entries packed back to back,
        ``index_bits(G) / G`` bits per weight), ``"tellme"`` (TeLLMe's 768-bit beats of
        ``entries_per_beat`` entries plus an FP16 gamma and padding, in hidden x hidden regions)
        or ``"base243"`` (1.6 bits: five ternary weights per byte in DDR, unpadded along K,
        re-encoded to G-group indices by the DMA on the way into the bank).
    weight_beat_bits : width of one weight DMA beat (TeLLMe: 3 x 256 = 768).
    entries_per_beat : weight entries per beat in the ``"tellme"`` layout (TeLLMe: 5).
    weight_buffer_memory : ``"uram"`` (4096 x 72 bit blocks) or ``"bram"`` (BRAM36 as 512 x 72).
    weight_buffer_depth : words per weight bank (a word is what the engine reads per lookup).
    weight_buffer_partitions : 0: a bank word holds all ``cols_per_cycle`` entries (the RTL);
        P > 0: the bank is partitioned into P single-entry banks, so a lookup of
        ``cols_per_cycle`` columns takes ``ceil(cols_per_cycle / P)`` cycles (TeLLMe: 8).
    double_buffer : two weight banks, the DMA of the next tile overlapping compute (the RTL);
        False: one bank, loaded before each linear (TeLLMe).
    fill_entries_per_cycle : weight entries one bank accepts per cycle. The RTL takes 1, 2 or 4
        (dividing ``cols_per_cycle``): its ``WeightStreamer`` reads the weights over that many
        AXI ports, ``golden.isa``'s weight stream split into as many parts.
    tlmm_schedule : ``"overlapped"`` (the RTL: the next K-step's tables are built during the
        current lookups) or ``"sequential"`` (TeLLMe's HLS: G*T activations are read, one per
        cycle, before each K-step's lookups).
    attention_lanes : FP16 lanes per attention dot product / update pass (a 256-bit beat: 16).
    attention_query_tile : queries per prefill attention tile (TeLLMe: 8).
    attention_pv_queries : queries of a tile whose P.V update runs in parallel (TeLLMe: 1).
    attention_fused_rescale : True: the online-softmax rescale and the P.V accumulate are one
        FMA pass; False: two passes (TeLLMe).
    decode_attention_lanes : FP16 lanes of each decode attention pass (K, then V); up to
        ``attention_query_tile * attention_lanes`` (and ``attention_pv_queries *
        attention_lanes`` for the V pass) reuse the prefill units (TeLLMe: a separate 16-lane
        unit).
    elementwise_lanes : FP16 lanes per cycle of RMSNorm and the fused elementwise stage.
    max_context : KV-cache capacity in tokens (the decode score FIFO depth; TeLLMe: 1024).
    lm_head : ``"host-fp16"`` (ARM NEON, TeLLMe), ``"host-int8"``, ``"fabric-int8"`` or
        ``"fabric-int4"`` (group-quantized weights streamed by the DMA to DSP MACs).
    host_call_scope : ``"layer"`` (one accelerator call per decoder layer, TeLLMe) or
        ``"token"`` (one call per forward pass).
    resource_model : ``"ternedge"`` (LUT/FF/DSP estimated from our RTL's measured costs and
        checked against the board) or ``"published"`` (a published, placed-and-routed design
        such as TeLLMe v2, whose fit is its authors' result: only memories, ports and
        bandwidth are checked, since its logic is not our RTL).
    table_memory : where ``rtl.tlmm`` keeps the TLMM tables: ``"registers"`` (flip-flops, each
        column selecting its entry through a mux; one K-step's tables per cycle) or
        ``"lutram"`` (a double-buffered memory per table with one asynchronous read port per
        column, for LUTRAM; a table is written one entry per cycle, so a K-step takes at least
        ``(3**G - 1) / 2`` cycles: see ``rtl.tlmm``).
    """

    group_size: int = 3
    tables_per_step: int = 28
    cols_per_cycle: int = 16
    clock_mhz: float = 250.0
    acc_width: int = 24
    max_k: int = 16384
    extra: dict = field(default_factory=dict, compare=False)
    ddr_peak_gbps: float = 19.2
    ddr_ports: int = 4
    port_width_bits: int = 128
    burst_bytes: int = 4096
    weight_layout: str = "dense"
    weight_beat_bits: int = 512
    entries_per_beat: int = 5
    weight_buffer_memory: str = "bram"
    weight_buffer_depth: int = 512
    weight_buffer_partitions: int = 0
    double_buffer: bool = True
    fill_entries_per_cycle: int = 1
    tlmm_schedule: str = "overlapped"
    attention_lanes: int = 16
    attention_query_tile: int = 8
    attention_pv_queries: int = 1
    attention_fused_rescale: bool = True
    decode_attention_lanes: int = 16
    elementwise_lanes: int = 16
    max_context: int = 1024
    lm_head: str = "host-fp16"
    host_call_scope: str = "token"
    resource_model: str = "ternedge"
    table_memory: str = "registers"

    def __post_init__(self):
        if self.group_size not in (2, 3, 4):
            raise ConfigError(f"group_size must be 2, 3 or 4, got {self.group_size}")
        for name in ("tables_per_step", "cols_per_cycle", "max_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.clock_mhz > 0:
            raise ConfigError(f"clock_mhz must be positive, got {self.clock_mhz}")
        needed = (127 * self.max_k).bit_length() + 1
        if self.acc_width < needed:
            raise ConfigError(f"acc_width {self.acc_width} cannot hold 127*max_k for "
                              f"max_k={self.max_k}; it needs at least {needed} bits")
        self._check_system_fields()

    _CHOICES = {
        "weight_layout": ("dense", "tellme", "base243"),
        "weight_buffer_memory": ("uram", "bram"),
        "tlmm_schedule": ("overlapped", "sequential"),
        "lm_head": ("host-fp16", "host-int8", "fabric-int8", "fabric-int4"),
        "host_call_scope": ("layer", "token"),
        "resource_model": ("ternedge", "published"),
        "table_memory": ("registers", "lutram"),
    }

    def _check_system_fields(self):
        for name in ("ddr_ports", "port_width_bits", "burst_bytes", "weight_beat_bits",
                     "entries_per_beat", "weight_buffer_depth", "fill_entries_per_cycle",
                     "attention_lanes", "attention_query_tile", "attention_pv_queries",
                     "decode_attention_lanes", "elementwise_lanes", "max_context"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        partitions = self.weight_buffer_partitions
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 0:
            raise ConfigError(f"weight_buffer_partitions must be a non-negative integer, "
                              f"got {partitions!r}")
        if not isinstance(self.ddr_peak_gbps, (int, float)) or not self.ddr_peak_gbps > 0:
            raise ConfigError(f"ddr_peak_gbps must be positive, got {self.ddr_peak_gbps!r}")
        for name in ("double_buffer", "attention_fused_rescale"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, choices in self._CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, "
                                  f"got {getattr(self, name)!r}")
        if self.port_width_bits % 8 or self.weight_beat_bits % 8:
            raise ConfigError("port_width_bits and weight_beat_bits must be whole bytes, got "
                              f"{self.port_width_bits} and {self.weight_beat_bits}")
        if self.burst_bytes > 4096:
            raise ConfigError(f"burst_bytes {self.burst_bytes} exceeds the AXI4 4096-byte "
                              "burst limit; use at most 4096")
        if self.attention_pv_queries > self.attention_query_tile:
            raise ConfigError(f"attention_pv_queries {self.attention_pv_queries} exceeds "
                              f"attention_query_tile {self.attention_query_tile}")
        if self.weight_layout == "tellme":
            payload = self.entries_per_beat * self.tables_per_step * _index_bits(self.group_size)
            if payload > self.weight_beat_bits:
                raise ConfigError(f"entries_per_beat {self.entries_per_beat} x "
                                  f"{self.tables_per_step * _index_bits(self.group_size)}-bit "
                                  f"entries = {payload} bits do not fit a "
                                  f"{self.weight_beat_bits}-bit weight beat")

    @property
    def index_bits(self) -> int:
        """Bits of one weight-group index: ceil(log2(3**G)) (TeLLMe: 5)."""
        return _index_bits(self.group_size)

    @property
    def entry_bits(self) -> int:
        """Bits of one weight entry, the T indices of one column for one K-step (TeLLMe: 140)."""
        return self.tables_per_step * self.index_bits

    @property
    def k_per_step(self) -> int:
        """Activations consumed per K-step: G * T (TeLLMe: 84)."""
        return self.group_size * self.tables_per_step

    @property
    def macs_per_cycle(self) -> int:
        """Ternary multiply-accumulates per cycle: G * T * N (TeLLMe: 1,344)."""
        return self.k_per_step * self.cols_per_cycle


def _index_bits(group_size: int) -> int:
    return (3 ** group_size - 1).bit_length()


#: per board, the default configuration of the accelerator top (``rtl.accelerator``): what
#: ``ternedge build --design accelerator`` builds (``boards.build.build_design`` keyword
#: arguments; ``max_job_n`` None: one engine job holds the model's widest linear), what
#: ``ternedge rtl-bench`` measures and what ``ternedge simulate --config default`` models
#: (``sim.rtl_top``). ``model`` names a ``sim.presets`` model or a ``boards.build.BUILD_MODELS``
#: one.
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
#: whole top 152k, over the XCK26's 117,120). The README's "Fit of the whole accelerator"
#: has its Yosys estimate.
#:
#: The ULX3S build clocks the accelerator at 25/3 MHz from an EHXPLLL (``clock_mhz``;
#: ``ternedge build --clock-mhz`` sets another): the top with unpipelined units closed timing
#: at 10.1 MHz post-route, not at the board's 25 MHz oscillator; the pipelined top places at
#: about 39 MHz but has not routed yet (README, "Fit of the whole accelerator").
#:
#: Both builds keep only the model's own MLP gate (``Accelerator(gates=(hidden_act,))``): the
#: SiLU gate's exponential and divider are most of the Pointwise unit.
#:
#: ``fill_entries_per_cycle``: the weight ports (``AcceleratorConfig``). The KV260 takes two:
#: with the top's read and write channels that is 64 bytes a cycle, inside the ``kv260`` DDR
#: profile's 65.3 sustained at 250 MHz, so the cap never holds a beat back (four would need
#: 96 bytes a cycle).
ACCELERATOR_DEFAULTS = {
    "ulx3s-85f": {"geometry": (3, 4, 4), "model": "mini", "max_tokens": 32,
                  "max_context": 64, "max_job_n": None, "attention_tile": 1,
                  "table_memory": "registers", "fill_entries_per_cycle": 1,
                  "clock_mhz": 25 / 3},
    "kv260": {"geometry": (3, 28, 16), "model": "bitnet-b1.58-large", "max_tokens": 128,
              "max_context": 1024, "max_job_n": "bram", "attention_tile": 4,
              "table_memory": "lutram", "fill_entries_per_cycle": 2},
}

#: words of one RAMB36E2 in its widest (512 x 72) mode: the ``max_job_n="bram"`` bank depth
BRAM_BANK_WORDS = 512


def bram_max_job_n(config: AcceleratorConfig, model: ModelConfig,
                   words: int = BRAM_BANK_WORDS) -> int:
    """``max_job_n="bram"``: the widest job (a multiple of ``cols_per_cycle``) whose weight
    bank, for the model's longest K, is at most ``words`` deep."""
    max_dim = max(model.hidden_size, model.intermediate_size,
                  model.num_attention_heads * model.head_dim,
                  model.num_key_value_heads * model.head_dim)
    k_steps = -(-max_dim // config.k_per_step)
    blocks = words // k_steps
    if blocks == 0:
        raise ValueError(f"one N-block of {k_steps} K-steps does not fit a {words}-word bank")
    return min(blocks * config.cols_per_cycle,
               -(-max_dim // config.cols_per_cycle) * config.cols_per_cycle)
