# SPDX-License-Identifier: BSD-3-Clause
"""Causal attention in exact Q16 fixed point, for prefill and decode alike.

For one query and its visible keys the result is defined as the two-pass softmax that the
decode unit streams (TeLLMe ``decode_attention.hpp``): pass 1 computes the scores and their
exact maximum, pass 2 accumulates ``exp(s - max) * v`` and ``sum exp(s - max)``; one division
per (query, head) at the end. All sums are integer, so the result does not depend on the order
in which keys are visited: prefill (a causal block of queries) and decode (one query against
the KV cache) give bit-identical outputs for the same sequence, and a hardware unit may visit
keys in any order (TeLLMe's reversed prefill order included).

Per (query, head), with q, k, v first saturated to +-2**23 (+-128.0) so products fit int64:
``dot = sum_d q_d k_d`` (Q32); ``s = sat32(round(round(dot / 2^16) * c))`` with ``c`` the Scale
of ``1/sqrt(head_dim)``; ``p_j = exp_neg(s_j - max_j s_j)`` (Q24, ``WEIGHT_FRAC``);
``acc = round(sum_j p_j v_j / 2^24)``; ``out = sat32(round(acc * r))`` with ``r`` the Scale of
``2^24 / sum_j p_j``.
"""

import numpy as np

from . import fixed

__all__ = ["attention", "attention_scores", "attention_weights", "attention_output",
           "OPERAND_LIMIT", "WEIGHT_FRAC"]

#: q, k and v are saturated to this magnitude (Q16) before the dot products
OPERAND_LIMIT = (1 << 23) - 1
#: fraction bits of the softmax weights ``p = exp(s - max)``: Q24, so that weights down to
#: 2**-24 still count in ``sum p`` (with Q16 weights, a peaked softmax over a long context lost
#: up to 0.06 % of its denominator to keys whose weight rounded to 0); ``p * v`` stays below
#: 2**47, so ``sum p v`` fits int64 for up to 2**15 keys
WEIGHT_FRAC = 24


def _operand(x):
    return np.clip(np.asarray(x, dtype=np.int64), -OPERAND_LIMIT, OPERAND_LIMIT)


def attention_scores(q, k, q_positions):
    """Pass 1: Q16 scores ``(T, heads, S)`` and the visibility mask (keys 0..position).

    Masked scores are ``INT32_MIN``. ``q`` (T, heads, D) and ``k`` (S, kv_heads, D) as in
    ``attention``.
    """
    q, k = _operand(q), _operand(k)
    heads, head_dim = q.shape[1], q.shape[2]
    k = np.repeat(k, heads // k.shape[1], axis=1)                      # (S, heads, D)
    scale_m, scale_e = fixed.float_to_scale(1.0 / np.sqrt(head_dim))
    dots = np.einsum("thd,shd->ths", q, k)                             # Q32
    scores = fixed.apply_scale(fixed.round_shift(dots, fixed.FRAC), scale_m, scale_e)
    visible = np.arange(k.shape[0])[None, None, :] <= np.asarray(q_positions)[:, None, None]
    return np.where(visible, scores, fixed.INT32_MIN), visible


def attention_weights(scores, visible):
    """Unnormalized weights ``exp_neg(s - max s)`` in Q``WEIGHT_FRAC`` (0 where masked)."""
    peak = scores.max(axis=-1, keepdims=True)
    return np.where(visible, fixed.exp_neg(np.where(visible, scores - peak, 0), WEIGHT_FRAC), 0)


def attention_output(weights, v):
    """Pass 2: ``round(sum_j p_j v_j / 2^WEIGHT_FRAC)`` times the Scale of ``2^WEIGHT_FRAC /
    sum_j p_j``, Q16 (T, heads, D)."""
    v = _operand(v)
    v = np.repeat(v, weights.shape[1] // v.shape[1], axis=1)
    total = weights.sum(axis=-1)                                       # >= 1.0
    acc = fixed.round_shift(np.einsum("ths,shd->thd", weights, v), WEIGHT_FRAC)
    inv_m, inv_e = fixed.ratio_scale(np.full(total.shape, 1 << WEIGHT_FRAC), total)
    return fixed.apply_scale(acc, inv_m[..., None], inv_e[..., None])


def attention(q, k, v, q_positions):
    """Causal multi-head (GQA) attention.

    Parameters
    ----------
    q : Q16 array (T, heads, head_dim): queries after RoPE.
    k, v : Q16 arrays (S, kv_heads, head_dim): keys (after RoPE) and values of positions 0..S-1.
    q_positions : int array (T,): the position of each query; it sees keys 0..position.

    Returns
    -------
    Q16 array (T, heads, head_dim): ``attention_output(attention_weights(*attention_scores(
    q, k, q_positions)), v)``.
    """
    return attention_output(attention_weights(*attention_scores(q, k, q_positions)), v)
