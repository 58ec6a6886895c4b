# SPDX-License-Identifier: BSD-3-Clause
"""rtl.quant and rtl.arith on Amaranth's simulator vs golden.quant / golden.fixed, under random
valid/ready stalls on every stream, plus exact stall-free cycle counts."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator
from rtl_streams import beats, get, pack, put, seeded, simulate, unpack_signed

from ternedge.golden import fixed
from ternedge.golden import quant as golden
from ternedge.rtl import arith, quant

# constructors that raise leave a half-built Elaboratable behind; that is the point of the test
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def random_tokens(rng, tokens, k):
    """Q16 tokens with a spread of magnitudes, exact ties, int32 extremes and zero tokens."""
    x = rng.integers(-(1 << 20), 1 << 20, size=(tokens, k)) >> rng.integers(0, 20, (tokens, 1))
    x[0, :2] = [fixed.INT32_MIN, fixed.INT32_MAX][:k]
    if tokens > 2:
        x[1] = 0
        x[2] = rng.choice([-254, -127, 0, 127, 254], size=k)  # ties of 127 x / amax
    return x


# -- arith ----------------------------------------------------------------------------------

def test_arith_sequential_and_exp():
    rng = seeded(7)
    top = Module()
    top.submodules.ratio = ratio = arith.RatioScale(num_width=44, den_width=44)
    top.submodules.isqrt = isqrt = arith.Isqrt(width=64)
    x = Signal(signed(34))
    e = arith.exp_neg(top, x)
    nums = np.concatenate([rng.integers(1, 1 << 44, 30), rng.integers(1, 300, 20), [1 << 16, 1]])
    dens = np.concatenate([rng.integers(1, 1 << 44, 30), [127] * 20, [1, (1 << 44) - 1]])
    radicands = np.concatenate([rng.integers(0, 1 << 62, 30), [0, 1, 3, 4, (1 << 62) - 1]])
    xs = np.concatenate([-rng.integers(0, 1 << 26, 200), [0, -1, -(256 << 16), -(1 << 33)]])
    got = {"m": [], "e": [], "root": [], "exp": []}

    async def bench(ctx):
        for a, b in zip(nums, dens, strict=True):
            ctx.set(ratio.i.payload.num, int(a))
            ctx.set(ratio.i.payload.den, int(b))
            ctx.set(ratio.i.valid, 1)
            await ctx.tick().until(ratio.i.ready)
            ctx.set(ratio.i.valid, 0)
            ctx.set(ratio.o.ready, 1)
            mm, ee = await ctx.tick().sample(ratio.o.payload.m, ratio.o.payload.e).until(
                ratio.o.valid)
            got["m"].append(mm)
            got["e"].append(ee)
        for v in radicands:
            ctx.set(isqrt.i.payload, int(v))
            ctx.set(isqrt.i.valid, 1)
            await ctx.tick().until(isqrt.i.ready)
            ctx.set(isqrt.i.valid, 0)
            ctx.set(isqrt.o.ready, 1)
            (root,) = await ctx.tick().sample(isqrt.o.payload).until(isqrt.o.valid)
            got["root"].append(root)
        for v in xs:
            ctx.set(x, int(v))
            got["exp"].append(ctx.get(e))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    m_ref, e_ref = fixed.ratio_scale(nums, dens)
    np.testing.assert_array_equal(got["m"], m_ref)
    np.testing.assert_array_equal(got["e"], e_ref)
    np.testing.assert_array_equal(got["root"], fixed.isqrt(radicands))
    np.testing.assert_array_equal(got["exp"], fixed.exp_neg(xs))


def test_parameter_validation():
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        quant.Quantizer(lanes=0)
    with pytest.raises(ValueError, match="max_k must be a positive integer"):
        quant.Quantizer(max_k=True)
    with pytest.raises(ValueError, match="acc_width must be at most 32"):
        quant.Dequantizer(acc_width=40)
    with pytest.raises(ValueError, match="k=65 exceeds"):
        quant.Quantizer(max_k=64).cycles(1, 65)
    with pytest.raises(ValueError, match="num_width must be at most 44"):
        arith.RatioScale(num_width=45, den_width=8)


# -- Quantizer ------------------------------------------------------------------------------

def run_quantizer(dut, x, rng, p_valid, p_ready):
    lanes = dut.lanes
    n_beats = -(-x.shape[1] // lanes)
    out = {"q": [], "amax": [], "first": None, "last": None}

    async def driver(ctx):
        for token in x:
            for beat in beats(token, lanes, 32):
                cycle = await put(ctx, dut.x, beat, rng, p_valid)
                if out["first"] is None:
                    out["first"] = cycle

    async def q_monitor(ctx):
        for _ in range(x.shape[0] * n_beats):
            word, cycle = await get(ctx, dut.q, rng, p_ready)
            out["q"].append(word)
            out["last"] = cycle

    async def amax_monitor(ctx):
        for _ in range(x.shape[0]):
            word, _ = await get(ctx, dut.amax, rng, p_ready)
            out["amax"].append(word)

    simulate(dut, [driver, q_monitor, amax_monitor])
    words = out["q"]
    lasts = [(w >> (8 * lanes)) & 1 for w in words]
    assert lasts == ([0] * (n_beats - 1) + [1]) * x.shape[0]
    q = np.array([unpack_signed(w, 8, lanes) for w in words]).reshape(x.shape[0], -1)
    return q[:, :x.shape[1]], np.array(out["amax"]), out["last"] - out["first"] + 1


@pytest.mark.parametrize("lanes,k", [(4, 24), (3, 10)])
def test_quantizer_random_stalls(lanes, k):
    seed = 100 + lanes
    rng = seeded(seed)
    x = random_tokens(rng, 5, k)
    dut = quant.Quantizer(lanes=lanes, max_k=32)
    q, amax, _ = run_quantizer(dut, x, rng, p_valid=0.6, p_ready=0.5)
    q_ref, amax_ref = golden.quantize_activations(x)
    np.testing.assert_array_equal(q, q_ref, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(amax, amax_ref, err_msg=f"seed={seed}")


@pytest.mark.parametrize("tokens,k", [(1, 8), (3, 16)])
def test_quantizer_cycles_exact(tokens, k):
    rng = seeded(200 + k)
    x = random_tokens(rng, tokens, k)
    dut = quant.Quantizer(lanes=4, max_k=16)
    q, _, cycles = run_quantizer(dut, x, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(q, golden.quantize_activations(x)[0])
    assert dut.cycles(tokens, k) == cycles


# -- Dequantizer ----------------------------------------------------------------------------

def run_dequantizer(dut, acc, amax, w_scale, rng, p_valid, p_ready):
    lanes, width = dut.lanes, dut.acc_width
    n_beats = -(-acc.shape[1] // lanes)
    out = {"y": [], "first": None, "last": None}
    m_w, e_w = w_scale

    async def scale_driver(ctx):
        for a in amax:
            cycle = await put(ctx, dut.scale, pack([int(a)], 32) | (m_w << 32)
                              | ((e_w & 0xFF) << 48), rng, p_valid)
            if out["first"] is None:
                out["first"] = cycle

    async def acc_driver(ctx):
        for token in acc:
            for beat in beats(token, lanes, width):
                await put(ctx, dut.acc, beat, rng, p_valid)

    async def monitor(ctx):
        for _ in range(acc.shape[0] * n_beats):
            word, cycle = await get(ctx, dut.y, rng, p_ready)
            out["y"].append(word)
            out["last"] = cycle

    simulate(dut, [scale_driver, acc_driver, monitor])
    y = np.array([unpack_signed(w, 32, lanes) for w in out["y"]]).reshape(acc.shape[0], -1)
    return y[:, :acc.shape[1]], out["last"] - out["first"] + 1


def random_dequant_job(rng, tokens, n, acc_width):
    limit = 1 << (acc_width - 1)
    acc = rng.integers(-limit, limit, size=(tokens, n)) >> rng.integers(0, 12, (tokens, 1))
    acc[0, :2] = [-limit, limit - 1]
    amax = rng.integers(1, 1 << 31, size=tokens) >> rng.integers(0, 30, tokens)
    amax[-1] = 0
    amax[0] = 1 << 31
    return acc, amax


@pytest.mark.parametrize("scale", [0.0123, 1.7, 350.0])
def test_dequantizer_random_stalls(scale):
    seed = int(scale * 1000)
    rng = seeded(seed)
    dut = quant.Dequantizer(lanes=3, acc_width=24)
    acc, amax = random_dequant_job(rng, 4, 7, 24)
    w_scale = golden.weight_scale(scale)
    y, _ = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=0.6, p_ready=0.5)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale), err_msg=f"seed={seed}")


def test_dequantizer_cycles_exact():
    rng = seeded(300)
    dut = quant.Dequantizer(lanes=4, acc_width=20)
    acc, amax = random_dequant_job(rng, 3, 16, 20)
    w_scale = golden.weight_scale(0.05)
    y, cycles = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale))
    assert dut.cycles(3, 16) == cycles


def boundary_tokens(amax_values, max_k):
    """Tokens that hold every ``|x| <= amax`` of a small ``amax`` (both signs), or for a large
    one the two values either side of each rounding boundary ``127 |x| / amax = k + 1/2``
    (and 0, amax), each token led by ``amax`` itself (``-amax`` for ``2**31``)."""
    tokens = []
    for a in amax_values:
        if 2 * a + 1 <= max_k - 1:
            mags = np.arange(0, a + 1)
        else:
            edges = -(-(2 * np.arange(127) + 1) * a // 254)          # ceil((2k + 1) a / 254)
            mags = np.unique(np.clip(np.concatenate([edges - 1, edges, [0, a]]), 0, a))
        values = np.concatenate([mags, -mags])
        lead = -a if a == 1 << 31 else a
        values = values[np.abs(values) <= (1 << 31) - (values > 0)]   # int32 range
        for start in range(0, len(values), max_k - 1):
            tokens.append(np.concatenate([[lead], values[start:start + max_k - 1]]))
    k = max(len(t) for t in tokens)
    return np.array([np.pad(t, (0, k - len(t))) for t in tokens], dtype=np.int64)


def test_quantizer_boundaries_exact():
    """The pipelined divider against golden at every rounding boundary: exhaustively for
    small amax, either side of all 127 boundaries for large ones, the int32 extremes."""
    rng = seeded(150)
    amax_values = [1, 2, 3, 127, 128, 254, 255, 256, 1000, 65536, 123457, (1 << 24) + 1,
                   (1 << 31) - 1, 1 << 31]
    max_k = 520
    x = boundary_tokens(amax_values, max_k)
    dut = quant.Quantizer(lanes=4, max_k=max_k)
    q, amax, _ = run_quantizer(dut, x, rng, p_valid=0.9, p_ready=0.8)
    q_ref, amax_ref = golden.quantize_activations(x)
    np.testing.assert_array_equal(amax, amax_ref)
    np.testing.assert_array_equal(q, q_ref)


@pytest.mark.parametrize("lanes,k", [(1, 1), (2, 2), (4, 3), (5, 11), (8, 8)])
def test_quantizer_short_tokens_random_stalls(lanes, k):
    """One- and few-beat tokens back to back: a token's amax waits for the previous token's
    reads to pass the stage that uses it, whatever the stalls."""
    seed = 400 + 10 * lanes + k
    rng = seeded(seed)
    x = random_tokens(rng, 12, k)
    dut = quant.Quantizer(lanes=lanes, max_k=16)
    for p_valid, p_ready in ((0.7, 0.3), (1.0, 0.6)):
        q, amax, _ = run_quantizer(dut, x, rng, p_valid=p_valid, p_ready=p_ready)
        q_ref, amax_ref = golden.quantize_activations(x)
        np.testing.assert_array_equal(q, q_ref, err_msg=f"seed={seed}")
        np.testing.assert_array_equal(amax, amax_ref, err_msg=f"seed={seed}")


@pytest.mark.parametrize("lanes,tokens,k", [(1, 3, 1), (2, 4, 3), (3, 2, 7), (8, 3, 16)])
def test_quantizer_cycles_exact_lanes(lanes, tokens, k):
    rng = seeded(500 + lanes)
    x = random_tokens(rng, tokens, k)
    dut = quant.Quantizer(lanes=lanes, max_k=16)
    q, _, cycles = run_quantizer(dut, x, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(q, golden.quantize_activations(x)[0])
    assert dut.cycles(tokens, k) == cycles


def run_quantizer_stamped(dut, x, rng, p_valid, p_ready, p_amax):
    """Like ``run_quantizer``, the amax consumer stalled on its own (``p_amax``); every
    handshake's cycle: input beats, output beats, amax beats."""
    lanes = dut.lanes
    n_beats = -(-x.shape[1] // lanes)
    out = {"q": [], "amax": [], "x_at": [], "q_at": [], "amax_at": []}

    async def driver(ctx):
        for token in x:
            for beat in beats(token, lanes, 32):
                out["x_at"].append(await put(ctx, dut.x, beat, rng, p_valid))

    async def q_monitor(ctx):
        for _ in range(x.shape[0] * n_beats):
            word, cycle = await get(ctx, dut.q, rng, p_ready)
            out["q"].append(word)
            out["q_at"].append(cycle)

    async def amax_monitor(ctx):
        for _ in range(x.shape[0]):
            word, cycle = await get(ctx, dut.amax, rng, p_amax)
            out["amax"].append(word)
            out["amax_at"].append(cycle)

    simulate(dut, [driver, q_monitor, amax_monitor])
    q = np.array([unpack_signed(w, 8, lanes) for w in out["q"]]).reshape(x.shape[0], -1)
    stamps = {key: np.array(out[key]) for key in ("x_at", "q_at", "amax_at")}
    return q[:, :x.shape[1]], np.array(out["amax"]), stamps


@pytest.mark.parametrize("lanes,k,p_amax", [(4, 24, 0.15), (3, 7, 0.5), (4, 4, 1.0)])
def test_quantizer_back_to_back_rows_ping_pong(lanes, k, p_amax):
    """Back-to-back rows through the two banks under random stalls on all three streams (the
    amax consumer on its own): bit-exact; a token's first INT8 beat comes no earlier than
    ``latency`` cycles after its amax is taken (pass 2 starts then), and the next token's
    beats are taken before that (pass 1 of the next token overlaps pass 2)."""
    seed = 600 + 10 * lanes + k
    rng = seeded(seed)
    tokens = 10
    x = random_tokens(rng, tokens, k)
    dut = quant.Quantizer(lanes=lanes, max_k=32)
    q, amax, at = run_quantizer_stamped(dut, x, rng, p_valid=0.8, p_ready=0.7, p_amax=p_amax)
    q_ref, amax_ref = golden.quantize_activations(x)
    np.testing.assert_array_equal(q, q_ref, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(amax, amax_ref, err_msg=f"seed={seed}")
    b = -(-k // lanes)
    first_q = at["q_at"][::b]
    assert (first_q >= at["amax_at"] + dut.latency).all(), f"seed={seed}"
    # token t + 1's first beat went in before token t's amax was taken (a one-bank buffer
    # takes the next token only after that)
    assert (at["x_at"][b::b] < at["amax_at"][:-1]).any(), f"seed={seed}"


@pytest.mark.parametrize("lanes,k", [(4, 16), (4, 1), (2, 9), (5, 40)])
def test_quantizer_back_to_back_cycles_equal_model(lanes, k):
    """Stall-free streams of 1 to 9 tokens: the cycles equal ``sim.units.Quantizer``'s, each
    token's pass 2 starts as soon as its amax is known and the token before is read out, and
    the passes overlap (well under one token's two passes a token)."""
    from ternedge.sim import units

    rng = seeded(700 + 10 * lanes + k)
    dut = quant.Quantizer(lanes=lanes, max_k=40)
    model = units.Quantizer(lanes=lanes, max_k=40)
    b = -(-k // lanes)
    for tokens in (1, 2, 3, 4, 9):
        x = random_tokens(rng, tokens, k)
        q, _, at = run_quantizer_stamped(dut, x, rng, p_valid=1.0, p_ready=1.0, p_amax=1.0)
        np.testing.assert_array_equal(q, golden.quantize_activations(x)[0])
        cycles = at["q_at"][-1] - at["x_at"][0] + 1
        assert cycles == model.cycles(tokens, k) == dut.cycles(tokens, k), tokens
        np.testing.assert_array_equal(at["q_at"][::b], at["amax_at"] + dut.latency)
        if tokens == 9 and b > 4:
            assert cycles < 9 * (b + 2) + 2 * b + dut.latency < 9 * 2 * b


def test_dequantizer_shift_extremes():
    """Left shifts into saturation and long right shifts (the weight exponent from -22 to
    41), for every amax normalization: accumulators of +-1 where golden's int64 left shift
    would overflow on larger ones."""
    rng = seeded(310)
    dut = quant.Dequantizer(lanes=4, acc_width=24)
    amax = np.array([1 << 31, (1 << 31) - 1, 1 << 16, 127, 1, 0, 3 << 20, 5])
    for e_w in (-22, -12, -6, 0, 20, 30, 41):
        w_scale = (int(rng.integers(1 << 15, 1 << 16)), e_w)
        if e_w < 0:
            acc = rng.integers(-1, 2, size=(len(amax), 8))
        else:
            acc = rng.integers(-(1 << 23), 1 << 23, size=(len(amax), 8))
            acc[:, 0] = [-(1 << 23), (1 << 23) - 1, 1, -1, 0, 2, -2, 3]
        shifts = (golden.activation_scale(amax)[1] + e_w - fixed.FRAC)[amax > 0]
        assert -31 <= shifts.min() and shifts.max() <= 63, shifts
        y, _ = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=0.8, p_ready=0.7)
        np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale),
                                      err_msg=f"e_w={e_w}")


@pytest.mark.parametrize("lanes,acc_width,tokens,n", [(1, 12, 2, 3), (3, 18, 2, 7),
                                                      (4, 32, 3, 8)])
def test_dequantizer_cycles_exact_shapes(lanes, acc_width, tokens, n):
    rng = seeded(320 + acc_width)
    dut = quant.Dequantizer(lanes=lanes, acc_width=acc_width)
    acc, amax = random_dequant_job(rng, tokens, n, acc_width)
    w_scale = golden.weight_scale(0.3)
    y, cycles = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale))
    assert dut.cycles(tokens, n) == cycles


@pytest.mark.parametrize("lanes,n", [(1, 40), (4, 100), (2, 41), (4, 8)])
def test_dequantizer_next_scale_overlaps_the_token(lanes, n):
    """The next token's scale is taken while this token's accumulators stream (its setup
    overlaps them): stall-free cycles equal ``sim.units.Dequantizer``'s for tokens longer and
    shorter than the setup, and bit-exact under stalls with scales offered early."""
    from ternedge.sim import units

    rng = seeded(340 + 10 * lanes + n)
    dut = quant.Dequantizer(lanes=lanes, acc_width=24)
    acc, amax = random_dequant_job(rng, 4, n, 24)
    w_scale = golden.weight_scale(0.7)
    y, cycles = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale))
    model = units.Dequantizer(lanes=lanes, acc_width=24)
    assert cycles == dut.cycles(4, n) == model.cycles(4, n)
    b = -(-n // lanes)
    if b > dut.setup_cycles:                     # the setups hide behind the tokens
        assert cycles < 4 * (dut.setup_cycles + b)
    y, _ = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=0.7, p_ready=0.6)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale))


def test_dequantizer_slow_consumer():
    """Outputs taken rarely: the next token's Scale is ready while the previous token's
    beats still fill the pipeline, and must wait for them."""
    rng = seeded(330)
    dut = quant.Dequantizer(lanes=4, acc_width=24)
    acc, amax = random_dequant_job(rng, 4, 30, 24)        # 8 beats: more than the pipeline
    w_scale = golden.weight_scale(1.7)
    y, _ = run_dequantizer(dut, acc, amax, w_scale, rng, p_valid=1.0, p_ready=0.03)
    np.testing.assert_array_equal(y, golden.dequantize(acc, amax, w_scale))
