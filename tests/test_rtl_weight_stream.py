# SPDX-License-Identifier: BSD-3-Clause
"""The LINEAR weight stream: golden.isa's layout and rtl.weight_stream.WeightUnpacker."""

import numpy as np
import pytest
from rtl_streams import Counted, get, put, seeded, simulate

from ternedge.golden import isa
from ternedge.rtl.weight_stream import WeightUnpacker


def _indices(rng, entries, tables, index_bits):
    return rng.integers(0, 1 << index_bits, size=(entries, tables))


@pytest.mark.parametrize(("tables", "index_bits"), [(28, 5), (24, 5), (4, 5), (56, 5), (26, 5)])
def test_stream_round_trip_and_size(tables, index_bits):
    rng = np.random.default_rng(tables)
    for entries in (1, 2, 7, 64, 3040):
        idx = _indices(rng, entries, tables, index_bits)
        data = isa.pack_weight_stream(idx, index_bits)
        width = tables * index_bits
        assert len(data) == isa.weight_stream_beats(entries, width) * isa.BEAT_BYTES
        np.testing.assert_array_equal(
            isa.unpack_weight_stream(data, entries, tables, index_bits), idx)


def test_stream_layout_bits():
    """Wider than a beat: entry e at stream bit e * entry_bits; else one beat each."""
    assert isa.entry_pitch(140) == 140 and isa.entry_pitch(120) == 128
    # the KV260's 160-column, 19-K-step job: 3040 entries of 140 bits in 3325 beats, not 6080
    assert isa.weight_stream_beats(3040, 140) == 3325
    assert isa.weight_stream_beats(10, 120) == 10
    idx = np.zeros((3, 28), dtype=np.int64)
    idx[1, 0] = 1                                   # entry 1, table 0, bit 0: stream bit 140
    data = isa.pack_weight_stream(idx, 5)
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    assert np.flatnonzero(bits).tolist() == [140] and len(data) == 3 * 140 // 128 * 16 + 16
    idx = np.zeros((2, 24), dtype=np.int64)
    idx[1, 23] = 16                                 # entry 1, table 23, bit 4: beat 1, bit 119
    bits = np.unpackbits(np.frombuffer(isa.pack_weight_stream(idx, 5), np.uint8),
                         bitorder="little")
    assert np.flatnonzero(bits).tolist() == [128 + 119]


def test_stream_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lie in \[0, 32\)"):
        isa.pack_weight_stream(np.full((2, 3), 32), 5)
    with pytest.raises(ValueError, match="non-empty"):
        isa.pack_weight_stream(np.zeros((0, 3)), 5)
    with pytest.raises(ValueError, match="is 80 bytes, got 32"):
        isa.unpack_weight_stream(bytes(32), 4, 28, 5)
    with pytest.raises(ValueError, match="entry_bits must be positive"):
        isa.entry_pitch(0)


def _unpack_on_rtl(entry_bits, streams, seed, p_valid, p_ready):
    """Entries (value, cycle) and beat handshake cycles of ``streams`` (each a list of
    entries of ``entry_bits``) through a WeightUnpacker under random stalls."""
    dut = WeightUnpacker(entry_bits=entry_bits)
    rng_in, rng_out = seeded(seed), seeded(seed + 1)
    words, total = [], 0
    for idx in streams:
        data = isa.pack_weight_stream(idx, 5)
        n = len(data) // isa.BEAT_BYTES
        words += [int.from_bytes(data[16 * i:16 * i + 16], "little") | (int(i == n - 1) << 128)
                  for i in range(n)]
        total += len(idx)
    got, beat_cycles = [], []

    async def producer(ctx):
        for word in words:
            beat_cycles.append(await put(ctx, dut.beats, word, rng_in, p_valid))

    async def consumer(ctx):
        for _ in range(total):
            got.append(await get(ctx, dut.entries, rng_out, p_ready))

    simulate(Counted(dut), [producer, consumer])
    values = [v for v, _ in got]
    want = [sum(int(t) << (5 * j) for j, t in enumerate(row)) for idx in streams for row in idx]
    assert values == want
    return got, beat_cycles


@pytest.mark.parametrize("entry_bits", [140, 120, 280, 130])
def test_unpacker_is_exact_under_stalls(entry_bits):
    rng = np.random.default_rng(entry_bits)
    streams = [_indices(rng, n, entry_bits // 5, 5) for n in (9, 1, 17)]
    _unpack_on_rtl(entry_bits, streams, seed=entry_bits, p_valid=0.6, p_ready=0.5)


@pytest.mark.parametrize("entry_bits", [140, 120, 280])
def test_unpacker_never_holds_the_stream_up(entry_bits):
    """With the engine always ready, every beat goes in the cycle it is offered, and each
    entry leaves in the cycle of the beat that completes it."""
    rng = np.random.default_rng(1)
    streams = [_indices(rng, 23, entry_bits // 5, 5), _indices(rng, 5, entry_bits // 5, 5)]
    got, beat_cycles = _unpack_on_rtl(entry_bits, streams, seed=5, p_valid=1, p_ready=1)
    assert np.all(np.diff(beat_cycles) == 1)
    pitch = isa.entry_pitch(entry_bits)
    expected, first = [], 0
    for idx in streams:
        for e in range(len(idx)):
            last_bit = e * pitch + entry_bits - 1
            expected.append(beat_cycles[first + last_bit // isa.BEAT_BITS])
        first += isa.weight_stream_beats(len(idx), entry_bits)
    assert [cycle for _, cycle in got] == expected


# ---- WeightStreamer: the walk over a program, on a Python AXI memory ----

def _streamer_run(program, memory_words, releases, config, max_cycles=4000):
    """Run a WeightStreamer over ``program`` (at address 0); the engine side takes a job when
    the job two back has been released (``releases``: cycle of each job's release, counted
    from the first FETCH) and every entry at once. Returns (jobs, entries, last beat cycles,
    done cycle), cycles counted from the first FETCH."""
    from amaranth.sim import Simulator
    from test_rtl_axi import Memory

    from ternedge.rtl.weight_stream import WeightStreamer

    dut = WeightStreamer(config=config, max_tokens=8, max_k_steps=4, max_n_blocks=4,
                         max_in_flight=8)
    image = isa.encode(program)
    words = dict(memory_words)
    for i in range(0, len(image), 16):
        words[i // 16] = int.from_bytes(image[i:i + 16], "little")
    mem = Memory(dut.bus, 128, 2, words, max_reads=8)
    jobs, entries, last_beat, out = [], [], [], {}

    async def bench(ctx):
        ctx.set(dut.program_addr, 0)
        ctx.set(dut.program_len, len(program))
        ctx.set(dut.window_lo, 0)
        ctx.set(dut.window_hi, 1 << 20)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.entries.ready, 1)
        for now in range(max_cycles):           # now: cycles from the first FETCH
            job = len(jobs)
            ctx.set(dut.job.ready, job < 2 or (job - 2 < len(releases)
                                               and now >= releases[job - 2] + 1))
            mem.drive(ctx, now)
            events = mem.sample(ctx, now)
            if ctx.get(dut.job.valid) and ctx.get(dut.job.ready):
                jobs.append((ctx.get(dut.job.payload.tokens), ctx.get(dut.job.payload.k_steps),
                             ctx.get(dut.job.payload.n_blocks)))
            if ctx.get(dut.entries.valid):
                entries.append(ctx.get(dut.entries.payload))
                last_beat.append(now)
            if ctx.get(dut.done):
                out["done"] = now
                return
            await ctx.tick()
            mem.update(events, now)
        raise AssertionError("the streamer's walk did not end")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return jobs, entries, last_beat, out["done"]


def test_streamer_walks_the_program_and_matches_its_model():
    """Only LINEARs are streamed, in order, each after the bank two jobs back is released; the
    walk stops at a LINEAR it cannot stream; the timing is ``sim.accelerator``'s."""
    from ternedge.golden.config import AcceleratorConfig
    from ternedge.golden.isa import Instruction, Op, Source
    from ternedge.sim.accelerator import TopTiming, _Streamer

    config = AcceleratorConfig(group_size=3, tables_per_step=28, cols_per_cycle=4)
    rng = np.random.default_rng(11)
    words, program, want = {}, [], []
    addr = 4096
    for k_steps, n_blocks, tokens in ((2, 1, 3), (1, 3, 1), (3, 2, 8)):
        idx = _indices(rng, k_steps * n_blocks * 4, 28, 5)
        data = isa.pack_weight_stream(idx, 5)
        for i in range(0, len(data), 16):
            words[(addr + i) // 16] = int.from_bytes(data[i:i + 16], "little")
        beats = isa.weight_stream_beats(len(idx), 140)
        program.append(Instruction(Op.NORM, src0=Source(0, 0, 0, 4)))       # skipped
        program.append(Instruction(Op.LINEAR, tokens=tokens, k_steps=k_steps,
                                   n_blocks=n_blocks, src1=Source(addr, 0, 0, beats)))
        want.append(((tokens, k_steps, n_blocks), idx))
        addr += len(data) + 4096
    program.append(Instruction(Op.LINEAR, tokens=1, k_steps=5, n_blocks=1,   # too many K-steps
                               src1=Source(addr, 0, 0, 4)))
    program.append(Instruction(Op.NORM))
    releases = [400, 900]                       # the engine frees job 0's bank, then job 1's
    jobs, entries, last_beat, done = _streamer_run(program, words, releases, config)
    assert jobs == [job for job, _ in want]
    assert entries == [sum(int(t) << (5 * j) for j, t in enumerate(row))
                       for _, idx in want for row in idx]
    model = _Streamer(TopTiming(config, read_latency=2, write_latency=2, reads_in_flight=8),
                      program)
    ends = []
    for job in range(len(want)):
        ends.append(model.weights_in(job))
        if job < len(releases):
            model.release(job, releases[job])
    lasts = np.cumsum([len(idx) for _, idx in want]) - 1
    assert [last_beat[i] for i in lasts] == ends
    assert ends[2] > releases[0]                # job 2 waited for job 0's bank
    # the bad LINEAR is fetched after the last stream and not streamed: DONE after its DECODE
    assert done == ends[-1] + 1 + 2 + 6 + 1
