# SPDX-License-Identifier: BSD-3-Clause
"""Elementwise operators of the streaming dataflow, in exact Q16 fixed point.

These are the functions the fused elementwise unit implements: RMSNorm, RoPE, ReLU²/SiLU
gating and the residual add. Arithmetic primitives and rounding are those of ``fixed``.
"""

import numpy as np

from . import fixed

__all__ = ["rmsnorm", "eps_q16", "rope_tables", "rope", "relu2_gate", "silu_gate",
           "sigmoid", "residual_add"]


def eps_q16(eps: float) -> int:
    """RMSNorm epsilon in Q16, at least one LSB (1e-5 -> 1)."""
    return max(1, int(np.floor(eps * fixed.ONE + 0.5)))


def rmsnorm(x, gamma_q16, eps: int):
    """RMSNorm (Zhang & Sennrich 2019): ``y = x / sqrt(mean(x^2) + eps) * gamma``.

    Parameters
    ----------
    x : Q16 array (..., H).
    gamma_q16 : Q16 array (H,), the norm weight.
    eps : Q16 epsilon from ``eps_q16``.

    Steps (all integer): ``ms = floor(sum(round(x^2 / 2^16)) / H) + eps`` (Q16 mean square);
    ``rms = isqrt(ms * 2^16)`` (Q16); ``inv = ratio_scale(2^16, rms)`` (Scale of 1/rms, one
    divider per token); ``p = sat32(round(x * gamma / 2^16))``; ``y = sat32(round(p * inv))``.
    """
    x = np.asarray(x, dtype=np.int64)
    squares = fixed.round_shift(x * x, fixed.FRAC)
    mean_square = squares.sum(axis=-1) // x.shape[-1] + eps
    rms = fixed.isqrt(mean_square << fixed.FRAC)
    inv_m, inv_e = fixed.ratio_scale(np.full(rms.shape, fixed.ONE), rms)
    scaled = fixed.sat32(fixed.round_shift(x * np.asarray(gamma_q16, dtype=np.int64), fixed.FRAC))
    return fixed.apply_scale(scaled, inv_m[..., None], inv_e[..., None])


def rope_tables(max_positions: int, head_dim: int, theta: float):
    """RoPE cos/sin tables in Q16, shape (max_positions, head_dim // 2) each.

    ``angle[p, i] = p * theta**(-2i / head_dim)`` (Su et al. 2021), computed in float64 and
    rounded to Q16. The tables themselves are the specification: the host hands the same
    tables to the accelerator (as TeLLMe's host does).
    """
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    return fixed.to_q16(np.cos(angles)), fixed.to_q16(np.sin(angles))


def rope(x, positions, cos_q16, sin_q16):
    """Rotate Q16 vectors ``x`` (..., T, heads, head_dim) at ``positions`` (T,).

    HF ``rotate_half`` pairing: element i pairs with i + head_dim/2.
    ``y1 = round((x1 cos - x2 sin) / 2^16)``, ``y2 = round((x2 cos + x1 sin) / 2^16)``, sat32.
    """
    x = np.asarray(x, dtype=np.int64)
    half = x.shape[-1] // 2
    cos = cos_q16[positions][:, None, :]
    sin = sin_q16[positions][:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    y1 = fixed.sat32(fixed.round_shift(x1 * cos - x2 * sin, fixed.FRAC))
    y2 = fixed.sat32(fixed.round_shift(x2 * cos + x1 * sin, fixed.FRAC))
    return np.concatenate([y1, y2], axis=-1)


def relu2_gate(gate, up):
    """``relu(gate)^2 * up`` (BitNet b1.58 2B4T FFN), each product rounded to Q16, sat32."""
    r = np.maximum(np.asarray(gate, dtype=np.int64), 0)
    r2 = fixed.sat32(fixed.round_shift(r * r, fixed.FRAC))
    return fixed.sat32(fixed.round_shift(r2 * np.asarray(up, dtype=np.int64), fixed.FRAC))


def sigmoid(x):
    """Logistic function in Q16 from ``exp_neg``: ``1/(1+e^-x)`` for x >= 0 and
    ``e^x/(1+e^x)`` for x < 0, each a rounded division."""
    x = np.asarray(x, dtype=np.int64)
    e = fixed.exp_neg(-np.abs(x))
    positive = fixed.div_round(np.int64(1) << (2 * fixed.FRAC), fixed.ONE + e)
    negative = fixed.div_round(e << fixed.FRAC, fixed.ONE + e)
    return np.where(x >= 0, positive, negative)


def silu_gate(gate, up):
    """``silu(gate) * up`` (LLaMA-style FFN) with ``silu(g) = g * sigmoid(g)``, Q16, sat32."""
    g = np.asarray(gate, dtype=np.int64)
    silu = fixed.sat32(fixed.round_shift(g * sigmoid(g), fixed.FRAC))
    return fixed.sat32(fixed.round_shift(silu * np.asarray(up, dtype=np.int64), fixed.FRAC))


def residual_add(x, y):
    """Saturating Q16 residual add."""
    return fixed.sat32(np.asarray(x, dtype=np.int64) + np.asarray(y, dtype=np.int64))
