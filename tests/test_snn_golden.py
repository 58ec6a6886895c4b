# SPDX-License-Identifier: BSD-3-Clause
"""golden.bessel against scipy.signal, golden.snn against snnTorch's LIF semantics."""

import os

import numpy as np
import pytest

from ternedge.golden import bessel, snn

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

signal = pytest.importorskip("scipy.signal")

#: Stated tolerance of the fixed-point filter against float scipy: 3 LSB of Q16
TOL_LSB = 3


def seeded(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def velocity_like(rng, n):
    """A smooth random walk plus noise, Q16, magnitudes like decoded velocity (< 4 units)."""
    x = np.cumsum(rng.normal(size=(n, 2)), axis=0) * 0.05 + rng.normal(size=(n, 2)) * 0.3
    return np.floor(x * 65536 + 0.5).astype(np.int64)


def test_default_design_is_scipy_bessel():
    np.testing.assert_allclose(bessel.design(), signal.bessel(4, 0.05, output="sos"),
                               rtol=1e-12, atol=0)
    coefs = bessel.quantize()
    b, a = signal.bessel(4, 0.05)
    ours_b, ours_a = signal.sos2tf(coefs.as_sos())
    np.testing.assert_allclose(ours_a, a, atol=4e-6)
    assert abs(ours_b.sum() / ours_a.sum() - 1) < 1e-12          # exact unity DC gain
    assert np.all(4 * coefs.g == (1 << bessel.COEF_FRAC) + coefs.a1 + coefs.a2)


def test_causal_matches_scipy_lfilter():
    rng = seeded(1)
    x = velocity_like(rng, 3000)
    b, a = signal.bessel(4, 0.05)
    ref = signal.lfilter(b, a, x / 65536, axis=0)
    got = bessel.lfilter(x) / 65536
    assert np.max(np.abs(got - ref)) <= TOL_LSB / 65536
    # the streaming form starts in the steady state of the first sample (sosfilt_zi * x0)
    sos = bessel.DEFAULT_SOS
    zi = np.einsum("ij,k->ijk", signal.sosfilt_zi(sos), x[0] / 65536)
    ref_ss = signal.sosfilt(sos, x / 65536, axis=0, zi=zi)[0]
    stream = bessel.CausalFilter()
    got_ss = np.array([stream.push(row) for row in x]) / 65536
    np.testing.assert_array_equal(got_ss * 65536, bessel.lfilter(x, zero_state=False))
    assert np.max(np.abs(got_ss - ref_ss)) <= TOL_LSB / 65536


@pytest.mark.parametrize("tap,index", [("last", 31), ("middle", 15)])
def test_block_matches_scipy_filtfilt(tap, index):
    rng = seeded(2)
    x = velocity_like(rng, 200)
    xf = x / 65536
    b, a = signal.bessel(4, 0.05)
    got = bessel.block_filter(x, tap=tap) / 65536
    delay = 31 - index
    for t in range(len(x)):
        end = min(t + delay, len(x) - 1)
        window = xf[max(0, end - 31):end + 1]
        if len(window) < 32:                               # history pre-filled with x[0]
            window = np.concatenate([np.repeat(xf[:1], 32 - len(window), 0), window])
        ref = signal.filtfilt(b, a, window, axis=0)        # padtype odd, padlen 15
        pos = 31 - (end - t)
        assert np.max(np.abs(got[t] - ref[pos])) <= TOL_LSB / 65536, (t, got[t], ref[pos])


def test_block_middle_streams_with_delay_and_flush():
    rng = seeded(3)
    x = velocity_like(rng, 40)
    f = bessel.BlockFilter(tap="middle")
    outs = [f.push(row) for row in x]
    assert all(o is None for o in outs[:16]) and all(o is not None for o in outs[16:])
    tail = f.flush()
    assert len(tail) == 16
    np.testing.assert_array_equal(np.array([o for o in outs if o is not None] + tail),
                                  bessel.block_filter(x, tap="middle"))


def test_filter_parameter_validation():
    with pytest.raises(ValueError, match="tap"):
        bessel.BlockFilter(tap="first")
    with pytest.raises(ValueError, match="window"):
        bessel.BlockFilter(window=15)
    with pytest.raises(ValueError, match="unity DC gain"):
        bessel.FilterCoefficients([1], [2], [3])
    with pytest.raises(ValueError, match="even"):
        bessel.design(order=3)


# -- LIF -------------------------------------------------------------------------------------

def test_lif_integer_semantics_match_snntorch_float():
    """With integer-valued float inputs and beta = 1/2 or 1 the float snnTorch Leaky is exact,
    so golden's integer update must agree with it bit for bit (delayed reset, strict >)."""
    torch = pytest.importorskip("torch")
    snntorch = pytest.importorskip("snntorch")
    rng = seeded(4)
    for reset, mech in (("subtract", "subtract"), ("zero", "zero"), ("none", "none")):
        for beta_f, steps in ((0.0, 40), (1.0, 40), (0.5, 12)):
            unit = 1 << 12                      # 12 halvings stay exact in both
            theta = 40 * unit
            layer = snn.Layer(weights=np.zeros((8, 1), np.int64), bias=np.zeros(8, np.int64),
                              beta=int(beta_f * (1 << snn.BETA_FRAC)), theta=theta,
                              reset=reset, frac=0)
            lif = snntorch.Leaky(beta=beta_f, threshold=float(theta), reset_mechanism=mech)
            u = np.zeros(8, np.int64)
            s = np.zeros(8, bool)
            mem = torch.zeros(8, dtype=torch.float64)
            for _ in range(steps):
                cur = rng.integers(-10, 40, size=8) * unit
                u, s = snn.lif_update(u, s, cur, layer)
                spk, mem = lif(torch.tensor(cur, dtype=torch.float64), mem)
                np.testing.assert_array_equal(u, mem.numpy().astype(np.int64))
                np.testing.assert_array_equal(s, spk.numpy() > 0)


def test_step_and_block_paths_agree():
    rng = seeded(5)
    layers = [snn.Layer(rng.integers(-127, 128, size=(n, k)), rng.integers(-9999, 9999, size=n),
                        int(rng.integers(0, 4097)), int(rng.integers(0, 60000)), reset, 15)
              for (k, n), reset in zip([(20, 9), (9, 7), (7, 2)], ["subtract", "zero", "none"],
                                       strict=True)]
    net = snn.Network(layers)
    bins = (rng.random((300, 20)) < 0.2).astype(np.uint8)
    state = snn.State.zeros(net)
    stepped = np.array([snn.step(net, state, b) for b in bins])
    block1, st = snn.run(net, bins[:123])
    block2, st = snn.run(net, bins[123:], st)
    np.testing.assert_array_equal(np.concatenate([block1, block2]), stepped)
    for a, b in zip(st.u, state.u, strict=False):
        np.testing.assert_array_equal(a, b)


def test_membrane_saturates_at_24_bits():
    layer = snn.Layer(np.full((1, 4), 127), np.array([(1 << 23) - 1]), 4096, (1 << 23) - 1,
                      "none", 8)
    u, _ = snn.lif_update(np.array([(1 << 23) - 1]), np.array([False]), np.array([1 << 20]),
                          layer)
    assert u[0] == (1 << 23) - 1


def test_layer_validation():
    with pytest.raises(ValueError, match="weights"):
        snn.Layer(np.full((2, 2), 200), np.zeros(2), 10, 10, "none", 8)
    with pytest.raises(ValueError, match="reset"):
        snn.Layer(np.zeros((2, 2)), np.zeros(2), 10, 10, "hard", 8)
    with pytest.raises(ValueError, match="chain"):
        snn.Network([snn.Layer(np.zeros((3, 2)), np.zeros(3), 1, 1, "none", 8),
                     snn.Layer(np.zeros((3, 2)), np.zeros(3), 1, 1, "none", 8)])
