# SPDX-License-Identifier: BSD-3-Clause
"""rtl.linear_chain: the top's gear (quantizer beats -> engine K-steps) and splitter (engine
results -> dequantizer beats), alone, under random stalls and stall-free for their timing."""

import pytest
from rtl_streams import beats, get, pack, put, seeded, simulate, unpack_signed

from ternedge.rtl.linear_chain import ActivationGear, ResultSplitter

# the size checks raise in the constructor, after Elaboratable registered the object
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _k_steps(token, lanes, k_per_step):
    """The K-steps of one token: its activations, a K-step at a time (the last one short)."""
    n = -(-len(token) // lanes) * lanes            # the quantizer's beats pad with zeros
    padded = list(token) + [0] * (n - len(token))
    return [padded[i:i + k_per_step] for i in range(0, n, k_per_step)]


def _run_gear(lanes, k_per_step, tokens, p_valid, p_ready, seed):
    rng = seeded(seed)
    dut = ActivationGear(lanes=lanes, k_per_step=k_per_step)
    expected = [s for t in tokens for s in _k_steps(t, lanes, k_per_step)]
    sent, got, empty_after = [], [], []

    async def producer(ctx):
        for token in tokens:
            for beat in beats(token, lanes, 8):
                sent.append(await put(ctx, dut.i, beat, rng, p_valid))

    async def consumer(ctx):
        for _ in expected:
            value, cycle = await get(ctx, dut.o, rng, p_ready)
            got.append((unpack_signed(value, 8, k_per_step), cycle))
        await ctx.tick()
        empty_after.append(ctx.get(dut.empty))

    simulate(dut, [producer, consumer])
    return expected, sent, got, empty_after


@pytest.mark.parametrize("lanes,k_per_step", [(4, 4), (4, 12), (4, 84), (2, 6)])
def test_gear_random_stalls(lanes, k_per_step):
    """Every K-step reaches the engine whole and in order, a token's final beat ending its
    K-step early; the lanes past a short K-step's activations are not looked at (the engine
    multiplies them by zero weights)."""
    rng = seeded(k_per_step)
    tokens = [rng.integers(-127, 128, size=int(rng.integers(1, 3 * k_per_step + 1)))
              for _ in range(6)]
    for p_valid, p_ready in ((1.0, 0.3), (0.4, 1.0), (0.5, 0.5)):
        expected, _, got, empty_after = _run_gear(lanes, k_per_step, tokens, p_valid, p_ready,
                                                  seed=k_per_step)
        assert len(got) == len(expected)
        for want, (have, _) in zip(expected, got, strict=True):
            assert have[:len(want)] == want
        assert empty_after == [1]


def test_gear_timing_and_no_wait_for_a_held_step():
    """Stall-free, a K-step is offered the cycle after its final beat (``LATENCY``); while
    the engine holds one K-step the next one fills, and only a third waits for it."""
    lanes, k_per_step = 4, 8
    tokens = [list(range(1, 33))]                  # four K-steps of two beats
    expected, sent, got, _ = _run_gear(lanes, k_per_step, tokens, 1.0, 1.0, seed=0)
    assert [g for g, _ in got] == expected
    finals = sent[1::2]
    assert [c for _, c in got] == [f + ActivationGear.LATENCY for f in finals]
    # an engine that takes nothing for a while: two K-steps go in, then the quantizer waits
    rng = seeded(1)
    dut = ActivationGear(lanes=lanes, k_per_step=k_per_step)
    accepted = []

    async def producer(ctx):
        for beat in beats(tokens[0], lanes, 8):
            accepted.append(await put(ctx, dut.i, beat, rng, 1.0))

    async def stalled_engine(ctx):
        await ctx.tick().repeat(20)
        for _ in expected:
            await get(ctx, dut.o, rng, 1.0)

    simulate(dut, [producer, stalled_engine])
    first_wait = next(i for i in range(1, len(accepted)) if accepted[i] - accepted[i - 1] > 1)
    assert first_wait == 4                         # beats 0-3 (two K-steps) went straight in


def test_gear_and_splitter_reject_bad_sizes():
    with pytest.raises(ValueError, match="multiple of lanes"):
        ActivationGear(lanes=4, k_per_step=6)
    with pytest.raises(ValueError, match="multiple of lanes"):
        ResultSplitter(lanes=4, cols_per_cycle=2, acc_width=20)


def _run_splitter(lanes, cols, acc_width, n_blocks, tokens, p_valid, p_ready, seed):
    rng = seeded(seed)
    dut = ResultSplitter(lanes=lanes, cols_per_cycle=cols, acc_width=acc_width)
    lo, hi = -(1 << (acc_width - 1)), 1 << (acc_width - 1)
    results = [rng.integers(lo, hi, size=cols) for _ in range(tokens * n_blocks)]
    parts = cols // lanes
    expected = [(list(r[p * lanes:(p + 1) * lanes]),
                 int(p == parts - 1 and i % n_blocks == n_blocks - 1))
                for i, r in enumerate(results) for p in range(parts)]
    got = []

    async def engine(ctx):
        ctx.set(dut.n_blocks, n_blocks)
        await ctx.tick()
        for r in results:
            await put(ctx, dut.results, pack(r, acc_width), rng, p_valid)

    async def dequantizer(ctx):
        await ctx.tick()
        for _ in expected:
            value, cycle = await get(ctx, dut.acc, rng, p_ready)
            got.append((unpack_signed(value, acc_width, lanes),
                        value >> (lanes * acc_width), cycle))

    simulate(dut, [engine, dequantizer])
    return expected, got


@pytest.mark.parametrize("lanes,cols,n_blocks", [(4, 4, 1), (4, 16, 3), (2, 8, 2)])
def test_splitter_random_stalls(lanes, cols, n_blocks):
    """Each result goes out as its parts in order, ``last`` on the final part of a token's
    final column block."""
    for p_valid, p_ready in ((1.0, 0.3), (0.3, 1.0), (0.6, 0.6)):
        expected, got = _run_splitter(lanes, cols, 22, n_blocks, 4, p_valid, p_ready,
                                      seed=cols + n_blocks)
        assert [(a, last) for a, last, _ in got] == expected


def test_splitter_streams_results_without_a_gap():
    """Stall-free, back-to-back results leave as one beat a cycle."""
    expected, got = _run_splitter(4, 16, 22, 2, 3, 1.0, 1.0, seed=5)
    assert [(a, last) for a, last, _ in got] == expected
    cycles = [c for _, _, c in got]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))
