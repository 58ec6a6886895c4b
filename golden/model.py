# SPDX-License-Identifier: BSD-3-Clause
"""The bit-exact golden BitNet b1.58 decoder: what the accelerator computes, token for token.

Dataflow of one layer (both families; names as in HF ``BitNetForCausalLM``, with the
LLaMA-style family's ``inner_attn_ln``/``ffn_layernorm`` mapped onto the sub-norms)::

    h = rmsnorm(x, input_layernorm)            -> quantize -> TLMM q, k, v -> dequantize
    q, k = rope(q), rope(k); k, v -> KV cache
    a = attention(q, K, V)                     (exact two-pass softmax, see ``attention``)
    a = rmsnorm(a, attn_sub_norm)              -> quantize -> TLMM o -> dequantize
    x = x + o
    h = rmsnorm(x, post_attention_layernorm)   -> quantize -> TLMM gate, up -> dequantize
    m = relu2(gate) * up   |   silu(gate) * up
    m = rmsnorm(m, ffn_sub_norm)               -> quantize -> TLMM down -> dequantize
    x = x + down

Every value between the TLMM engines is Q16 (``fixed``); activations into a TLMM are INT8
per-token absmax (``quant``); the TLMM is ``tlmm.tlmm``. The LM head runs on the host in
float64 (as TeLLMe runs it on the ARM), from the final norm's Q16 output.

The model that runs is range-scaled (``scaling``): an exact power-of-two rescaling of the
weights and the RMSNorm epsilon that moves small values up the Q16 range. ``GoldenModel.weights``
and ``GoldenModel.config`` are the rescaled ones, and they are what the accelerator is given
(weight image, epsilon); logits and the final norm's output are in the model's own units.
"""

from dataclasses import dataclass

import numpy as np

from . import attention, fixed, ops, quant, scaling, tlmm
from .config import AcceleratorConfig
from .weights import ModelWeights, TernaryLinear

__all__ = ["GoldenModel", "EngineLinear", "linear", "lm_head"]


@dataclass(frozen=True)
class EngineLinear:
    """A linear layer as the engine sees it: TLMM indices and the dequantization Scale."""

    indices: np.ndarray
    in_features: int
    out_features: int
    scale_m: int
    scale_e: int
    group_size: int

    @classmethod
    def from_ternary(cls, layer: TernaryLinear, group_size: int) -> "EngineLinear":
        m, e = quant.weight_scale(layer.scale)
        return cls(tlmm.encode_weights(layer.ternary, group_size), layer.in_features,
                   layer.out_features, m, e, group_size)


def linear(x_q16, layers):
    """Quantize Q16 activations once and run one or more ternary linears on them (Q16 out)."""
    x = np.asarray(x_q16, dtype=np.int64)
    flat = x.reshape(-1, x.shape[-1])
    q, amax = quant.quantize_activations(flat)
    outs = []
    for layer in layers:
        acc = tlmm.tlmm(q, layer.indices, layer.group_size)
        y = quant.dequantize(acc, amax, (layer.scale_m, layer.scale_e))
        outs.append(y.reshape(x.shape[:-1] + (layer.out_features,)))
    return outs


def lm_head(hidden_q16, weight) -> np.ndarray:
    """Host-side float64 logits from the final norm's Q16 output: ``h @ W.T``."""
    return fixed.from_q16(hidden_q16) @ np.asarray(weight, dtype=np.float64).T


class GoldenModel:
    """Golden BitNet decoder with a KV cache.

    Parameters
    ----------
    weights : ModelWeights from ``ternedge.host.checkpoint.load_checkpoint``.
    accel : AcceleratorConfig; only ``group_size`` changes the TLMM encoding (results do not
        depend on it: TLMM equals the integer matmul for every G).
    range_scale : rescale unit-scale weights with ``scaling.rescale`` (the default; weights
        that are already rescaled are used as they are). False runs them at unit scale.
    """

    def __init__(self, weights: ModelWeights, accel: AcceleratorConfig | None = None, *,
                 range_scale: bool = True):
        if range_scale:
            weights = scaling.rescale(weights)
        self.weights = weights
        self.config = cfg = weights.config
        group = (accel or AcceleratorConfig()).group_size
        self.embed_q16 = fixed.to_q16(weights.embed_tokens)
        self.norm_q16 = fixed.to_q16(weights.norm)
        self.eps = ops.eps_q16(cfg.rms_norm_eps)
        self.cos, self.sin = ops.rope_tables(cfg.max_position_embeddings, cfg.head_dim,
                                             cfg.rope_theta)
        self.layers = []
        for layer in weights.layers:
            packed = {name: EngineLinear.from_ternary(getattr(layer, name), group)
                      for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                   "up_proj", "down_proj")}
            norms = {name: fixed.to_q16(getattr(layer, name))
                     for name in ("input_layernorm", "post_attention_layernorm",
                                  "attn_sub_norm", "ffn_sub_norm")}
            self.layers.append((packed, norms))
        shape = (cfg.num_hidden_layers, cfg.max_position_embeddings, cfg.num_key_value_heads,
                 cfg.head_dim)
        self.k_cache = np.zeros(shape, dtype=np.int64)
        self.v_cache = np.zeros(shape, dtype=np.int64)
        self.position = 0

    def reset(self) -> None:
        """Forget the KV cache (start a new sequence)."""
        self.position = 0

    def truncate(self, length: int) -> None:
        """Keep the KV cache of the first ``length`` tokens only; the next ``forward`` runs at
        position ``length``.

        Rows past ``length`` are left in place but never read again: attention only sees keys
        ``0 .. position``, and the next ``forward`` overwrites them. This is how speculative
        decoding rolls back drafted tokens the target rejected.
        """
        if (not isinstance(length, (int, np.integer)) or isinstance(length, bool)
                or not 0 <= length <= self.position):
            raise ValueError(f"truncate length must be an integer in [0, {self.position}] "
                             f"(the tokens in the KV cache), got {length!r}")
        self.position = int(length)

    def forward(self, token_ids) -> np.ndarray:
        """Run tokens at the next positions (a prefill block, one decode token, or a
        speculative verification block at any position).

        Each token sees the KV cache up to and including its own position (the causal mask
        over cache and block, ``attention.attention``), so a block of T tokens gives exactly
        the outputs of T one-token passes.

        Returns the final norm's Q16 output for each token, shape (T, hidden).
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        cfg = self.config
        if ids.size == 0:
            raise ValueError("forward needs at least one token")
        end = self.position + ids.size
        if end > cfg.max_position_embeddings:
            raise ValueError(f"sequence of {end} tokens exceeds the context of "
                             f"{cfg.max_position_embeddings}")
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        positions = np.arange(self.position, end)
        x = self.embed_q16[ids]
        for index, (packed, norms) in enumerate(self.layers):
            x = self._layer(index, x, positions, packed, norms)
        self.position = end
        return ops.rmsnorm(x, self.norm_q16, self.eps)

    def _layer(self, index, x, positions, packed, norms):
        cfg = self.config
        tokens = x.shape[0]
        h = ops.rmsnorm(x, norms["input_layernorm"], self.eps)
        q, k, v = linear(h, [packed["q_proj"], packed["k_proj"], packed["v_proj"]])
        q = ops.rope(q.reshape(tokens, cfg.num_attention_heads, cfg.head_dim), positions,
                     self.cos, self.sin)
        k = ops.rope(k.reshape(tokens, cfg.num_key_value_heads, cfg.head_dim), positions,
                     self.cos, self.sin)
        self.k_cache[index, positions] = k
        self.v_cache[index, positions] = v.reshape(tokens, cfg.num_key_value_heads, cfg.head_dim)
        seen = positions[-1] + 1
        a = attention.attention(q, self.k_cache[index, :seen], self.v_cache[index, :seen],
                                positions)
        a = ops.rmsnorm(a.reshape(tokens, cfg.hidden_size), norms["attn_sub_norm"], self.eps)
        (o,) = linear(a, [packed["o_proj"]])
        x = ops.residual_add(x, o)
        h = ops.rmsnorm(x, norms["post_attention_layernorm"], self.eps)
        gate, up = linear(h, [packed["gate_proj"], packed["up_proj"]])
        gated = ops.relu2_gate(gate, up) if cfg.hidden_act == "relu2" else ops.silu_gate(gate, up)
        m = ops.rmsnorm(gated, norms["ffn_sub_norm"], self.eps)
        (down,) = linear(m, [packed["down_proj"]])
        return ops.residual_add(x, down)

    def logits(self, hidden_q16) -> np.ndarray:
        """Float64 logits from ``forward``'s output (host LM head)."""
        return lm_head(hidden_q16, self.weights.lm_head)
