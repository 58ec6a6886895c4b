# SPDX-License-Identifier: BSD-3-Clause
"""rtl.pipeline: the normalized Reciprocal vs golden.fixed.ratio_scale (exact, with its fixed
latency), and split_add's two-stage sums."""

import math

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, Value, signed, unsigned
from amaranth.sim import Simulator
from rtl_streams import seeded

from ternedge.golden import fixed
from ternedge.rtl import pipeline

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_reciprocal(dut, dens):
    """(m, e, cycles from the accepting cycle to the result's) per denominator."""
    results = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for den in dens:
            ctx.set(dut.i.payload, int(den))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            cycles = 1
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(dut.o.payload.m), ctx.get(dut.o.payload.e), cycles))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("num_log2,den_width,low", [(24, 35, 1 << 24), (16, 32, 1), (24, 29, 1)])
def test_reciprocal_matches_golden(num_log2, den_width, low):
    rng = seeded(900 + den_width)
    top = 1 << den_width
    dens = [low, low + 1, top - 1, 3 << (den_width - 3)]
    dens += [(1 << k) + d for k in range(low.bit_length() - 1, den_width)
             for d in (0, 1, (1 << k) - 1)]
    dens += list(rng.integers(low, top, 24))
    dut = pipeline.Reciprocal(num_log2=num_log2, den_width=den_width)
    got = run_reciprocal(dut, dens)
    m, e = fixed.ratio_scale(np.full(len(dens), 1 << num_log2), np.array(dens))
    np.testing.assert_array_equal([g[0] for g in got], m)
    np.testing.assert_array_equal([g[1] for g in got], e)
    assert {g[2] for g in got} == {dut.latency} == {pipeline.Reciprocal.LATENCY}


def test_reciprocal_parameter_validation():
    with pytest.raises(ValueError, match="den_width must be at most 44"):
        pipeline.Reciprocal(num_log2=16, den_width=45)
    with pytest.raises(ValueError, match="num_log2 must be a non-negative integer"):
        pipeline.Reciprocal(num_log2=-1, den_width=8)


@pytest.mark.parametrize("a_shape,b_shape", [(signed(37), signed(20)), (unsigned(33), unsigned(9)),
                                             (unsigned(17), signed(36))])
def test_split_add(a_shape, b_shape):
    rng = seeded(950)
    m = Module()
    a, b, carry = Signal(a_shape), Signal(b_shape), Signal()
    total = pipeline.split_add(pipeline.Stages(m), "sum", a, b, carry_in=carry)

    def draw(shape):
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1)) if shape.signed else 1 << shape.width
        return [lo, hi - 1, 0, -1 if shape.signed else 1] + list(rng.integers(lo, hi, 40))

    cases = list(zip(draw(a_shape), draw(b_shape), [0, 1] * 22, strict=False))
    seen = []

    async def bench(ctx):
        for i in range(len(cases) + 2):
            if i < len(cases):
                ctx.set(a, int(cases[i][0]))
                ctx.set(b, int(cases[i][1]))
                ctx.set(carry, cases[i][2])
            await ctx.tick()
            if i >= 1:
                seen.append(ctx.get(total))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[:len(cases)] == [int(x) + int(y) + c for x, y, c in cases]


def run_one(dut, payloads):
    """(result, cycles from the accepting cycle to the result's) per input payload."""
    results = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for payload in payloads:
            ctx.set(Value.cast(dut.i.payload), int(payload))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            cycles = 1
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(dut.o.payload), cycles))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_long_divider_and_isqrt():
    rng = seeded(960)
    dut = pipeline.LongDivider(num_width=45, den_width=13)
    cases = [(0, 1), ((1 << 45) - 1, 1), ((1 << 45) - 1, 8191), (12345, 8191)]
    cases += [(int(n), int(d)) for n, d in zip(rng.integers(0, 1 << 45, 20),
                                                rng.integers(1, 1 << 13, 20), strict=True)]
    got = run_one(dut, [n | (d << 45) for n, d in cases])
    assert [g[0] for g in got] == [n // d for n, d in cases]
    assert {g[1] for g in got} == {dut.latency}
    dut = pipeline.Isqrt(width=64)
    values = [0, 1, 3, 4, (1 << 62) - 1, (1 << 64) - 1, (1 << 32) - 1, 1 << 32]
    values += [int(v) for v in rng.integers(0, 1 << 62, 20, dtype=np.int64)]
    got = run_one(dut, values)
    assert [g[0] for g in got] == [math.isqrt(v) for v in values]
    assert {g[1] for g in got} == {dut.latency}


@pytest.mark.parametrize("chunk", [8, 24])
def test_chunk_add(chunk):
    rng = seeded(970)
    m = Module()
    a, b = Signal(signed(61)), Signal(unsigned(44))
    total, stages = pipeline.chunk_add(pipeline.Stages(m), "sum", a, b, chunk=chunk)
    cases = [(-(1 << 60), (1 << 44) - 1), ((1 << 60) - 1, (1 << 44) - 1), (-1, 1), (0, 0)]
    cases += [(int(x), int(y)) for x, y in zip(rng.integers(-(1 << 60), 1 << 60, 30),
                                                rng.integers(0, 1 << 44, 30), strict=True)]
    seen = []

    async def bench(ctx):
        for i in range(len(cases) + stages):
            if i < len(cases):
                ctx.set(a, cases[i][0])
                ctx.set(b, cases[i][1])
            await ctx.tick()
            if i >= stages - 1:
                seen.append(ctx.get(total))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[:len(cases)] == [x + y for x, y in cases]
