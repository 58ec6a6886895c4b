# SPDX-License-Identifier: BSD-3-Clause
"""Fixed-point primitives and BitNet quantization against exact rational or float references."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ternedge.golden import fixed, quant


@given(st.integers(-(1 << 50), 1 << 50), st.integers(0, 40))
def test_round_shift_is_round_half_up(x, shift):
    exact = Fraction(x, 1 << shift)
    assert int(fixed.round_shift(x, shift)) == math.floor(exact + Fraction(1, 2))


@given(st.integers(-(1 << 50), 1 << 50), st.integers(1, 1 << 40))
def test_div_round_is_round_half_up(n, d):
    assert int(fixed.div_round(n, d)) == math.floor(Fraction(n, d) + Fraction(1, 2))


@given(st.integers(0, (1 << 62) - 1))
def test_isqrt_is_floor_sqrt(x):
    assert int(fixed.isqrt(x)) == math.isqrt(x)


@given(st.integers(1, (1 << 40)), st.integers(1, (1 << 40)))
@example(131071, 1)                      # rounds up to exactly 2**16 after one renormalization
def test_ratio_scale_is_normalized_and_accurate(num, den):
    m, e = fixed.ratio_scale(num, den)
    assert (1 << 15) <= int(m) < (1 << 16)
    assert abs(int(m) * 2.0 ** -int(e) / (num / den) - 1) <= 2 ** -15


@given(st.floats(1e-8, 1e8))
def test_float_to_scale(value):
    m, e = fixed.float_to_scale(value)
    assert (1 << 15) <= m < (1 << 16)
    assert abs(m * 2.0 ** -e / value - 1) <= 2 ** -16


def test_exp_neg_matches_float_exp():
    x = np.concatenate([np.arange(-(20 << 16), 1, 997), [-(300 << 16), 0]])
    got = fixed.exp_neg(x)
    want = np.exp(x / 65536.0) * 65536.0
    # LUT with linear interpolation: within 1 LSB plus 1e-5 relative
    assert np.all(np.abs(got - want) <= 1 + 1e-5 * want)
    assert got[-1] == fixed.ONE


def test_exp_neg_rejects_positive_input():
    with pytest.raises(ValueError, match="non-positive"):
        fixed.exp_neg(np.array([1]))


def test_quantize_weights_matches_absmean_formula():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, (64, 96)).astype(np.float32)
    ternary, scale = quant.quantize_weights(w)
    assert scale == pytest.approx(np.abs(w).mean(), rel=1e-6)
    assert set(np.unique(ternary)) <= {-1, 0, 1}
    np.testing.assert_array_equal(ternary, np.clip(np.round(w / scale), -1, 1))


def test_quantize_activations_is_symmetric_and_exact():
    rng = np.random.default_rng(1)
    x = rng.integers(-(1 << 24), 1 << 24, (16, 200))
    x[3] = 0
    q, amax = quant.quantize_activations(x)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    assert np.all(q[3] == 0) and amax[3] == 0
    for row, a in zip(range(16), amax, strict=True):
        if a == 0:
            continue
        exact = [Fraction(127 * int(v), int(a)) for v in x[row, :20]]
        want = [int(math.copysign(math.floor(abs(f) + Fraction(1, 2)), f)) for f in exact]
        np.testing.assert_array_equal(q[row, :20], want)
    # torch's formula differs only on exact ties (round half even vs half away)
    torch_like = np.clip(np.rint(x * (127 / np.maximum(amax, 1))[:, None]), -128, 127)
    assert np.mean(torch_like != q) < 1e-3


def test_dequantize_matches_float_scales():
    rng = np.random.default_rng(2)
    acc = rng.integers(-(1 << 20), 1 << 20, (8, 32))
    amax = rng.integers(1 << 10, 1 << 26, 8)
    scale = 0.0123
    got = quant.dequantize(acc, amax, quant.weight_scale(scale))
    want = np.clip(acc * (amax / 65536 / 127)[:, None] * scale * 65536, -2**31, 2**31 - 1)
    assert np.any(np.abs(want) == 2**31 - 1) and np.any(np.abs(want) < 2**26)
    assert np.all(np.abs(got - want) <= 1 + 4e-5 * np.abs(want))


@settings(max_examples=50)
@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=64))
def test_to_q16_from_q16_round_trip(values):
    v = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(fixed.to_q16(fixed.from_q16(v)), v)
