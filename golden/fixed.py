# SPDX-License-Identifier: BSD-3-Clause
"""Fixed-point primitives: the exact integer arithmetic every ternedge datapath is built from.

Number formats
--------------
* **Q16**: a real value ``v`` is the integer ``round(v * 2**16)``, held in int32 on the fabric
  (int64 in NumPy for headroom) and saturated to the int32 range wherever a datapath writes it.
  The residual stream, norm outputs, dequantized linear outputs, q/k/v and attention outputs
  are all Q16.
* **Scale**: a positive real as a pair ``(m, e)`` with ``m`` an unsigned 16-bit mantissa in
  ``[2**15, 2**16)`` and ``v = m * 2**-e``: a tiny float with 16 significant bits, used for
  per-tensor weight scales, per-token activation scales and reciprocals (1/rms, 1/sum).

Rounding
--------
Every right shift and division rounds half up (towards +inf): ``(x + 2**(s-1)) >> s`` and
``floor((2n + d) / (2d))``. That is one adder in hardware and the same in every block.

Each function works elementwise on int64 NumPy arrays; the stated bounds keep every
intermediate inside int64 and are what RTL datapath widths are sized from.
"""

import numpy as np

__all__ = [
    "FRAC", "ONE", "INT32_MIN", "INT32_MAX", "sat32", "round_shift", "div_round", "isqrt",
    "bit_length", "ratio_scale", "float_to_scale", "apply_scale", "exp_neg", "EXP2_LUT",
    "LOG2E_Q30", "to_q16", "from_q16",
]

FRAC = 16
ONE = 1 << FRAC
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: log2(e) in Q30, for exp(x) = 2**(x * log2 e)
LOG2E_Q30 = round(np.log2(np.e) * (1 << 30))
#: 2**(i/256) in Q16 for i = 0..256; exp2 of the fraction interpolates linearly between entries
EXP2_LUT = np.array([round(2.0 ** (i / 256) * ONE) for i in range(257)], dtype=np.int64)


def sat32(x):
    """Saturate to the int32 range (result int64)."""
    return np.clip(np.asarray(x, dtype=np.int64), INT32_MIN, INT32_MAX)


def round_shift(x, shift):
    """``x * 2**-shift`` rounded half up; ``shift`` may be an array and may be <= 0.

    A shift <= 0 is an exact left shift; the caller saturates.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    right = np.maximum(shift, 0)
    bias = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    shifted = np.right_shift(x + bias, right)
    return np.where(shift > 0, shifted, np.left_shift(x, np.maximum(-shift, 0)))


def div_round(n, d):
    """``n / d`` rounded half up, for ``d > 0``."""
    n = np.asarray(n, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    return np.floor_divide(2 * n + d, 2 * d)


def isqrt(x):
    """Floor square root of non-negative integers below 2**62."""
    x = np.asarray(x, dtype=np.int64)
    r = np.sqrt(x.astype(np.float64)).astype(np.int64)
    # float64 sqrt is within one of the true root here; correct it in both directions
    r = np.where(r * r > x, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= x, r + 1, r)
    return r


def bit_length(x):
    """Elementwise ``int.bit_length`` of non-negative integers."""
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    rest = x.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = rest >= (np.int64(1) << step)
        out += np.where(big, step, 0)
        rest = np.where(big, rest >> step, rest)
    return out + (rest > 0)


def ratio_scale(num, den):
    """The Scale ``(m, e)`` of ``num / den`` for positive integers ``num``, ``den < 2**44``.

    ``m = round(num * 2**e / den)`` with ``e`` chosen so ``2**15 <= m < 2**16``. In hardware this
    is a leading-zero count and one divider per token (or per head), never per element.
    """
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if np.any(num <= 0) or np.any(den <= 0):
        raise ValueError("ratio_scale needs positive numerator and denominator")
    e = 16 + bit_length(den) - bit_length(num)
    m = _scaled_quotient(num, den, e)
    # at most twice: the quotient starts below 2**17, and rounding may land exactly on 2**16
    while np.any(m >= 1 << 16):
        e = np.where(m >= 1 << 16, e - 1, e)
        m = _scaled_quotient(num, den, e)
    return m, e


def _scaled_quotient(num, den, e):
    n = np.where(e >= 0, np.left_shift(num, np.maximum(e, 0)), num)
    d = np.where(e >= 0, den, np.left_shift(den, np.maximum(-e, 0)))
    return div_round(n, d)


def float_to_scale(value: float):
    """The Scale ``(m, e)`` nearest a positive float (weight scales, constants)."""
    if not value > 0 or not np.isfinite(value):
        raise ValueError(f"a scale must be a positive finite number, got {value}")
    frac, exp = np.frexp(np.float64(value))          # value = frac * 2**exp, frac in [0.5, 1)
    m = int(round(float(frac) * (1 << 16)))
    if m == 1 << 16:
        m, exp = 1 << 15, exp + 1
    return m, 16 - int(exp)


def apply_scale(x, m, e, extra_shift=0):
    """``x * m * 2**-(e + extra_shift)`` rounded half up and saturated to int32.

    ``|x| < 2**47`` keeps the product inside int64.
    """
    product = np.asarray(x, dtype=np.int64) * np.asarray(m, dtype=np.int64)
    return sat32(round_shift(product, np.asarray(e) + extra_shift))


def exp_neg(x, frac: int = FRAC):
    """``exp(x)`` in Q``frac`` (Q16 by default) for Q16 ``x <= 0`` (positive inputs are an error).

    ``exp(x) = 2**t`` with ``t = x * log2(e)`` (Q30 constant); ``2**frac(t)`` comes from
    ``EXP2_LUT`` (256 intervals, linear interpolation on the low 8 bits of the fraction), and
    the integer part of ``t`` is a right shift: ``round_shift(mant << (frac - 16), -whole)``.
    Inputs below -256.0 give 0. ``frac > 16`` keeps small results from rounding away (the
    attention weights, where thousands of tiny terms add up in the softmax denominator).
    """
    if frac < FRAC or frac > 30:
        raise ValueError(f"exp_neg output fraction bits must be 16..30, got {frac}")
    x = np.asarray(x, dtype=np.int64)
    if np.any(x > 0):
        raise ValueError("exp_neg takes non-positive Q16 inputs")
    x = np.maximum(x, -(256 << FRAC))
    t = round_shift(x * LOG2E_Q30, 30)               # Q16, <= 0
    whole = np.right_shift(t, FRAC)                  # floor, <= 0
    frac_t = t & (ONE - 1)
    hi = frac_t >> 8
    lo = frac_t & 0xFF
    base = EXP2_LUT[hi]
    mant = base + round_shift((EXP2_LUT[hi + 1] - base) * lo, 8)   # 2**frac in Q16, [1, 2)
    return round_shift(mant << (frac - FRAC), np.minimum(-whole, 62))


def to_q16(values) -> np.ndarray:
    """Float array to Q16 (round half up, saturated): how float parameters enter the datapath."""
    scaled = np.floor(np.asarray(values, dtype=np.float64) * ONE + 0.5)
    return sat32(np.clip(scaled, INT32_MIN, INT32_MAX).astype(np.int64))


def from_q16(values) -> np.ndarray:
    """Q16 to float64, for reporting and host-side float work (LM head)."""
    return np.asarray(values, dtype=np.float64) / ONE
