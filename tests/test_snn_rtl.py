# SPDX-License-Identifier: BSD-3-Clause
"""rtl.snn.Decoder and rtl.bessel.CausalFilter on Amaranth's simulator vs golden, under random
stalls on both streams; measured cycles equal ``cycles_per_bin``."""

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator
from rtl_streams import Counted

from ternedge.golden import bessel as gbessel
from ternedge.golden import snn as golden
from ternedge.rtl import bessel as rbessel
from ternedge.rtl import snn


def random_network(rng, sizes, resets=("subtract", "none", "none")):
    layers = []
    for (k, n), reset in zip(zip(sizes, sizes[1:], strict=False), resets, strict=False):
        frac = int(rng.integers(12, 20))
        layers.append(golden.Layer(
            weights=rng.integers(-127, 128, size=(n, k)),
            bias=rng.integers(-(1 << 16), 1 << 16, size=n),
            beta=int(rng.integers(0, 4097)), theta=int(rng.integers(0, 1 << 18)),
            reset=reset, frac=frac))
    return golden.Network(layers)


def seeded(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def pack(values, width):
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & ((1 << width) - 1)) << (i * width)
    return out


def unpack_signed(word, width, count):
    vals = [(word >> (i * width)) & ((1 << width) - 1) for i in range(count)]
    return [v - (1 << width) if v >> (width - 1) else v for v in vals]


def stream_through(dut, in_port, out_port, beats, out_width, out_count, rng, p_valid, p_ready):
    """Drive ``beats`` into ``in_port`` and collect as many outputs; returns outputs and the
    (counter) cycles of every input and output transfer."""
    top = Counted(dut)
    got, t_in, t_out = [], [], []

    async def driver(ctx):
        for beat in beats:
            while p_valid < 1 and rng.random() > p_valid:
                ctx.set(in_port.valid, 0)
                await ctx.tick()
            ctx.set(Value.cast(in_port.payload), beat)
            ctx.set(in_port.valid, 1)
            (cycle,) = await ctx.tick().sample(top.counter).until(in_port.ready)
            t_in.append(cycle)
            ctx.set(in_port.valid, 0)

    async def monitor(ctx):
        for _ in beats:
            while p_ready < 1 and rng.random() > p_ready:
                ctx.set(out_port.ready, 0)
                await ctx.tick()
            ctx.set(out_port.ready, 1)
            value, cycle = await ctx.tick().sample(out_port.payload.as_value(),
                                                   top.counter).until(out_port.valid)
            got.append(unpack_signed(value, out_width, out_count))
            t_out.append(cycle)
            ctx.set(out_port.ready, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.run()
    return np.array(got, dtype=np.int64), np.array(t_in), np.array(t_out)


@pytest.mark.parametrize("seed,sizes,resets,p_valid,p_ready", [
    (1, (12, 6, 5, 2), ("subtract", "none", "none"), 0.6, 0.5),
    (2, (12, 6, 5, 2), ("zero", "subtract", "none"), 1.0, 1.0),
    (3, (20, 7, 3), ("subtract", "none"), 0.4, 0.7),
])
def test_decoder_bit_exact_under_stalls(seed, sizes, resets, p_valid, p_ready):
    rng = seeded(seed)
    net = random_network(rng, sizes, resets)
    bins = (rng.random((40, sizes[0])) < 0.3).astype(np.uint8)
    bins[0] = 1                                     # every channel active once
    bins[1] = 0
    expected, _, activity = golden.run(net, bins, activity=True)
    # the per-bin reference path agrees with the block fast path
    state = golden.State.zeros(net)
    np.testing.assert_array_equal(np.array([golden.step(net, state, b) for b in bins]), expected)
    dut = snn.Decoder(network=net)
    beats = [pack(b, 1) for b in bins]
    got, t_in, t_out = stream_through(dut, dut.spikes, dut.velocity, beats, snn.OUT_WIDTH,
                                      net.outputs, rng, p_valid, p_ready)
    np.testing.assert_array_equal(got, expected)
    if p_valid == 1 and p_ready == 1:
        np.testing.assert_array_equal(np.diff(t_in), dut.cycles_per_bin(activity[:-1]))
        np.testing.assert_array_equal(t_out - t_in, dut.latency(activity))
    else:
        assert np.all(t_out - t_in >= dut.latency(activity))


def test_decoder_full_size_trained_shape():
    rng = seeded(4)
    net = random_network(rng, (96, 32, 48, 2))
    bins = (rng.random((4, 96)) < 0.05).astype(np.uint8)
    expected, _, activity = golden.run(net, bins, activity=True)
    dut = snn.Decoder(network=net)
    got, t_in, t_out = stream_through(dut, dut.spikes, dut.velocity, [pack(b, 1) for b in bins],
                                      snn.OUT_WIDTH, 2, rng, 1.0, 1.0)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.diff(t_in), dut.cycles_per_bin(activity[:-1]))
    assert dut.worst_case_cycles == 2 + 32 * 99 + 48 * 35 + 2 * 51


def test_decoder_rejects_bad_parameters():
    with pytest.raises(TypeError, match="golden.snn.Network"):
        snn.Decoder(network=[1, 2])


@pytest.mark.parametrize("seed,p_valid,p_ready", [(10, 0.5, 0.6), (11, 1.0, 1.0)])
def test_causal_filter_bit_exact_under_stalls(seed, p_valid, p_ready):
    rng = seeded(seed)
    x = np.cumsum(rng.integers(-3000, 3000, size=(60, 2)), axis=0)
    x[20] = [1 << 30, -(1 << 30)]                    # saturates at DATA_WIDTH
    ref = gbessel.CausalFilter()
    expected = np.array([ref.push(row) for row in x])
    dut = rbessel.CausalFilter()
    beats = [pack(row, rbessel.SAMPLE_WIDTH) for row in x]
    got, t_in, t_out = stream_through(dut, dut.i, dut.o, beats, rbessel.SAMPLE_WIDTH, 2, rng,
                                      p_valid, p_ready)
    np.testing.assert_array_equal(got, expected)
    if p_valid == 1 and p_ready == 1:
        assert set(np.diff(t_in)) == {dut.cycles_per_sample}
        assert set(t_out - t_in) == {dut.latency}


@pytest.mark.parametrize("seed,tap,count,p_valid,p_ready", [
    (12, "last", 8, 1.0, 1.0), (13, "middle", 21, 1.0, 1.0), (14, "last", 6, 0.5, 0.5)])
def test_block_filter_bit_exact(seed, tap, count, p_valid, p_ready):
    rng = seeded(seed)
    x = np.cumsum(rng.integers(-20000, 20000, size=(count, 2)), axis=0)
    x[count // 2] = [1 << 30, -(1 << 30)]             # saturation and odd padding extremes
    ref = gbessel.BlockFilter(tap=tap)
    released = [ref.push(row) for row in x]
    expected = np.array([r for r in released if r is not None])
    dut = rbessel.BlockFilter(tap=tap)
    top = Counted(dut)
    got, t_in = [], []

    async def driver(ctx):
        for row in x:
            while p_valid < 1 and rng.random() > p_valid:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(Value.cast(dut.i.payload), pack(row, rbessel.SAMPLE_WIDTH))
            ctx.set(dut.i.valid, 1)
            (cycle,) = await ctx.tick().sample(top.counter).until(dut.i.ready)
            t_in.append(cycle)
            ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        for _ in expected:
            while p_ready < 1 and rng.random() > p_ready:
                ctx.set(dut.o.ready, 0)
                await ctx.tick()
            ctx.set(dut.o.ready, 1)
            (value,) = await ctx.tick().sample(dut.o.payload.as_value()).until(dut.o.valid)
            got.append(unpack_signed(value, rbessel.SAMPLE_WIDTH, 2))
            ctx.set(dut.o.ready, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.run()
    np.testing.assert_array_equal(np.array(got), expected)
    if p_valid == 1 and p_ready == 1:
        model = [dut.cycles_per_sample(first=k == 0, emits=released[k] is not None)
                 for k in range(count - 1)]
        np.testing.assert_array_equal(np.diff(t_in), model)
