# SPDX-License-Identifier: BSD-3-Clause
"""A float64 NumPy BitNet b1.58 forward (HF math with fake quantization) and random weights,
used by the golden tests as the outside reference for the fixed-point approximations."""
import numpy as np

from ternedge.golden.config import ModelConfig
from ternedge.golden.weights import ModelWeights, LayerWeights, TernaryLinear
from ternedge.golden import quant
from ternedge.golden.model import GoldenModel

def rand_weights(cfg, seed=0):
    rng = np.random.default_rng(seed)
    H, I = cfg.hidden_size, cfg.intermediate_size
    kvd = cfg.num_key_value_heads * cfg.head_dim
    def lin(n, k):
        t, s = quant.quantize_weights(rng.normal(0, 0.05, (n, k)))
        return TernaryLinear(t, s)
    def norm(n): return (1 + 0.1 * rng.normal(size=n)).astype(np.float32)
    layers = tuple(LayerWeights(norm(H), norm(H), norm(H), norm(I), lin(H, H), lin(kvd, H), lin(kvd, H), lin(H, H), lin(I, H), lin(I, H), lin(H, I)) for _ in range(cfg.num_hidden_layers))
    emb = rng.normal(0, 1, (cfg.vocab_size, H)).astype(np.float32)
    return ModelWeights(cfg, emb, emb, norm(H), layers)

def float_forward(w, ids):
    cfg = w.config
    def rms(x, g): return x / np.sqrt((x*x).mean(-1, keepdims=True) + cfg.rms_norm_eps) * g
    def aq(x):
        s = 127 / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
        return np.clip(np.round(x*s), -128, 127) / s
    def lin(x, l): return aq(x) @ (l.ternary.astype(np.float64) * l.scale).T
    T = len(ids); D = cfg.head_dim
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(T)[:, None] * inv[None]
    cos, sin = np.cos(ang), np.sin(ang)
    def rope(x):
        x1, x2 = x[..., :D//2], x[..., D//2:]
        c, s = cos[:, None], sin[:, None]
        return np.concatenate([x1*c - x2*s, x2*c + x1*s], -1)
    x = w.embed_tokens[ids].astype(np.float64)
    for L in w.layers:
        h = rms(x, L.input_layernorm)
        q = rope(lin(h, L.q_proj).reshape(T, cfg.num_attention_heads, D))
        k = rope(lin(h, L.k_proj).reshape(T, cfg.num_key_value_heads, D))
        v = lin(h, L.v_proj).reshape(T, cfg.num_key_value_heads, D)
        k = np.repeat(k, cfg.kv_groups, 1); v = np.repeat(v, cfg.kv_groups, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(D)
        s = np.where(np.tril(np.ones((T, T), bool))[None], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", p, v).reshape(T, -1)
        x = x + lin(rms(a, L.attn_sub_norm), L.o_proj)
        h = rms(x, L.post_attention_layernorm)
        g, u = lin(h, L.gate_proj), lin(h, L.up_proj)
        act = np.maximum(g, 0)**2 if cfg.hidden_act == "relu2" else g / (1 + np.exp(-g))
        x = x + lin(rms(act * u, L.ffn_sub_norm), L.down_proj)
    return rms(x, w.norm) @ w.lm_head.T.astype(np.float64)

