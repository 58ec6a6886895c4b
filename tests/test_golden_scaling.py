# SPDX-License-Identifier: BSD-3-Clause
"""Range scaling (``golden.scaling``): an exact rescaling, chosen within the datapath's ranges,
that GoldenModel runs, and that a checkpoint save undoes."""

import dataclasses

import numpy as np
import pytest
from float_reference import float_forward, rand_weights

from ternedge.golden import attention, fixed, scaling
from ternedge.golden.config import ModelConfig
from ternedge.golden.model import GoldenModel
from ternedge.golden.weights import RangeScales
from ternedge.host import numerics
from ternedge.host.checkpoint import load_checkpoint, save_checkpoint

CFG = ModelConfig(vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                  tie_word_embeddings=True)


def small_model(cfg=CFG, embed_rms=0.02, seed=3):
    """Random weights whose embeddings have RMS ``embed_rms`` (transformers' init: 0.02)."""
    weights = rand_weights(cfg, seed=seed)
    embed = (weights.embed_tokens * np.float32(embed_rms)).astype(np.float32)
    return dataclasses.replace(weights, embed_tokens=embed,
                               lm_head=embed if cfg.tie_word_embeddings else weights.lm_head)


def test_rescaled_model_is_the_same_function():
    weights = small_model()
    scales = RangeScales(residual=64, norm=8, gate=4)
    scaled = scaling.apply(weights, scales)
    assert scaled.range_scales == scales
    assert scaled.config.rms_norm_eps == weights.config.rms_norm_eps * 64 ** 2
    ids = np.random.default_rng(0).integers(0, 64, 40)
    # every factor is a power of two, so float64 HF math gives the same logits
    np.testing.assert_allclose(float_forward(scaled, ids), float_forward(weights, ids),
                               rtol=1e-12, atol=1e-12)
    back = scaling.undo(scaled)
    assert back.range_scales == scaling.UNIT and back.config == weights.config
    np.testing.assert_array_equal(back.embed_tokens, weights.embed_tokens)
    for got, want in zip(back.layers, weights.layers, strict=True):
        for name in ("q_proj", "up_proj", "down_proj", "gate_proj"):
            assert getattr(got, name).scale == getattr(want, name).scale
        np.testing.assert_array_equal(got.ffn_sub_norm, want.ffn_sub_norm)


def test_golden_runs_the_rescaled_model_closer_to_float():
    """Small activations (a random-init model's) lose bits in Q16; rescaled they do not."""
    weights = small_model()
    ids = np.random.default_rng(1).integers(0, 64, 48)
    reference = float_forward(weights, ids)
    scaled = GoldenModel(weights)
    plain = GoldenModel(weights, range_scale=False)
    assert scaled.weights.range_scales.residual >= 16
    assert scaled.config.rms_norm_eps > weights.config.rms_norm_eps
    assert plain.weights is weights
    errors = {}
    for name, model in (("scaled", scaled), ("plain", plain)):
        logits = model.logits(model.forward(ids))
        errors[name] = numerics.logit_metrics(logits, reference)
    # measured (residual 32, norm 32, gate 4): KL 8.6e-7 against 4.0e-6 unscaled, max logit
    # error 0.77 % of the range against 1.1 %; top-1 100 % both
    assert errors["scaled"]["kl"] < 0.5 * errors["plain"]["kl"], errors
    assert errors["scaled"]["top1"] >= errors["plain"]["top1"], errors
    # GoldenModel of rescaled weights uses them as they are
    assert GoldenModel(scaled.weights).weights is scaled.weights


def test_choice_keeps_calibrated_peaks_inside_the_ranges():
    weights = small_model()
    scales = scaling.choose(weights)
    peaks = scaling._peaks(scaling.apply(weights, scales), np.random.default_rng(0).integers(
        0, 64, scaling.CALIBRATION_TOKENS))
    q16 = fixed.INT32_MAX / fixed.ONE
    assert peaks["v"] * scaling.V_HEADROOM <= attention.OPERAND_LIMIT / fixed.ONE
    for name in ("residual", "gated", "norm_out", "residual_gamma", "v_gamma", "gated_gamma"):
        assert peaks[name] * scaling.HEADROOM <= q16, name
    # and each factor is the largest that does: twice it would break a bound
    assert scales.residual > 1 and scales.norm > 1


def test_large_values_get_unit_scale():
    weights = small_model(embed_rms=1000.0)       # residual peaks beyond 32768 / HEADROOM
    assert scaling.choose(weights).residual == 1
    silu = small_model(dataclasses.replace(CFG, hidden_act="silu"))
    assert scaling.choose(silu).gate == 1


def test_checkpoint_save_undoes_the_scaling(tmp_path):
    weights = small_model()
    model = GoldenModel(weights)
    save_checkpoint(tmp_path / "ck", model.weights)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.range_scales == scaling.UNIT
    assert loaded.config.rms_norm_eps == weights.config.rms_norm_eps
    np.testing.assert_array_equal(loaded.embed_tokens, weights.embed_tokens)
    np.testing.assert_array_equal(loaded.lm_head, weights.embed_tokens)       # tied again
    ids = np.arange(20)
    np.testing.assert_array_equal(GoldenModel(loaded).forward(ids), model.forward(ids))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"residual": 3}, "power of two"), ({"norm": 0}, "power of two"),
    ({"gate": 512}, "power of two"), ({"residual": True}, "power of two")])
def test_range_scales_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RangeScales(**kwargs)


def test_apply_rejects_misuse():
    weights = small_model()
    scaled = scaling.apply(weights, RangeScales(residual=4))
    with pytest.raises(ValueError, match="already rescaled"):
        scaling.apply(scaled, RangeScales(residual=4))
    silu = small_model(dataclasses.replace(CFG, hidden_act="silu"))
    with pytest.raises(ValueError, match="ReLU"):
        scaling.apply(silu, RangeScales(gate=2))
    big_eps = dataclasses.replace(weights, config=dataclasses.replace(CFG, rms_norm_eps=1e-2))
    with pytest.raises(ValueError, match="epsilon"):
        scaling.apply(big_eps, RangeScales(residual=16))
