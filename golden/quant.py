# SPDX-License-Identifier: BSD-3-Clause
"""BitNet b1.58 quantization: absmean ternary weights, absmax per-token INT8 activations.

Weights (BitNet b1.58, Ma et al. 2024, eq. 1-3; transformers ``WeightQuant``):
``s = mean|W|``, ``W_t = clip(round(W / s), -1, 1)``, ``W ~= W_t * s``. Computed in float32 the
way transformers does, so a float checkpoint quantizes to the same ternary values.

Activations (eq. 4; TeLLMe ``utils_quant.hpp``): per token, ``amax = max|x|`` and
``q = round(127 * x / amax)``, exactly, as a rational rounded half away from zero. Because
``|x| <= amax`` the result always lies in [-127, 127]: saturation is symmetric (+-127, as
TeLLMe's ``AP_SAT_SYM``); -128 never occurs, so torch's clamp to [-128, 127] never differs
from it. torch rounds half to even; the two differ only on exact ties.

Dequantization: ``y = acc * (amax / 127) * s`` with both scales as 16-bit-mantissa Scales
(see ``fixed``), result in Q16.
"""

import numpy as np

from . import fixed

__all__ = ["quantize_weights", "quantize_activations", "activation_scale", "dequantize",
           "weight_scale"]


def quantize_weights(weight):
    """Float weight matrix -> (int8 ternary matrix, float absmean scale)."""
    w = np.asarray(weight, dtype=np.float32)
    absmean = max(float(np.abs(w).mean(dtype=np.float32)), 1e-5)
    inv = np.float32(1.0) / np.float32(absmean)
    ternary = np.clip(np.rint(w * inv), -1, 1).astype(np.int8)
    return ternary, absmean


def weight_scale(scale: float):
    """A linear layer's float scale as the Scale ``(m, e)`` the dequantizer multiplies by."""
    return fixed.float_to_scale(scale)


def quantize_activations(x):
    """Per-token absmax INT8 quantization of Q16 activations.

    Parameters
    ----------
    x : int array (..., K) of Q16 values.

    Returns
    -------
    q : int8 array (..., K), values in [-127, 127].
    amax : int64 array (...,), the per-token max |x| in Q16 (0 for an all-zero token).
    """
    x = np.asarray(x, dtype=np.int64)
    amax = np.abs(x).max(axis=-1)
    safe = np.maximum(amax, 1)[..., None]
    mag = np.floor_divide(254 * np.abs(x) + safe, 2 * safe)
    return (np.sign(x) * mag).astype(np.int8), amax


def activation_scale(amax):
    """Per-token Scale ``(m, e)`` of ``amax / 127`` (real units), for tokens with amax > 0."""
    amax = np.asarray(amax, dtype=np.int64)
    m, e = fixed.ratio_scale(np.maximum(amax, 1), np.full(amax.shape, 127))
    # amax is Q16: the real scale is (amax / 127) * 2**-16
    return np.where(amax > 0, m, 0), e + fixed.FRAC


def dequantize(acc, amax, w_scale):
    """Q16 output of a ternary linear layer from its integer accumulators.

    Parameters
    ----------
    acc : int array (..., N), ``sum_k q[k] * W_t[n, k]``.
    amax : int array (...,), per-token activation absmax (Q16) from ``quantize_activations``.
    w_scale : Scale ``(m, e)`` of the weight, from ``weight_scale``.

    ``y = acc * m_x * m_w * 2**-(e_x + e_w - 16)``, rounded half up, saturated to int32.
    """
    m_x, e_x = activation_scale(amax)
    m_w, e_w = w_scale
    acc = np.asarray(acc, dtype=np.int64)
    product = acc * (m_x * np.int64(m_w))[..., None]
    shift = (e_x + e_w - fixed.FRAC)[..., None]
    return fixed.sat32(fixed.round_shift(product, shift))
