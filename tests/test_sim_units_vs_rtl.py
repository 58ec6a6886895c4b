# SPDX-License-Identifier: BSD-3-Clause
"""sim.units against rtl/: every unit's cycle model equals the RTL unit's ``cycles(...)`` on
seeded random parameters and job shapes, and equals cycles measured in Amaranth's simulator
(stall-free) for Quantizer, Pointwise, RoPE, DecodeUnit, Divider and Isqrt."""

import gc

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator
from rtl_streams import Counted

from ternedge.golden import bessel as gbessel
from ternedge.golden import snn as gsnn
from ternedge.rtl import arith, attention, bessel, elementwise, pipeline, quant, snn
from ternedge.rtl.accelerator import GATE_OPS
from ternedge.sim import units

# RTL components built only for their timing methods are never elaborated: expected here
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unelaborated():
    """The RTL units built here only for their ``cycles()`` are never elaborated: collect them
    while this module's warning filter applies, not in some later test."""
    yield
    gc.collect()


CASES = 25


def seeded(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def draw(rng, low, high):
    """A plain ``int`` in ``[low, high]``."""
    return int(rng.integers(low, high, endpoint=True))


# -- formula equality on random shapes -------------------------------------------------------

def test_arith_latencies():
    rng = seeded(11)
    for _ in range(CASES):
        nw, dw, qw = draw(rng, 1, 64), draw(rng, 1, 64), draw(rng, 1, 64)
        assert (units.Divider(num_width=nw, den_width=dw, quotient_width=qw).latency
                == arith.Divider(num_width=nw, den_width=dw, quotient_width=qw).latency)
        width = 2 * draw(rng, 1, 40)
        assert units.Isqrt(width=width).latency == arith.Isqrt(width=width).latency
        nw, dw = draw(rng, 1, 44), draw(rng, 1, 44)
        assert (units.RatioScale(num_width=nw, den_width=dw).latency
                == arith.RatioScale(num_width=nw, den_width=dw).latency)
    assert units.RATIO_SCALE_QUOTIENT_WIDTH == arith.RatioScale.QUOTIENT_WIDTH


def test_quantizer_and_dequantizer():
    rng = seeded(12)
    for _ in range(CASES):
        lanes, max_k = draw(rng, 1, 16), draw(rng, 1, 4096)
        tokens, k = draw(rng, 1, 64), draw(rng, 1, max_k)
        model, rtl = units.Quantizer(lanes=lanes, max_k=max_k), quant.Quantizer(lanes=lanes,
                                                                                max_k=max_k)
        assert (model.pass2_start, model.latency) == (rtl.pass2_start, rtl.latency), lanes
        assert model.cycles(tokens, k) == rtl.cycles(tokens, k), (lanes, k)
        acc_width, n = draw(rng, 1, 32), draw(rng, 1, 8192)
        model = units.Dequantizer(lanes=lanes, acc_width=acc_width)
        rtl = quant.Dequantizer(lanes=lanes, acc_width=acc_width)
        assert model.setup_cycles == rtl.setup_cycles
        assert model.latency == rtl.latency
        assert model.cycles(tokens, n) == rtl.cycles(tokens, n), (lanes, tokens, n)


def test_rmsnorm_rope_pointwise():
    rng = seeded(13)
    for _ in range(CASES):
        lanes = draw(rng, 1, 16)
        max_h = lanes * draw(rng, 1, 512)
        eps = draw(rng, 1, 1 << 16)
        tokens, h = draw(rng, 1, 64), lanes * draw(rng, 1, max_h // lanes)
        model = units.RMSNorm(lanes=lanes, max_h=max_h, eps=eps)
        rtl = elementwise.RMSNorm(lanes=lanes, max_h=max_h, eps=eps)
        assert model.setup_cycles == rtl.setup_cycles
        assert model.cycles(tokens, h) == rtl.cycles(tokens, h), (lanes, max_h, tokens, h)
        head_dim, heads = 2 * lanes * draw(rng, 1, 16), draw(rng, 1, 64)
        assert (units.RoPE(lanes=lanes, head_dim=head_dim).cycles(heads)
                == elementwise.RoPE(lanes=lanes, head_dim=head_dim).cycles(heads))
        beats = draw(rng, 1, 10_000)
        assert (units.Pointwise(lanes=lanes).cycles(beats)
                == elementwise.Pointwise(lanes=lanes).cycles(beats))
        gates = [("relu2",), ("silu",), units.POINTWISE_GATES][draw(rng, 0, 2)]
        ops = [elementwise.PointwiseOp.ADD] + [GATE_OPS[g] for g in gates]
        assert (units.Pointwise(lanes=lanes, gates=gates).cycles(beats)
                == elementwise.Pointwise(lanes=lanes, ops=ops).cycles(beats))


def test_attention_units():
    rng = seeded(14)
    for _ in range(CASES):
        lanes = draw(rng, 1, 8)
        head_dim, max_keys = lanes * draw(rng, 1, 32), draw(rng, 1, 2048)
        keys = draw(rng, 1, max_keys)
        assert (units.DecodeUnit(lanes=lanes, head_dim=head_dim, max_keys=max_keys).cycles(keys)
                == attention.DecodeUnit(lanes=lanes, head_dim=head_dim,
                                        max_keys=max_keys).cycles(keys)), (lanes, head_dim, keys)
        tile = draw(rng, 1, min(8, max_keys))
        n = draw(rng, 1, min(tile, keys))
        kwargs = dict(queries=tile, lanes=lanes, head_dim=head_dim, max_keys=max_keys)
        assert (units.PrefillUnit(**kwargs).cycles(n, keys)
                == attention.PrefillUnit(**kwargs).cycles(n, keys)), (kwargs, n, keys)
        assert units.PrefillUnit(**kwargs).tail == attention.PrefillUnit(**kwargs).tail
    den_width = draw(rng, 2, 44)
    assert (units.Reciprocal().latency
            == pipeline.Reciprocal(num_log2=16, den_width=den_width).latency)


def random_network(rng, sizes):
    return gsnn.Network([gsnn.Layer(weights=rng.integers(-127, 128, size=(n, k)),
                                    bias=rng.integers(-(1 << 16), 1 << 16, size=n),
                                    beta=int(rng.integers(0, 4097)),
                                    theta=int(rng.integers(0, 1 << 18)), reset="none", frac=16)
                         for k, n in zip(sizes, sizes[1:], strict=False)])


def test_snn_decoder():
    rng = seeded(15)
    for _ in range(CASES):
        sizes = [draw(rng, 1, 96) for _ in range(draw(rng, 2, 5))]
        net = random_network(rng, sizes)
        model, rtl = units.Decoder.from_network(net), snn.Decoder(network=net)
        activity = rng.integers(0, np.array(sizes[:-1]) + 1, size=(draw(rng, 1, 50),
                                                                     len(sizes) - 1))
        np.testing.assert_array_equal(model.cycles_per_bin(activity),
                                      rtl.cycles_per_bin(activity), err_msg=str(sizes))
        np.testing.assert_array_equal(model.latency(activity), rtl.latency(activity))
        assert model.cycles_per_bin(activity[0]) == rtl.cycles_per_bin(activity[0])
        assert model.worst_case_cycles == rtl.worst_case_cycles


def test_bessel_filters():
    rng = seeded(16)
    for _ in range(CASES):
        sections, channels = draw(rng, 1, 8), draw(rng, 1, 8)
        assert (units.causal_cycles(sections=sections, channels=channels)
                == bessel.causal_cycles(sections=sections, channels=channels))
        tap, first, emits = (str(rng.choice(["last", "middle"])), bool(rng.integers(2)),
                             bool(rng.integers(2)))
        assert (units.block_cycles(tap=tap, channels=channels, first=first, emits=emits)
                == bessel.block_cycles(tap=tap, channels=channels, first=first, emits=emits))
        block = bessel.BlockFilter(tap=tap, channels=channels)
        model = units.BlockFilter(tap=tap, channels=channels)
        assert model.backward_steps == block.backward_steps
        assert (model.cycles_per_sample(first=first, emits=emits)
                == block.cycles_per_sample(first=first, emits=emits))
        causal = bessel.CausalFilter(channels=channels)
        model = units.CausalFilter(sections=gbessel.quantize().sections, channels=channels)
        assert model.cycles_per_sample == causal.cycles_per_sample
        assert model.latency == causal.latency


RTL_MODULES = {"Quantizer": quant, "Dequantizer": quant, "RMSNorm": elementwise,
               "RoPE": elementwise, "DecodeUnit": attention, "PrefillUnit": attention,
               "RatioScale": arith, "Isqrt": arith}


@pytest.mark.parametrize("name,kwargs,job", [
    ("Quantizer", {"lanes": 0}, None),
    ("Quantizer", {"max_k": 64}, (1, 65)),
    ("RMSNorm", {"lanes": 4, "max_h": 16}, (1, 6)),
    ("RoPE", {"lanes": 4, "head_dim": 12}, None),
    ("Dequantizer", {"acc_width": 40}, None),
    ("DecodeUnit", {"max_keys": 4}, (5,)),
    ("PrefillUnit", {"queries": 4, "max_keys": 8}, (3, 2)),
    ("RatioScale", {"num_width": 45, "den_width": 8}, None),
    ("Isqrt", {"width": 7}, None),
])
def test_parameter_validation_matches_rtl(name, kwargs, job):
    for module in (units, RTL_MODULES[name]):
        with pytest.raises(ValueError):
            unit = getattr(module, name)(**kwargs)
            if job is not None:
                unit.cycles(*job)


# -- measured, stall-free Amaranth simulation ------------------------------------------------

def measure(dut, inputs, outputs):
    """Drive ``inputs`` (``(stream, words)``, the first stream's first handshake starts the
    count) with ``valid`` always high and drain ``outputs`` (``(stream, beats)``, the first
    stream's last handshake ends it) with ``ready`` always high; return the cycles, both
    handshake cycles included."""
    top = Counted(dut)
    stamps = {"first": None, "last": None}

    def driver(stream, words, is_first):
        async def bench(ctx):
            for word in words:
                ctx.set(Value.cast(stream.payload), word)
                ctx.set(stream.valid, 1)
                _, cycle = await ctx.tick().sample(stream.ready, top.counter).until(stream.ready)
                if is_first and stamps["first"] is None:
                    stamps["first"] = cycle
            ctx.set(stream.valid, 0)
        return bench

    def monitor(stream, count, is_first):
        async def bench(ctx):
            ctx.set(stream.ready, 1)
            for _ in range(count):
                _, cycle = await ctx.tick().sample(stream.valid, top.counter).until(stream.valid)
                if is_first:
                    stamps["last"] = cycle
        return bench

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for i, (stream, words) in enumerate(inputs):
        sim.add_testbench(driver(stream, words, i == 0))
    for i, (stream, count) in enumerate(outputs):
        sim.add_testbench(monitor(stream, count, i == 0))
    sim.run()
    return stamps["last"] - stamps["first"] + 1


def random_words(rng, count, bits):
    return [int(w) for w in rng.integers(0, 1 << min(bits, 62), size=count)]


def token_words(rng, tokens, beats, lanes, width):
    """``token_layout`` beats: random elements, ``last`` on each token's final beat."""
    return [int(rng.integers(0, 1 << 62)) % (1 << (lanes * width))
            | (int(b == beats - 1) << (lanes * width))
            for _ in range(tokens) for b in range(beats)]


@pytest.mark.parametrize("lanes,tokens,k", [(4, 3, 14), (3, 2, 9)])
def test_quantizer_measured(lanes, tokens, k):
    rng = seeded(300 + k)
    dut = quant.Quantizer(lanes=lanes, max_k=16)
    beats = -(-k // lanes)
    words = token_words(rng, tokens, beats, lanes, 32)
    cycles = measure(dut, [(dut.x, words)], [(dut.q, tokens * beats), (dut.amax, tokens)])
    assert units.Quantizer(lanes=lanes, max_k=16).cycles(tokens, k) == cycles


def test_pointwise_measured():
    rng = seeded(310)
    dut = elementwise.Pointwise(lanes=2)
    words = [int(op) | (w << 2) for op, w in zip(rng.integers(0, 3, 9),
                                                  random_words(rng, 9, 62), strict=True)]
    cycles = measure(dut, [(dut.i, words)], [(dut.o, 9)])
    assert units.Pointwise(lanes=2).cycles(9) == cycles


@pytest.mark.parametrize("lanes,head_dim,heads", [(2, 8, 3), (1, 6, 2)])
def test_rope_measured(lanes, head_dim, heads):
    rng = seeded(320 + head_dim)
    dut = elementwise.RoPE(lanes=lanes, head_dim=head_dim)
    x = random_words(rng, heads * head_dim // lanes, 32 * lanes)
    table = random_words(rng, heads * head_dim // 2 // lanes, 36 * lanes)
    cycles = measure(dut, [(dut.x, x), (dut.table, table)], [(dut.y, heads * head_dim // lanes)])
    assert units.RoPE(lanes=lanes, head_dim=head_dim).cycles(heads) == cycles


@pytest.mark.parametrize("keys", [1, 5])
def test_decode_unit_measured(keys):
    rng = seeded(330 + keys)
    lanes, head_dim, max_keys = 4, 8, 8
    dut = attention.DecodeUnit(lanes=lanes, head_dim=head_dim, max_keys=max_keys)
    beats = head_dim // lanes

    def rows(count):      # Q16 magnitudes well inside the operand limit
        return [int(sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(row)))
                for row in rng.integers(-(1 << 17), 1 << 17, size=(count, lanes))]

    cycles = measure(dut, [(dut.job, [keys]), (dut.q, rows(beats)), (dut.k, rows(keys * beats)),
                           (dut.v, rows(keys * beats))], [(dut.o, beats)])
    assert units.DecodeUnit(lanes=lanes, head_dim=head_dim, max_keys=max_keys).cycles(keys) \
        == cycles


@pytest.mark.parametrize("quotient_width", [5, 19])
def test_divider_and_isqrt_measured(quotient_width):
    """``latency`` is accept-to-result: measured cycles (both handshakes included) are one
    more."""
    rng = seeded(340 + quotient_width)
    dut = arith.Divider(num_width=24, den_width=8, quotient_width=quotient_width)
    den = draw(rng, 1, 255)
    num = draw(rng, 0, min((1 << 24) - 1, den * (1 << quotient_width) - 1))
    cycles = measure(dut, [(dut.i, [num | (den << 24)])], [(dut.o, 1)])
    assert units.Divider(num_width=24, den_width=8,
                         quotient_width=quotient_width).latency + 1 == cycles
    width = 2 * quotient_width + 2
    dut = arith.Isqrt(width=width)
    cycles = measure(dut, [(dut.i, random_words(rng, 1, width))], [(dut.o, 1)])
    assert units.Isqrt(width=width).latency + 1 == cycles
