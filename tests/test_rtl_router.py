# SPDX-License-Identifier: BSD-3-Clause
"""rtl.router.ReadRouter alone: every command's beats reach the sink it is tagged with, in
order, under random stalls; ``last`` on a token's final beat; RoPE table beats paired;
``drain`` discards; a beat moves in the cycle it arrives."""

from amaranth.hdl import Value
from rtl_streams import get, put, seeded, simulate, unpack_signed

from ternedge.rtl.elementwise import rope_table_layout
from ternedge.rtl.router import TABLE_BITS, ReadRouter, Route

LANES = 4


def _sink(router, route):
    names = {**ReadRouter.RAW, **ReadRouter.TOKEN, **ReadRouter.ATTENTION,
             Route.ROPE_TABLE: "rope_table"}
    return getattr(router, names[route])


def _expected(commands):
    """Per route: the packed payloads its sink must see, in order."""
    layout = rope_table_layout(LANES)
    out = {r: [] for r in Route}
    for route, data, final, drained in commands:
        if drained:
            continue
        if route == Route.ROPE_TABLE:
            for cos, sin in zip(data[::2], data[1::2], strict=True):
                fields = {name: [unpack_signed(w >> (32 * i), TABLE_BITS, 1)[0]
                                 for i in range(LANES)]
                          for name, w in (("cos", cos), ("sin", sin))}
                out[route].append(Value.cast(layout.const(fields)).value)
        elif route in ReadRouter.TOKEN:
            out[route] += [beat | (int(final and i == len(data) - 1) << (32 * LANES))
                           for i, beat in enumerate(data)]
        else:
            out[route] += list(data)
    return out


def _run(commands, p_valid, p_ready, seed):
    rng = seeded(seed)
    dut = ReadRouter(lanes=LANES)
    expected = _expected(commands)
    got = {r: [] for r in Route}
    arrived = []

    async def dma(ctx):
        for route, data, final, drained in commands:
            while ctx.get(dut.busy):
                await ctx.tick()
            ctx.set(dut.drain, drained)
            ctx.set(dut.cmd_route, route)
            ctx.set(dut.cmd_beats, len(data))
            ctx.set(dut.cmd_final, final)
            ctx.set(dut.cmd_taken, 1)
            await ctx.tick()
            ctx.set(dut.cmd_taken, 0)
            for beat in data:
                arrived.append((await put(ctx, dut.data, beat, rng, p_valid), drained))
        while ctx.get(dut.busy):
            await ctx.tick()

    def consumer(route):
        async def bench(ctx):
            for _ in expected[route]:
                value, cycle = await get(ctx, _sink(dut, route), rng, p_ready)
                got[route].append((value, cycle))
        return bench

    simulate(dut, [dma] + [consumer(r) for r in Route if expected[r]])
    return expected, got, arrived


def _commands(rng, count):
    commands = []
    for _ in range(count):
        route = Route(int(rng.integers(len(Route))))
        beats = 2 * int(rng.integers(1, 5))           # even: the RoPE table pairs beats
        data = [int(rng.integers(0, 1 << 63)) << 64 | int(rng.integers(0, 1 << 63))
                for _ in range(beats)]
        commands.append((route, data, int(rng.random() < 0.5), int(rng.random() < 0.15)))
    return commands


def test_router_random_stalls():
    rng = seeded(3)
    commands = _commands(rng, 60)
    for p_valid, p_ready in ((1.0, 0.4), (0.4, 1.0), (0.6, 0.6)):
        expected, got, _ = _run(commands, p_valid, p_ready, seed=7)
        for route in Route:
            assert [v for v, _ in got[route]] == expected[route], route.name


def test_router_adds_no_cycle():
    """Stall-free, each beat reaches its sink in the cycle it arrives; drained beats reach
    none."""
    rng = seeded(4)
    commands = [c for c in _commands(rng, 20) if c[0] != Route.ROPE_TABLE]
    commands.append((Route.QUANT_X, [5, 6, 7], 1, 1))        # drained
    expected, got, arrived = _run(commands, 1.0, 1.0, seed=8)
    taken = sorted(c for route in Route for _, c in got[route])
    assert taken == [cycle for cycle, drained in arrived if not drained]
    assert sum(drained for _, drained in arrived) >= 3
