# SPDX-License-Identifier: BSD-3-Clause
"""Range scaling: an exact power-of-two rescaling of a model so that its values use Q16.

Q16 has a fixed absolute resolution (2**-17 after rounding), so a tensor of small values is
held with a large relative error: a random-init model's embeddings (RMS 0.02) enter the
residual stream 4e-4 off, and every INT8 activation quantizer downstream turns such errors into
code flips that grow layer by layer. The datapath's arithmetic cannot see where a model's
values lie, but the weights can move them: the model below computes the same function in real
arithmetic (exactly, in float32 too, because every factor is a power of two) while its
fixed-point values are larger. Only the fixed-point datapath runs it: the torch reference
and checkpoints take the unit-scale weights (``undo``; ``save_checkpoint`` calls it).

* ``residual`` (c): the residual stream (embeddings, o_proj and down_proj outputs), v and the
  attention output (v_proj), and the gated product (up_proj) are multiplied by c. Every RMSNorm
  then sees an input c times larger, so the epsilon becomes ``eps * c**2`` and the norm's
  output is unchanged: ``(c x) / sqrt(mean((c x)^2) + c^2 eps) = x / sqrt(mean(x^2) + eps)``.
* ``norm`` (d): the four RMSNorm weights of every layer are multiplied by d, so the norm
  outputs (the INT8 quantizers' inputs) are d times larger. The per-token absmax quantizer is
  scale-invariant, so the INT8 codes do not change; the next linear's weight scale is divided by
  d. The final norm is left alone, so ``GoldenModel.forward`` returns the same hidden state.
* ``gate`` (g, ReLU² models only): gate_proj's output is multiplied by g and up_proj's divided
  by g**2 (``relu(g a)^2 (b / g^2) = relu(a)^2 b``), so ``relu(gate)^2`` keeps more bits.

The accelerator runs the rescaled model: its weight image holds the rescaled scales, norms and
embeddings, and its RMSNorm epsilon is the rescaled config's (``ops.rms_eps(config.rms_norm_eps)``
of ``GoldenModel.config``). Logits and the final norm's output are unchanged in real units.

How the factors are chosen (``choose``): a float64 forward of the unscaled model over a fixed
calibration sequence (``CALIBRATION_TOKENS`` seeded random tokens) gives the peak magnitude of
every tensor a factor multiplies; each factor is the largest power of two (at most
``MAX_FACTOR``) that keeps those peaks ``HEADROOM`` times (``V_HEADROOM`` for v, which the
attention unit saturates to +-128.0, ``attention.OPERAND_LIMIT``) inside the ranges that
saturate: int32 Q16 (+-32768.0) for every Q16 value and for RMSNorm's ``x * gamma`` product,
+-128.0 for v; and ``eps * c**2`` at most 1/4 (``ops.rms_eps`` takes epsilons below one). A
model whose values are already large (the shipped model) gets small factors; a random-init
model gets c = 32-64.

Measured effect (README, "Golden numerics"): on six random-init transformers models
(``benchmarks/eval_numerics_random.py``, 256 positions each) top-1 agreement with transformers
rises from 96.2 % pooled (92.6-98.8 %) to 98.4 % (96.9-99.2 %), KL from <= 2.4e-5 to <= 1.1e-5,
max logit error from <= 2.6 % to <= 1.6 % of the range. On the shipped model
(``benchmarks/eval_tiny.py``, c = 8, d = 4, g = 2) top-1 against the float32 torch reference
rises from 99.35 % to 99.46 %, where float64 math itself agrees on 99.47 %.

Why not larger factors: v is the tightest range (the attention unit saturates q, k, v to
+-128.0), and v must carry c with the residual stream, because a single epsilon serves all
four norms. In a float64 forward that rounds every tensor to golden's Q16 grid, the residual
stream's rounding still dominates at c = 64 and vanishes near c = 1024.
"""

from dataclasses import replace

import numpy as np

from . import attention, fixed
from .weights import LINEAR_NAMES, MAX_RANGE_FACTOR, ModelWeights, RangeScales, TernaryLinear

__all__ = ["RangeScales", "UNIT", "choose", "apply", "undo", "rescale", "tap_factor",
           "HEADROOM", "V_HEADROOM", "MAX_FACTOR", "CALIBRATION_TOKENS"]

#: peaks seen on the calibration sequence are kept this many times inside the Q16 range
HEADROOM = 16
#: ... and this many times inside the attention operand limit (v, the tightest range)
V_HEADROOM = 4
#: no factor exceeds this
MAX_FACTOR = MAX_RANGE_FACTOR
#: length of the calibration sequence (seeded random token ids)
CALIBRATION_TOKENS = 64

_Q16_LIMIT = float(fixed.INT32_MAX) / fixed.ONE
_OPERAND_LIMIT = attention.OPERAND_LIMIT / fixed.ONE
_NORMS = ("input_layernorm", "post_attention_layernorm", "attn_sub_norm", "ffn_sub_norm")


UNIT = RangeScales()


def _linear_factors(scales: RangeScales) -> dict:
    """Real-unit factor of each linear's output (and so of its weight scale)."""
    c, g = scales.residual, scales.gate
    return {"q_proj": 1, "k_proj": 1, "v_proj": c, "o_proj": c, "gate_proj": g,
            "up_proj": c / g ** 2, "down_proj": c}


def apply(weights: ModelWeights, scales: RangeScales) -> ModelWeights:
    """The model rescaled by ``scales`` (from unit scale); ``weights.range_scales`` records it."""
    if weights.range_scales != UNIT:
        raise ValueError(f"weights are already rescaled ({weights.range_scales}); undo first")
    if scales.gate != 1 and weights.config.hidden_act != "relu2":
        raise ValueError("the gate factor applies to ReLU² models only (silu(g a) != g silu(a))")
    if not weights.config.rms_norm_eps * scales.residual ** 2 < 1:
        raise ValueError(f"residual factor {scales.residual} makes the RMSNorm epsilon "
                         f"{weights.config.rms_norm_eps} * c^2 reach 1")
    return _scaled(weights, scales, inverse=False)


def undo(weights: ModelWeights) -> ModelWeights:
    """The unit-scale model ``weights`` was rescaled from (exact: powers of two)."""
    if weights.range_scales == UNIT:
        return weights
    return _scaled(weights, weights.range_scales, inverse=True)


def _scaled(weights, scales, *, inverse):
    def f(x):
        return np.float32(1 / x if inverse else x)

    c, d = scales.residual, scales.norm
    out_factor = _linear_factors(scales)
    layers = []
    for layer in weights.layers:
        fields = {name: TernaryLinear(getattr(layer, name).ternary,
                                      getattr(layer, name).scale * float(f(out_factor[name] / d)))
                  for name in LINEAR_NAMES}
        fields.update({name: getattr(layer, name) * f(d) for name in _NORMS})
        layers.append(replace(layer, **fields))
    eps = weights.config.rms_norm_eps * (c ** -2 if inverse else c ** 2)
    return replace(weights, config=replace(weights.config, rms_norm_eps=eps),
                   embed_tokens=weights.embed_tokens * f(c), layers=tuple(layers),
                   range_scales=UNIT if inverse else scales)


def tap_factor(op: str, scales: RangeScales) -> float:
    """Real-unit factor of an intermediate tensor of the rescaled model (``host.numerics``
    op names), so that ``value / tap_factor`` is the unit-scale model's value."""
    c, d = scales.residual, scales.norm
    lin = _linear_factors(scales)
    if op in lin:
        return float(lin[op])
    if op in ("input_norm", "attn_sub_norm", "post_norm", "ffn_sub_norm",
              "attn_act", "o_act", "mlp_act", "down_act"):
        return float(d)
    if op in ("attn_out", "attn_residual", "residual", "gate"):
        return float(c)
    return 1.0


def _peaks(weights: ModelWeights, ids) -> dict:
    """Peak |value| of each tensor class over a float64 forward (HF BitNet math)."""
    cfg = weights.config
    tokens, head_dim = len(ids), cfg.head_dim
    peaks = {}

    def peak(name, x):
        peaks[name] = max(peaks.get(name, 0.0), float(np.abs(x).max()))
        return x

    def rms(x, gamma, source):
        peak(source + "_gamma", np.abs(x) * np.abs(gamma).max())
        return peak("norm_out", x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps)
                    * gamma)

    def linear(x, layer, name):
        scale = 127 / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
        q = np.clip(np.round(x * scale), -128, 127) / scale
        return peak(name, (q @ layer.ternary.T.astype(np.float64)) * layer.scale)

    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, head_dim, 2) / head_dim)
    angles = np.arange(tokens)[:, None] * inv_freq[None]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]

    def rope(x):
        x1, x2 = x[..., :head_dim // 2], x[..., head_dim // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    causal = np.tril(np.ones((tokens, tokens), bool))[None]
    x = peak("residual", weights.embed_tokens[ids].astype(np.float64))
    for layer in weights.layers:
        h = rms(x, layer.input_layernorm, "residual")
        q = rope(linear(h, layer.q_proj, "q").reshape(tokens, cfg.num_attention_heads, head_dim))
        k = rope(linear(h, layer.k_proj, "k").reshape(tokens, cfg.num_key_value_heads, head_dim))
        v = linear(h, layer.v_proj, "v").reshape(tokens, cfg.num_key_value_heads, head_dim)
        k, v = np.repeat(k, cfg.kv_groups, 1), np.repeat(v, cfg.kv_groups, 1)
        scores = np.where(causal, np.einsum("thd,shd->hts", q, k) / np.sqrt(head_dim), -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        a = np.einsum("hts,shd->thd", p / p.sum(-1, keepdims=True), v).reshape(tokens, -1)
        x = peak("residual", x + linear(rms(a, layer.attn_sub_norm, "v"), layer.o_proj,
                                        "residual"))
        h = rms(x, layer.post_attention_layernorm, "residual")
        gate, up = linear(h, layer.gate_proj, "gate"), linear(h, layer.up_proj, "up")
        if cfg.hidden_act == "relu2":
            peak("relu2", np.maximum(gate, 0) ** 2)
            gated = np.maximum(gate, 0) ** 2 * up
        else:
            gated = gate / (1 + np.exp(-gate)) * up
        peak("gated", gated)
        x = peak("residual", x + linear(rms(gated, layer.ffn_sub_norm, "gated"),
                                        layer.down_proj, "residual"))
    return peaks


def _power_of_two_below(limit: float) -> int:
    """The largest power of two <= ``limit``, clamped to [1, MAX_FACTOR]."""
    if not limit >= 2:
        return 1
    return int(min(MAX_FACTOR, 2 ** int(np.floor(np.log2(limit)))))


def choose(weights: ModelWeights) -> RangeScales:
    """The factors for ``weights`` (unit scale), from a calibration forward (module doc)."""
    if weights.range_scales != UNIT:
        raise ValueError("choose takes unit-scale weights")
    cfg = weights.config
    ids = np.random.default_rng(0).integers(
        0, cfg.vocab_size, min(CALIBRATION_TOKENS, cfg.max_position_embeddings))
    p = _peaks(weights, ids)
    tiny = 1e-30
    room = _Q16_LIMIT / HEADROOM
    # c: every tensor it multiplies, the norm products it enters, and epsilon * c^2 < 1/4
    c = _power_of_two_below(min(
        room / max(p["residual"], p["gated"], p["up"], tiny),
        _OPERAND_LIMIT / V_HEADROOM / max(p["v"], tiny),
        (0.25 / cfg.rms_norm_eps) ** 0.5))
    # d: the norm outputs and the products x * gamma * d (with x already scaled by c)
    products = max(p["residual_gamma"], p["v_gamma"], p["gated_gamma"])
    d = _power_of_two_below(min(room / max(p["norm_out"], tiny),
                                room / max(products * c, tiny)))
    g = 1
    if cfg.hidden_act == "relu2":
        # g shares c with up_proj (c / g^2): a third of c's bits each way, within the gate's range
        g = _power_of_two_below(min(2 ** round(np.log2(c) / 3),
                                    room / max(p["gate"], tiny),
                                    (room / max(p["relu2"], tiny)) ** 0.5))
    return RangeScales(residual=c, norm=d, gate=g)


def rescale(weights: ModelWeights) -> ModelWeights:
    """``apply(weights, choose(weights))`` for unit-scale weights; rescaled weights unchanged."""
    if weights.range_scales != UNIT:
        return weights
    return apply(weights, choose(weights))
