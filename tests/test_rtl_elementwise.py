# SPDX-License-Identifier: BSD-3-Clause
"""rtl.elementwise on Amaranth's simulator vs golden.ops, under random valid/ready stalls on
every stream, plus exact stall-free cycle counts."""

import numpy as np
import pytest
from rtl_streams import beats, get, pack, put, seeded, simulate, unpack_signed

from ternedge.golden import fixed, ops
from ternedge.rtl import elementwise

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def unpack_tokens(words, lanes, tokens):
    return np.array([unpack_signed(w, 32, lanes) for w in words]).reshape(tokens, -1)


def test_parameter_validation():
    with pytest.raises(ValueError, match="max_h=10 must be a multiple of lanes=4"):
        elementwise.RMSNorm(lanes=4, max_h=10)
    with pytest.raises(ValueError, match="eps must be at most 2..32"):
        elementwise.RMSNorm(eps=(1 << 32) + 1)
    with pytest.raises(ValueError, match="head_dim=12 must be a multiple of 2.lanes=8"):
        elementwise.RoPE(lanes=4, head_dim=12)
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        elementwise.Pointwise(lanes=-1)
    with pytest.raises(ValueError, match="h=6 must be a multiple of lanes=4"):
        elementwise.RMSNorm(lanes=4, max_h=16).cycles(1, 6)


# -- RMSNorm --------------------------------------------------------------------------------

def run_rmsnorm(dut, x, gamma, rng, p_valid, p_ready):
    lanes = dut.lanes
    tokens, h = x.shape
    out = {"y": [], "first": None, "last": None}

    async def x_driver(ctx):
        for token in x:
            for beat in beats(token, lanes, 32):
                cycle = await put(ctx, dut.x, beat, rng, p_valid)
                if out["first"] is None:
                    out["first"] = cycle

    async def gamma_driver(ctx):
        for _ in range(tokens):
            for i in range(h // lanes):
                await put(ctx, dut.gamma, pack(gamma[i * lanes:(i + 1) * lanes], 32), rng,
                          p_valid)

    async def monitor(ctx):
        for _ in range(tokens * (h // lanes)):
            word, cycle = await get(ctx, dut.y, rng, p_ready)
            out["y"].append(word)
            out["last"] = cycle

    simulate(dut, [x_driver, gamma_driver, monitor])
    lasts = [(w >> (32 * lanes)) & 1 for w in out["y"]]
    assert lasts == ([0] * (h // lanes - 1) + [1]) * tokens
    return unpack_tokens(out["y"], lanes, tokens), out["last"] - out["first"] + 1


def rms_job(rng, tokens, h):
    x = rng.integers(-(1 << 22), 1 << 22, size=(tokens, h)) >> rng.integers(0, 22, (tokens, 1))
    x[0, :2] = [fixed.INT32_MIN, fixed.INT32_MAX]
    if tokens > 1:
        x[1] = 0
    gamma = rng.integers(-(1 << 18), 1 << 18, size=h)
    gamma[:2] = [fixed.INT32_MAX, fixed.INT32_MIN]
    return x, gamma


@pytest.mark.parametrize("lanes,h", [(4, 16), (2, 6)])
def test_rmsnorm_random_stalls(lanes, h):
    seed = 10 * lanes + h
    rng = seeded(seed)
    x, gamma = rms_job(rng, 4, h)
    eps = ops.rms_eps(1e-5)
    dut = elementwise.RMSNorm(lanes=lanes, max_h=16, eps=eps)
    y, _ = run_rmsnorm(dut, x, gamma, rng, p_valid=0.6, p_ready=0.5)
    np.testing.assert_array_equal(y, ops.rmsnorm(x, gamma, eps), err_msg=f"seed={seed}")


def test_rmsnorm_cycles_exact():
    rng = seeded(33)
    x, gamma = rms_job(rng, 2, 8)
    dut = elementwise.RMSNorm(lanes=4, max_h=16, eps=7)
    y, cycles = run_rmsnorm(dut, x, gamma, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, ops.rmsnorm(x, gamma, 7))
    assert dut.cycles(2, 8) == cycles


# -- RoPE -----------------------------------------------------------------------------------

def run_rope(dut, x, positions, cos, sin, rng, p_valid, p_ready):
    lanes, half = dut.lanes, dut.head_dim // 2
    tokens, heads, head_dim = x.shape
    flat = x.reshape(-1, head_dim)
    out = {"y": [], "first": None, "last": None}

    async def x_driver(ctx):
        for head in flat:
            for i in range(head_dim // lanes):
                cycle = await put(ctx, dut.x, pack(head[i * lanes:(i + 1) * lanes], 32), rng,
                                  p_valid)
                if out["first"] is None:
                    out["first"] = cycle

    async def table_driver(ctx):
        for t in range(tokens):
            for _ in range(heads):
                row_c, row_s = cos[positions[t]], sin[positions[t]]
                for i in range(half // lanes):
                    word = (pack(row_c[i * lanes:(i + 1) * lanes], 18)
                            | (pack(row_s[i * lanes:(i + 1) * lanes], 18) << (18 * lanes)))
                    await put(ctx, dut.table, word, rng, p_valid)

    async def monitor(ctx):
        for _ in range(flat.size // lanes):
            word, cycle = await get(ctx, dut.y, rng, p_ready)
            out["y"].append(word)
            out["last"] = cycle

    simulate(dut, [x_driver, table_driver, monitor])
    y = unpack_tokens(out["y"], lanes, flat.shape[0]).reshape(x.shape)
    return y, out["last"] - out["first"] + 1


def rope_job(rng, tokens, heads, head_dim):
    x = rng.integers(fixed.INT32_MIN, fixed.INT32_MAX, size=(tokens, heads, head_dim),
                     endpoint=True) >> rng.integers(0, 16, (tokens, heads, 1))
    x[0, 0, :2] = [fixed.INT32_MIN, fixed.INT32_MAX]
    cos, sin = ops.rope_tables(64, head_dim, 10000.0)
    positions = rng.integers(0, 64, size=tokens)
    return x, positions, cos, sin


@pytest.mark.parametrize("lanes,head_dim", [(2, 8), (1, 6)])
def test_rope_random_stalls(lanes, head_dim):
    seed = 50 + lanes * head_dim
    rng = seeded(seed)
    x, positions, cos, sin = rope_job(rng, 3, 2, head_dim)
    dut = elementwise.RoPE(lanes=lanes, head_dim=head_dim)
    y, _ = run_rope(dut, x, positions, cos, sin, rng, p_valid=0.6, p_ready=0.5)
    np.testing.assert_array_equal(y, ops.rope(x, positions, cos, sin), err_msg=f"seed={seed}")


def test_rope_cycles_exact():
    rng = seeded(61)
    x, positions, cos, sin = rope_job(rng, 2, 2, 16)
    dut = elementwise.RoPE(lanes=4, head_dim=16)
    y, cycles = run_rope(dut, x, positions, cos, sin, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, ops.rope(x, positions, cos, sin))
    assert dut.cycles(4) == cycles


# -- Pointwise ------------------------------------------------------------------------------

def run_pointwise(dut, ops_per_beat, a, b, rng, p_valid, p_ready):
    lanes = dut.lanes
    n = len(ops_per_beat)
    out = {"y": [], "first": None, "last": None}

    async def driver(ctx):
        for i, op in enumerate(ops_per_beat):
            word = (op.value | (pack(a[i * lanes:(i + 1) * lanes], 32) << 2)
                    | (pack(b[i * lanes:(i + 1) * lanes], 32) << (2 + 32 * lanes)))
            cycle = await put(ctx, dut.i, word, rng, p_valid)
            if out["first"] is None:
                out["first"] = cycle

    async def monitor(ctx):
        for _ in range(n):
            word, cycle = await get(ctx, dut.o, rng, p_ready)
            out["y"].append(word)
            out["last"] = cycle

    simulate(dut, [driver, monitor])
    return unpack_tokens(out["y"], lanes, 1)[0], out["last"] - out["first"] + 1


def pointwise_reference(ops_per_beat, a, b, lanes):
    golden = {elementwise.PointwiseOp.ADD: ops.residual_add,
              elementwise.PointwiseOp.RELU2_GATE: ops.relu2_gate,
              elementwise.PointwiseOp.SILU_GATE: ops.silu_gate}
    return np.concatenate([golden[op](a[i * lanes:(i + 1) * lanes], b[i * lanes:(i + 1) * lanes])
                           for i, op in enumerate(ops_per_beat)])


def pointwise_job(rng, n_beats, lanes, choices=tuple(elementwise.PointwiseOp)):
    n = n_beats * lanes
    a = rng.integers(-(1 << 21), 1 << 21, size=n) >> rng.integers(0, 12, size=n)
    b = rng.integers(-(1 << 24), 1 << 24, size=n) >> rng.integers(0, 12, size=n)
    edges = min(4, n)                          # extreme operands first, as many as fit
    a[:edges] = [fixed.INT32_MAX, fixed.INT32_MIN, 0, -(300 << 16)][:edges]
    b[:edges] = [fixed.INT32_MAX, fixed.INT32_MIN, fixed.INT32_MAX, 1 << 16][:edges]
    choices = list(choices)
    ops_per_beat = [choices[int(i)] for i in rng.integers(0, len(choices), n_beats)]
    ops_per_beat[:len(choices)] = choices[:n_beats]    # every op early, length unchanged
    return ops_per_beat, a, b


def test_pointwise_random_stalls():
    seed = 71
    rng = seeded(seed)
    lanes = 4
    ops_per_beat, a, b = pointwise_job(rng, 30, lanes)
    dut = elementwise.Pointwise(lanes=lanes)
    y, _ = run_pointwise(dut, ops_per_beat, a, b, rng, p_valid=0.6, p_ready=0.5)
    np.testing.assert_array_equal(y, pointwise_reference(ops_per_beat, a, b, lanes),
                                  err_msg=f"seed={seed}")


@pytest.mark.parametrize("beats", [1, 2, 6])
def test_pointwise_cycles_exact(beats):
    rng = seeded(72)
    ops_per_beat, a, b = pointwise_job(rng, beats, 2)
    dut = elementwise.Pointwise(lanes=2)
    y, cycles = run_pointwise(dut, ops_per_beat, a, b, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, pointwise_reference(ops_per_beat, a, b, 2))
    assert dut.cycles(beats) == cycles


@pytest.mark.parametrize("gate", [None, elementwise.PointwiseOp.RELU2_GATE,
                                  elementwise.PointwiseOp.SILU_GATE])
def test_pointwise_latency_is_the_longest_built_op(gate):
    """A board build keeps its model's gate alone: the unit's latency is then that gate's (or
    the add's), every op delayed to it, bit-exact under stalls and cycle-exact without."""
    Op = elementwise.PointwiseOp
    ops = (Op.ADD,) if gate is None else (Op.ADD, gate)
    dut = elementwise.Pointwise(lanes=2, ops=ops)
    assert dut.latency == {None: 5, Op.RELU2_GATE: 17, Op.SILU_GATE: 47}[gate]
    rng = seeded(74)
    ops_per_beat, a, b = pointwise_job(rng, 12, 2, ops)
    y, _ = run_pointwise(dut, ops_per_beat, a, b, rng, p_valid=0.6, p_ready=0.5)
    np.testing.assert_array_equal(y, pointwise_reference(ops_per_beat, a, b, 2))
    dut = elementwise.Pointwise(lanes=2, ops=ops)
    y, cycles = run_pointwise(dut, ops_per_beat[:3], a[:6], b[:6], rng, p_valid=1.0,
                              p_ready=1.0)
    np.testing.assert_array_equal(y, pointwise_reference(ops_per_beat[:3], a[:6], b[:6], 2))
    assert dut.cycles(3) == cycles


def test_pointwise_gate_edges():
    """Gate operands around every boundary the pipeline has: exp_neg's clamp (|a| = 2**20)
    and its zero (12.0), a = 0 (the sigmoid's e = 2**16), int32 extremes, products that
    saturate; one op per beat, all three, under stalls."""
    seed = 73
    rng = seeded(seed)
    lanes = 4
    specials = [0, 1, -1, 1 << 20, -(1 << 20), (1 << 20) + 1, -(1 << 20) - 1, (1 << 20) - 1,
                12 << 16, -(12 << 16), (11 << 16) + 0xFFFF, -(11 << 16) - 0xFFFF,
                fixed.INT32_MAX, fixed.INT32_MIN, 46341 << 8, -(46341 << 8)]
    a = np.array(specials + list(rng.integers(-(20 << 16), 20 << 16, size=44)))
    b = np.array([fixed.INT32_MAX, fixed.INT32_MIN, 1 << 16, -(1 << 16)] * 15)
    b[16:] = rng.integers(fixed.INT32_MIN, fixed.INT32_MAX, size=44) >> rng.integers(0, 24, 44)
    a, b = np.concatenate([a, a, a]), np.concatenate([b, b, b])
    n_beats = len(a) // lanes
    ops_per_beat = [list(elementwise.PointwiseOp)[i * 3 // n_beats] for i in range(n_beats)]
    dut = elementwise.Pointwise(lanes=lanes)
    y, _ = run_pointwise(dut, ops_per_beat, a, b, rng, p_valid=0.8, p_ready=0.7)
    np.testing.assert_array_equal(y, pointwise_reference(ops_per_beat, a, b, lanes),
                                  err_msg=f"seed={seed}")


def test_rmsnorm_mini_geometry_shifts():
    """max_h 128 (the ``mini`` model): tokens whose sum of squares needs no shift, an even
    and an odd excess over 45 bits, all-extreme rows, and a small row after a huge one (the
    accumulators' chunks restart), under stalls."""
    seed = 57
    rng = seeded(seed)
    h = 128
    x = rng.integers(-(1 << 20), 1 << 20, size=(6, h)) >> np.arange(6)[:, None] * 3
    x[1] = np.where(rng.random(h) < 0.5, fixed.INT32_MAX, fixed.INT32_MIN)
    x[2] = rng.integers(-(1 << 12), 1 << 12, size=h)
    x[3, :] = 0
    x[3, 5] = 1 << 23                              # bit_length(S) = 47: an even excess, 2
    x[4, :] = 0
    x[4, 7] = 3 << 22                              # ... 48: an odd excess, 3, made 4
    gamma = rng.integers(-(1 << 18), 1 << 18, size=h)
    eps = ops.rms_eps(1e-5)
    dut = elementwise.RMSNorm(lanes=4, max_h=h, eps=eps)
    y, _ = run_rmsnorm(dut, x, gamma, rng, p_valid=0.8, p_ready=0.7)
    np.testing.assert_array_equal(y, ops.rmsnorm(x, gamma, eps), err_msg=f"seed={seed}")


def test_rope_saturating_extremes():
    """int32 extremes against the 18-bit table's extremes (both rotations saturate at both
    ends), the mini head (head_dim 32), under stalls."""
    seed = 62
    rng = seeded(seed)
    tokens, heads, head_dim = 3, 2, 32
    x = np.where(rng.random((tokens, heads, head_dim)) < 0.5, fixed.INT32_MAX, fixed.INT32_MIN)
    x[1] = rng.integers(fixed.INT32_MIN, fixed.INT32_MAX, size=(heads, head_dim))
    positions = np.arange(tokens)
    limit = 1 << 17
    cos = rng.integers(-limit, limit, size=(tokens, head_dim // 2))
    sin = rng.integers(-limit, limit, size=(tokens, head_dim // 2))
    cos[0], sin[0] = limit - 1, -limit
    dut = elementwise.RoPE(lanes=4, head_dim=head_dim)
    y, _ = run_rope(dut, x, positions, cos, sin, rng, p_valid=0.7, p_ready=0.6)
    expected = ops.rope(x, positions, cos, sin)
    assert (expected == fixed.INT32_MAX).any() and (expected == fixed.INT32_MIN).any()
    np.testing.assert_array_equal(y, expected, err_msg=f"seed={seed}")
