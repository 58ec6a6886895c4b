# SPDX-License-Identifier: BSD-3-Clause
"""Stream helpers for Amaranth-simulator tests of rtl/ units: packed payloads (much faster in
simulation than field by field), randomly stalled put/get, and time-stamped handshakes."""

import numpy as np
from amaranth.hdl import Elaboratable, Module, Signal, Value
from amaranth.sim import Simulator


def pack(values, width):
    mask = (1 << width) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack_signed(word, width, count):
    vals = [(word >> (i * width)) & ((1 << width) - 1) for i in range(count)]
    return [v - (1 << width) if v >> (width - 1) else v for v in vals]


def beats(token, lanes, width):
    """Packed ``token_layout`` beats of one token (zero padding, ``last`` on the final beat)."""
    n = -(-len(token) // lanes)
    padded = np.zeros(n * lanes, dtype=np.int64)
    padded[:len(token)] = token
    return [pack(padded[i * lanes:(i + 1) * lanes], width) | (int(i == n - 1) << (lanes * width))
            for i in range(n)]


async def put(ctx, stream, value, rng, p_valid):
    while p_valid < 1 and rng.random() > p_valid:
        ctx.set(stream.valid, 0)
        await ctx.tick()
    ctx.set(Value.cast(stream.payload), value)
    ctx.set(stream.valid, 1)
    _, cycle = await ctx.tick().sample(stream.ready, COUNTER).until(stream.ready)
    ctx.set(stream.valid, 0)
    return cycle


async def get(ctx, stream, rng, p_ready):
    while p_ready < 1 and rng.random() > p_ready:
        ctx.set(stream.ready, 0)
        await ctx.tick()
    ctx.set(stream.ready, 1)
    value, cycle = await ctx.tick().sample(Value.cast(stream.payload), COUNTER).until(stream.valid)
    ctx.set(stream.ready, 0)
    return value, cycle


COUNTER = Signal(32, name="counter")


class Counted(Elaboratable):
    """The DUT plus a free-running cycle counter, so handshakes can be time-stamped."""

    def __init__(self, dut):
        self.dut = dut
        self.counter = COUNTER

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.sync += COUNTER.eq(COUNTER + 1)
        return m


def simulate(dut, benches):
    sim = Simulator(Counted(dut))
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def seeded(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)
