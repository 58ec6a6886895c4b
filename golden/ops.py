# SPDX-License-Identifier: BSD-3-Clause
"""Elementwise operators of the streaming dataflow, in exact Q16 fixed point.

These are the functions the fused elementwise unit implements: RMSNorm, RoPE, ReLU²/SiLU
gating and the residual add. Arithmetic primitives and rounding are those of ``fixed``.
"""

import numpy as np

from . import fixed

__all__ = ["rmsnorm", "rms_eps", "eps_q16", "MEAN_SQUARE_BITS", "NORM_PRODUCT_FRAC",
           "rope_tables", "rope",
           "relu2_gate", "silu_gate", "sigmoid", "residual_add"]


#: RMSNorm's mean square enters the divider below 2**MEAN_SQUARE_BITS (shifted by an even
#: amount when the exact sum of squares is larger)
MEAN_SQUARE_BITS = 45
#: fraction bits of RMSNorm's ``x * gamma`` before the 1/rms Scale: Q24, saturated to
#: +-2**39 (the same +-32768.0 as int32 Q16), so that rows of small values (a few hundred
#: LSB) are not rounded to Q16 before they are scaled up by 1/rms
NORM_PRODUCT_FRAC = 24


def rms_eps(eps: float) -> int:
    """RMSNorm epsilon in Q32 (the format of a mean square of Q16 values), at least one LSB:
    1e-5 -> 42950 (1e-5 to 1e-5 relative; a Q16 epsilon could only say 1 LSB = 1.53e-5)."""
    if not eps >= 0 or not np.isfinite(eps) or eps >= 1:
        raise ValueError(f"RMSNorm epsilon must lie in [0, 1), got {eps}")
    return max(1, int(np.floor(eps * 2.0 ** 32 + 0.5)))


#: the name ``rmsnorm``'s epsilon operand had while it was Q16; it now returns ``rms_eps``
eps_q16 = rms_eps


def _sum_of_squares(x):
    """Exact ``sum(x*x)`` over the last axis as ``(hi, lo)``, ``hi * 2**32 + lo``, for int32
    ``x`` (the hardware accumulator is 63 + log2(H) bits wide; int64 holds it in two words)."""
    mag = np.abs(x)
    a, b = mag >> 16, mag & 0xFFFF                       # |x| = a * 2**16 + b
    low = 2 * (a * b).sum(axis=-1) * (1 << 16) + (b * b).sum(axis=-1)
    hi = (a * a).sum(axis=-1) + (low >> 32)
    return hi, low & 0xFFFFFFFF


def rmsnorm(x, gamma_q16, eps: int):
    """RMSNorm (Zhang & Sennrich 2019): ``y = x / sqrt(mean(x^2) + eps) * gamma``.

    Parameters
    ----------
    x : Q16 array (..., H), int32 range.
    gamma_q16 : Q16 array (H,), the norm weight.
    eps : Q32 epsilon from ``rms_eps``.

    Steps (all integer): the exact sum of squares ``S = sum(x^2)`` (Q32); an even shift
    ``s = max(0, bit_length(S) - 45)`` rounded up to even; ``ms = floor((S >> s) / H) +
    (eps >> s)`` (Q32 mean square, scaled by 2**-s); ``r = isqrt(ms * 2^16)`` (the rms in
    Q(24 - s/2), at least 15 significant bits once eps >= 1e-5); ``(m, e) = ratio_scale(2^16,
    r)`` with ``e += s/2 - 8`` (the Scale of 1/rms, one divider per token);
    ``p = sat40(round(x * gamma / 2^8))`` (Q24, ``NORM_PRODUCT_FRAC``);
    ``y = sat32(round(p * m * 2^-(e + 8)))``.

    The mean square is exact to its last Q32 bit and the 1/rms Scale keeps 16 significant
    bits at every magnitude: a row of Q16 values of RMS 0.002 (ReLU² products of a random
    model) is normalized to 1e-5 relative, not to the 50 % a Q16 mean square gave.
    """
    x = np.asarray(x, dtype=np.int64)
    hi, lo = _sum_of_squares(x)
    length = np.where(hi > 0, fixed.bit_length(hi) + 32, fixed.bit_length(lo))
    shift = np.maximum(length - MEAN_SQUARE_BITS, 0)
    shift = shift + (shift & 1)
    small = np.minimum(shift, 32)
    shifted = np.where(shift <= 32,
                       np.left_shift(hi, 32 - small) + np.right_shift(lo, small),
                       np.right_shift(hi, np.maximum(shift - 32, 0)))
    mean_square = shifted // x.shape[-1] + np.right_shift(np.int64(eps), shift)
    rms = fixed.isqrt(mean_square << fixed.FRAC)
    inv_m, inv_e = fixed.ratio_scale(np.full(rms.shape, fixed.ONE), rms)
    inv_e = inv_e + shift // 2 - 8
    extra = NORM_PRODUCT_FRAC - fixed.FRAC
    limit = np.int64(1) << (31 + extra)
    scaled = np.clip(fixed.round_shift(x * np.asarray(gamma_q16, dtype=np.int64),
                                       fixed.FRAC - extra), -limit, limit - 1)
    return fixed.apply_scale(scaled, inv_m[..., None], inv_e[..., None] + extra)


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
