# SPDX-License-Identifier: BSD-3-Clause
"""Golden elementwise ops, attention and the whole decoder against float64 references.

Tolerances are for the fixed-point approximations against float math only, and stated per
test; everything inside golden/ is integer-exact.
"""

import numpy as np
import pytest
from float_reference import float_forward, rand_weights

from ternedge.golden import attention, fixed, ops, sampling
from ternedge.golden.config import AcceleratorConfig, ModelConfig
from ternedge.golden.model import GoldenModel


def test_rmsnorm_matches_float():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (8, 96))
    gamma = 1 + 0.2 * rng.normal(size=96)
    got = fixed.from_q16(ops.rmsnorm(fixed.to_q16(x), fixed.to_q16(gamma), ops.eps_q16(1e-5)))
    want = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * gamma
    np.testing.assert_allclose(got, want, atol=1e-4)     # Q16 LSB is 1.5e-5


def test_rope_matches_float_rotate_half():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (5, 3, 16))
    cos, sin = ops.rope_tables(32, 16, 10000.0)
    positions = np.array([0, 3, 7, 8, 31])
    got = fixed.from_q16(ops.rope(fixed.to_q16(x), positions, cos, sin))
    inv = 1 / 10000 ** (np.arange(0, 16, 2) / 16)
    ang = positions[:, None, None] * inv
    x1, x2 = x[..., :8], x[..., 8:]
    want = np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang)], -1)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_gates_match_float():
    rng = np.random.default_rng(2)
    g, u = rng.normal(0, 3, 500), rng.normal(0, 3, 500)
    gq, uq = fixed.to_q16(g), fixed.to_q16(u)
    relu2 = fixed.from_q16(ops.relu2_gate(gq, uq))
    np.testing.assert_allclose(relu2, np.maximum(g, 0) ** 2 * u, atol=1e-3, rtol=1e-4)
    silu = fixed.from_q16(ops.silu_gate(gq, uq))
    np.testing.assert_allclose(silu, g / (1 + np.exp(-g)) * u, atol=1e-3, rtol=1e-4)


def test_attention_matches_float_softmax():
    rng = np.random.default_rng(3)
    q = rng.normal(0, 1, (6, 4, 16))
    k, v = rng.normal(0, 1, (6, 2, 16)), rng.normal(0, 1, (6, 2, 16))
    positions = np.arange(6)
    got = fixed.from_q16(attention.attention(fixed.to_q16(q), fixed.to_q16(k), fixed.to_q16(v),
                                             positions))
    kk, vv = np.repeat(k, 2, 1), np.repeat(v, 2, 1)
    s = np.einsum("thd,shd->hts", q, kk) / 4.0
    s = np.where(np.tril(np.ones((6, 6), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("hts,shd->thd", p / p.sum(-1, keepdims=True), vv)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_attention_decode_equals_prefill_bit_for_bit():
    rng = np.random.default_rng(4)
    q = rng.integers(-(1 << 18), 1 << 18, (9, 4, 8))
    k = rng.integers(-(1 << 18), 1 << 18, (9, 4, 8))
    v = rng.integers(-(1 << 18), 1 << 18, (9, 4, 8))
    prefill = attention.attention(q, k, v, np.arange(9))
    for t in range(9):
        one = attention.attention(q[t:t + 1], k[:t + 1], v[:t + 1], np.array([t]))
        np.testing.assert_array_equal(one[0], prefill[t])
    # key order does not matter: integer sums (a reversed-order prefill unit gives the same)
    flipped = attention.attention(q[-1:], k[::-1], v[::-1], np.array([8]))
    np.testing.assert_array_equal(flipped[0], prefill[8])


CONFIGS = [
    dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2, hidden_act="relu2"),
    dict(hidden_size=40, num_attention_heads=5, num_key_value_heads=5, hidden_act="silu",
         family="llama-bitnet"),
    dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=1, hidden_act="relu2"),
]


@pytest.mark.parametrize("shape", CONFIGS)
def test_model_prefill_and_decode_agree_and_track_float(shape):
    cfg = ModelConfig(vocab_size=64, intermediate_size=100, num_hidden_layers=2,
                      max_position_embeddings=32, **shape)
    weights = rand_weights(cfg, seed=5)
    ids = np.random.default_rng(6).integers(0, 64, 24)
    model = GoldenModel(weights)
    hidden = model.forward(ids)
    model.reset()
    steps = [model.forward(ids[:10])] + [model.forward(ids[i:i + 1]) for i in range(10, 24)]
    np.testing.assert_array_equal(np.concatenate(steps), hidden)
    full = model.logits(hidden)
    # against float64 HF math with fake quantization: INT8 rounding flips make the logit
    # error a few percent of the logit range on random weights; top-1 must agree
    reference = float_forward(weights, ids)
    assert np.abs(full - reference).max() < 0.03 * np.abs(reference).max()
    assert np.mean(full.argmax(-1) == reference.argmax(-1)) >= 0.9


@pytest.mark.parametrize("group_size", [2, 4])
def test_model_independent_of_group_size(group_size):
    cfg = ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=50, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    weights = rand_weights(cfg, seed=7)
    ids = np.arange(10)
    base = GoldenModel(weights).forward(ids)
    other = GoldenModel(weights, AcceleratorConfig(group_size=group_size)).forward(ids)
    np.testing.assert_array_equal(base, other)


def test_model_rejects_context_overflow():
    cfg = ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=50, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8)
    model = GoldenModel(rand_weights(cfg))
    with pytest.raises(ValueError, match="exceeds the context of 8"):
        model.forward(np.arange(9))


def test_sampling_greedy_seeded_and_top_k():
    logits = np.array([0.1, 2.0, 1.9, -1.0, 2.0])
    assert sampling.sample(logits) == 1
    draws = [sampling.sample(logits, temperature=1.0, rng=np.random.default_rng(9))
             for _ in range(3)]
    assert len(set(draws)) == 1
    rng = np.random.default_rng(10)
    picks = {sampling.sample(logits, temperature=5.0, top_k=2, rng=rng) for _ in range(200)}
    assert picks == {1, 4}
    rng = np.random.default_rng(10)
    picks = {sampling.sample(logits, temperature=5.0, rng=rng) for _ in range(400)}
    assert picks == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("temperature, top_k, message", [
    (-1.0, 0, "temperature"), (float("nan"), 0, "temperature"), (1.0, -3, "top-k")])
def test_sampling_rejects_bad_arguments(temperature, top_k, message):
    with pytest.raises(ValueError, match=message):
        sampling.sample(np.zeros(4), temperature=temperature, top_k=top_k,
                        rng=np.random.default_rng(0))
