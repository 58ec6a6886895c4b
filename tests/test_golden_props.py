# SPDX-License-Identifier: BSD-3-Clause
"""Each golden op against a float64 implementation of the same math on the same (Q16) inputs,
over random inputs at the extremes of scale, with a stated error bound per op.

Bounds are in real units (1 LSB = 2**-16) and relative to the reference; they follow from the
op's roundings (each stated beside its test) and are what the op guarantees, not what one
seed happened to give.
"""

import numpy as np
import pytest

from ternedge.golden import attention, fixed, ops, quant

LSB = 2.0 ** -16
SEEDS = range(4)


def _rng(seed):
    return np.random.default_rng(1000 + seed)


def _rows(rng, tokens, h):
    """Q16 rows whose RMS spans 2**-14 .. 2**13 real (1 LSB .. 2**29 LSB), near-zero rows
    (all elements in -2..2 LSB, and all zero) included."""
    scales = 2.0 ** rng.uniform(-14, 13, (tokens, 1))
    x = fixed.to_q16(rng.standard_normal((tokens, h)) * scales)
    x[0] = 0
    x[1] = rng.integers(-2, 3, h)
    x[2, :] = fixed.INT32_MAX // 64                     # one large, flat row
    return x


@pytest.mark.parametrize("seed", SEEDS)
def test_rmsnorm(seed):
    """|y - ref| <= 2 LSB + 4e-5 |ref|: the 1/rms Scale (16-bit mantissa, 2**-17), the floor
    square root (>= 2**15.7 significant once eps = 1e-5 is added, 1.9e-5), the Q24 product and
    the final Q16 rounding (0.5 LSB); the mean square itself is exact."""
    rng = _rng(seed)
    h = int(rng.choice([6, 40, 257, 1024]))
    x = _rows(rng, 24, h)
    gamma = fixed.to_q16(rng.normal(1.0, 0.5, h) * rng.choice([1, 8]))
    eps = 1e-5
    got = fixed.from_q16(ops.rmsnorm(x, gamma, ops.rms_eps(eps)))
    xf, gf = fixed.from_q16(x), fixed.from_q16(gamma)
    ref = xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + eps) * gf
    # x * gamma saturates at +-32768.0 (as every Q16 value does): compare below that
    inside = np.abs(xf * gf) < 32767
    err = np.abs(got - ref)[inside]
    assert inside.mean() > 0.9
    assert np.all(err <= 2 * LSB + 4e-5 * np.abs(ref[inside])), (seed, err.max())
    np.testing.assert_array_equal(got[0], 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize_activations(seed):
    """Exactly ``round(127 x / amax)`` (half away from zero) at every scale, from rows of one
    LSB to the int32 range; |q| <= 127 and the largest element maps to +-127."""
    rng = _rng(seed)
    x = _rows(rng, 32, 96)
    x[3, 5] = fixed.INT32_MIN
    q, amax = quant.quantize_activations(x)
    ratio = 127 * x.astype(np.float64) / np.maximum(amax, 1)[:, None]
    ref = np.sign(ratio) * np.floor(np.abs(ratio) + 0.5)
    np.testing.assert_array_equal(q, ref)
    assert np.abs(q).max() <= 127
    assert np.all(np.abs(q).max(-1)[amax > 0] == 127)


@pytest.mark.parametrize("seed", SEEDS)
def test_dequantize(seed):
    """|y - acc * amax/127 * s| <= 0.5 LSB + 2**-15 |ref|: two 16-bit-mantissa Scales
    (2**-17 each) and one rounding; tiny (1 LSB) and large (2**30 LSB) amax, tiny and large
    weight scales."""
    rng = _rng(seed)
    acc = rng.integers(-127 * 4096, 127 * 4096, (16, 32))
    amax = (2 ** rng.uniform(0, 30, 16)).astype(np.int64)
    scale = float(2 ** rng.uniform(-12, 2))
    got = fixed.from_q16(quant.dequantize(acc, amax, quant.weight_scale(scale)))
    ref = acc * (fixed.from_q16(amax) / 127 * scale)[:, None]
    inside = np.abs(ref) < 32767                        # beyond that the output saturates
    err = np.abs(got - ref)[inside]
    assert np.all(err <= 0.5 * LSB + 2 ** -15 * np.abs(ref[inside])), (seed, err.max())
    assert np.all(np.abs(got[~inside]) >= 32767)


@pytest.mark.parametrize("frac", [16, attention.WEIGHT_FRAC])
def test_exp_neg(frac):
    """|exp_neg(x) - e^x| <= 2e-5 e^x + 1 output LSB over [-256, 0]: Q16 argument times a
    Q30 log2(e) (2**-17 in the exponent), 256-interval linear interpolation (< 2**-19), one
    final rounding."""
    x = -np.concatenate([np.arange(0, 1 << 20, 7), (2 ** np.linspace(0, 24, 400)).astype(int)])
    got = fixed.exp_neg(x, frac) / 2.0 ** frac
    ref = np.exp(fixed.from_q16(x))
    assert np.all(np.abs(got - ref) <= 2e-5 * ref + 2.0 ** -frac)


@pytest.mark.parametrize("keys,spread", [(8, 1.0), (512, 30.0), (2048, 60.0), (2048, 0.01)])
def test_attention_long_context_large_spread(keys, spread):
    """One query per head against ``keys`` keys with score spreads up to 60 (a peaked softmax
    whose tail has thousands of terms below 2**-16): |out - softmax(qk/sqrt d) v| <= 4 LSB +
    1e-4 max|v|. Terms: the Q16 score (0.5 LSB in the exponent), exp_neg's 2e-5, Q24 weights
    (the tail of thousands of small terms still counts), the 1/sum Scale (2**-17)."""
    rng = np.random.default_rng(keys)
    heads, kv_heads, d = 4, 2, 32
    k = rng.standard_normal((keys, kv_heads, d))
    q = rng.standard_normal((1, heads, d))
    q *= spread / 4 * np.sqrt(d) / np.linalg.norm(q, axis=-1, keepdims=True) * 2
    v = rng.standard_normal((keys, kv_heads, d)) * 3
    qq, kk, vv = fixed.to_q16(q), fixed.to_q16(k), fixed.to_q16(v)
    got = fixed.from_q16(attention.attention(qq, kk, vv, np.array([keys - 1])))
    qf, kf, vf = (fixed.from_q16(a) for a in (qq, kk, vv))
    kf, vf = np.repeat(kf, heads // kv_heads, 1), np.repeat(vf, heads // kv_heads, 1)
    s = np.einsum("thd,shd->ths", qf, kf) / np.sqrt(d)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.einsum("ths,shd->thd", p, vf)
    assert s.max() - s.min() >= spread                  # the spread is really there
    err = np.abs(got - ref)
    assert err.max() <= 4 * LSB + 1e-4 * np.abs(vf).max(), err.max()


@pytest.mark.parametrize("seed", SEEDS)
def test_rope(seed):
    """|rope(x) - R x| <= 1 LSB + 2**-15 |x|: the Q16 cos/sin tables (0.5 LSB each) and one
    rounding, at positions up to 4095 and magnitudes up to 2**14."""
    rng = _rng(seed)
    d = 16
    cos, sin = ops.rope_tables(4096, d, 10000.0)
    positions = rng.integers(0, 4096, 8)
    x = fixed.to_q16(rng.standard_normal((8, 3, d)) * 2.0 ** rng.uniform(-10, 14, (8, 3, 1)))
    got = fixed.from_q16(ops.rope(x, positions, cos, sin))
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    ang = positions[:, None, None] * inv
    xf = fixed.from_q16(x)
    x1, x2 = xf[..., :d // 2], xf[..., d // 2:]
    ref = np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                          x2 * np.cos(ang) + x1 * np.sin(ang)], -1)
    norm = np.sqrt(x1 ** 2 + x2 ** 2)
    bound = LSB + 2 ** -15 * np.concatenate([norm, norm], -1)
    assert np.all(np.abs(got - ref) <= bound)


@pytest.mark.parametrize("seed", SEEDS)
def test_gates(seed):
    """ReLU² and SiLU gates: |y - ref| <= 1 LSB + 1e-4 |ref| + (1 + |gate|) |up| LSB (the
    rounded first product times ``up``, and for SiLU the Q16 sigmoid, one LSB, times
    ``gate * up``), inputs from 2**-12 to 2**4, outputs inside the int32 range."""
    rng = _rng(seed)
    g = fixed.to_q16(rng.standard_normal(4096) * 2.0 ** rng.uniform(-12, 4, 4096))
    up = fixed.to_q16(rng.standard_normal(4096) * 2.0 ** rng.uniform(-12, 4, 4096))
    gf, uf = fixed.from_q16(g), fixed.from_q16(up)
    for got, ref in ((ops.relu2_gate(g, up), np.maximum(gf, 0) ** 2 * uf),
                     (ops.silu_gate(g, up), gf / (1 + np.exp(-gf)) * uf)):
        got = fixed.from_q16(got)
        inside = np.abs(ref) < 32000
        err = np.abs(got - ref)[inside]
        bound = LSB + 1e-4 * np.abs(ref[inside]) + (1 + np.abs(gf))[inside] * np.abs(
            uf[inside]) * LSB
        assert np.all(err <= bound), err.max()


@pytest.mark.parametrize("seed", SEEDS)
def test_kv_formats(seed):
    """KV-cache round trips (``golden.formats``): FP16 within 2**-11 relative (+ 1 LSB below
    FP16's normal range); INT8 per (token, head) and per token within half a quantization step
    (``amax / 254``) + 1 LSB, keys from 2**-12 to 2**7 (the attention operand limit)."""
    from ternedge.golden import formats

    rng = _rng(seed)
    x = fixed.to_q16(rng.standard_normal((16, 4, 32)) * 2.0 ** rng.uniform(-12, 7, (16, 4, 1)))
    xf = fixed.from_q16(x)
    fp16 = fixed.from_q16(formats.KVFormat("fp16").roundtrip(x))
    assert np.all(np.abs(fp16 - xf) <= 2 ** -11 * np.abs(xf) + LSB)
    for kind, axes in (("int8-head", (2,)), ("int8-token", (1, 2))):
        back = fixed.from_q16(formats.KVFormat(kind).roundtrip(x))
        step = np.abs(xf).max(axis=axes, keepdims=True) / 254
        assert np.all(np.abs(back - xf) <= step + LSB), kind


@pytest.mark.parametrize("bits,group", [(8, None), (8, 32), (4, 64)])
def test_lm_head_format(bits, group):
    """The integer LM head equals float64 ``(q_x amax/127) @ (codes * step).T`` to 1 LSB +
    2**-15 relative of each group's contribution (16-bit-mantissa Scales, a 2**-20 sum)."""
    from ternedge.golden import formats, quant

    rng = np.random.default_rng(bits * 100 + (group or 0))
    fmt = formats.LMHeadFormat(bits, group)
    weight = rng.standard_normal((50, 100)) * 0.05
    hidden = fixed.to_q16(rng.standard_normal((6, 100)) * 2.0 ** rng.uniform(-6, 4, (6, 1)))
    codes, m, e = fmt.quantize_weight(weight)
    assert np.abs(codes).max() <= fmt.qmax
    got = fmt.logits(hidden, weight)
    q, amax = quant.quantize_activations(hidden)
    g = group or 100
    step = np.repeat(m * 2.0 ** -e.astype(np.float64), g, axis=1)[:, :100]
    x = q * (fixed.from_q16(amax) / 127)[:, None]
    ref = x @ (codes * step).T
    scale = np.abs(x) @ np.abs(codes * step).T
    assert np.all(np.abs(got - ref) <= LSB + 2 ** -15 * scale)
    # and the format is close to the float head (the quantization error it specifies)
    full = fixed.from_q16(hidden) @ weight.T
    assert np.abs(got - full).max() <= (0.02 if bits == 8 else 0.2) * np.abs(full).max()
