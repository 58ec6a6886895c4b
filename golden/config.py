# SPDX-License-Identifier: BSD-3-Clause
"""Model and accelerator configuration shared by golden/, rtl/, sim/, host/ and boards/.

``ModelConfig`` describes a BitNet b1.58 decoder (either family); ``AcceleratorConfig`` is the
one object that rtl/ elaborates from, sim/ models and boards/ builds, so the three never
disagree about geometry.
"""

from dataclasses import dataclass, field, fields

__all__ = ["ModelConfig", "AcceleratorConfig", "ConfigError", "FAMILIES"]

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
    """

    group_size: int = 3
    tables_per_step: int = 28
    cols_per_cycle: int = 16
    clock_mhz: float = 250.0
    acc_width: int = 24
    max_k: int = 16384
    extra: dict = field(default_factory=dict, compare=False)

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

    @property
    def k_per_step(self) -> int:
        """Activations consumed per K-step: G * T (TeLLMe: 84)."""
        return self.group_size * self.tables_per_step

    @property
    def macs_per_cycle(self) -> int:
        """Ternary multiply-accumulates per cycle: G * T * N (TeLLMe: 1,344)."""
        return self.k_per_step * self.cols_per_cycle
