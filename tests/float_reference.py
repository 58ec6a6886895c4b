# SPDX-License-Identifier: BSD-3-Clause
"""A float64 NumPy BitNet b1.58 forward (HF math with fake quantization) and random weights,
used by the golden tests as the outside reference for the fixed-point approximations."""

import numpy as np

from ternedge.golden import quant
from ternedge.golden.weights import LayerWeights, ModelWeights, TernaryLinear


def rand_weights(cfg, seed=0) -> ModelWeights:
    """Random ternary weights (quantized from N(0, 0.05)), norms near 1, N(0, 1) embeddings."""
    rng = np.random.default_rng(seed)
    hidden, inner = cfg.hidden_size, cfg.intermediate_size
    kv_dim = cfg.num_key_value_heads * cfg.head_dim

    def linear(n, k):
        return TernaryLinear(*quant.quantize_weights(rng.normal(0, 0.05, (n, k))))

    def norm(n):
        return (1 + 0.1 * rng.normal(size=n)).astype(np.float32)

    layers = tuple(
        LayerWeights(norm(hidden), norm(hidden), norm(hidden), norm(inner),
                     linear(hidden, hidden), linear(kv_dim, hidden), linear(kv_dim, hidden),
                     linear(hidden, hidden), linear(inner, hidden), linear(inner, hidden),
                     linear(hidden, inner))
        for _ in range(cfg.num_hidden_layers))
    embed = rng.normal(0, 1, (cfg.vocab_size, hidden)).astype(np.float32)
    return ModelWeights(cfg, embed, embed, norm(hidden), layers)


def float_forward(weights: ModelWeights, ids) -> np.ndarray:
    """Float64 logits (T, V) of a causal forward over ``ids``."""
    cfg = weights.config
    tokens, head_dim = len(ids), cfg.head_dim

    def rms(x, gamma):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps) * gamma

    def act_quant(x):
        scale = 127 / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
        return np.clip(np.round(x * scale), -128, 127) / scale

    def linear(x, layer):
        return act_quant(x) @ (layer.ternary.astype(np.float64) * layer.scale).T

    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, head_dim, 2) / head_dim)
    angles = np.arange(tokens)[:, None] * inv_freq[None]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]

    def rope(x):
        x1, x2 = x[..., :head_dim // 2], x[..., head_dim // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    causal = np.tril(np.ones((tokens, tokens), bool))[None]
    x = weights.embed_tokens[ids].astype(np.float64)
    for layer in weights.layers:
        h = rms(x, layer.input_layernorm)
        q = rope(linear(h, layer.q_proj).reshape(tokens, cfg.num_attention_heads, head_dim))
        k = rope(linear(h, layer.k_proj).reshape(tokens, cfg.num_key_value_heads, head_dim))
        v = linear(h, layer.v_proj).reshape(tokens, cfg.num_key_value_heads, head_dim)
        k, v = np.repeat(k, cfg.kv_groups, 1), np.repeat(v, cfg.kv_groups, 1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(head_dim)
        scores = np.where(causal, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", p, v).reshape(tokens, -1)
        x = x + linear(rms(a, layer.attn_sub_norm), layer.o_proj)
        h = rms(x, layer.post_attention_layernorm)
        gate, up = linear(h, layer.gate_proj), linear(h, layer.up_proj)
        if cfg.hidden_act == "relu2":
            gated = np.maximum(gate, 0) ** 2 * up
        else:
            gated = gate / (1 + np.exp(-gate)) * up
        x = x + linear(rms(gated, layer.ffn_sub_norm), layer.down_proj)
    return rms(x, weights.norm) @ weights.lm_head.T.astype(np.float64)
