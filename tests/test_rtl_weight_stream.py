# SPDX-License-Identifier: BSD-3-Clause
"""The LINEAR weight stream: golden.isa's layout (over one or several weight ports),
rtl.weight_stream.WeightUnpacker and WeightStreamer."""

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


@pytest.mark.parametrize("ports", [1, 2, 4])
def test_stream_parts_round_trip(ports):
    """Over P ports: padded to P beats, beat b in part b % P, parts whole 4 KiB pages apart."""
    rng = np.random.default_rng(ports)
    for entries in (1, 5, 3040):
        idx = _indices(rng, entries, 28, 5)
        stream = isa.pack_weight_stream(idx, 5, ports)
        beats = len(stream) // isa.BEAT_BYTES
        assert beats == isa.weight_stream_beats(entries, 140, ports) and beats % ports == 0
        assert beats - isa.weight_stream_beats(entries, 140) < ports
        region = isa.weight_region(stream, ports)
        stride = isa.weight_part_stride(beats, ports)
        assert stride % isa.WEIGHT_PART_ALIGN == 0 and stride >= beats // ports * 16
        assert len(region) == isa.weight_region_bytes(beats, ports)
        for b in (0, beats - 1):
            at = b % ports * stride + b // ports * 16
            assert region[at:at + 16] == stream[16 * b:16 * b + 16]
        assert isa.weight_stream_from_region(region, beats, ports) == stream
        np.testing.assert_array_equal(isa.unpack_weight_stream(stream, entries, 28, 5, ports),
                                      idx)
    assert isa.weight_stream_beats(3040, 140, 2) == 3326
    assert isa.weight_region_bytes(3326, 1) == 3326 * 16
    assert isa.weight_region_bytes(3326, 2) == 28672 + 1663 * 16


def test_stream_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lie in \[0, 32\)"):
        isa.pack_weight_stream(np.full((2, 3), 32), 5)
    with pytest.raises(ValueError, match="non-empty"):
        isa.pack_weight_stream(np.zeros((0, 3)), 5)
    with pytest.raises(ValueError, match="is 80 bytes, got 32"):
        isa.unpack_weight_stream(bytes(32), 4, 28, 5)
    with pytest.raises(ValueError, match="entry_bits must be positive"):
        isa.entry_pitch(0)
    with pytest.raises(ValueError, match="weight ports must be one of"):
        isa.weight_stream_beats(4, 140, 3)
    with pytest.raises(ValueError, match="multiple of 2 beats, got 5"):
        isa.weight_part_stride(5, 2)
    with pytest.raises(ValueError, match="spans 4112 bytes, got 16"):
        isa.weight_stream_from_region(bytes(16), 2, 2)


def _unpack_on_rtl(entry_bits, streams, seed, p_valid, p_ready, ports=1):
    """Entry groups (value, cycle) and row handshake cycles of ``streams`` (each a list of
    entries of ``entry_bits``, a multiple of ``ports`` of them) through a WeightUnpacker of
    ``ports`` ports under random stalls."""
    dut = WeightUnpacker(entry_bits=entry_bits, ports=ports)
    rng_in, rng_out = seeded(seed), seeded(seed + 1)
    words, total, row_bytes = [], 0, ports * isa.BEAT_BYTES
    for idx in streams:
        data = isa.pack_weight_stream(idx, 5, ports)
        n = len(data) // row_bytes
        words += [int.from_bytes(data[row_bytes * i:row_bytes * (i + 1)], "little")
                  | (int(i == n - 1) << (8 * row_bytes)) for i in range(n)]
        total += len(idx) // ports
    got, row_cycles = [], []

    async def producer(ctx):
        for word in words:
            row_cycles.append(await put(ctx, dut.rows, word, rng_in, p_valid))

    async def consumer(ctx):
        for _ in range(total):
            got.append(await get(ctx, dut.entries, rng_out, p_ready))

    simulate(Counted(dut), [producer, consumer])
    values = [v for v, _ in got]
    entries = [sum(int(t) << (5 * j) for j, t in enumerate(row)) for idx in streams
               for row in idx]
    want = [sum(e << (entry_bits * f) for f, e in enumerate(entries[i:i + ports]))
            for i in range(0, len(entries), ports)]
    assert values == want
    return got, row_cycles


@pytest.mark.parametrize(("entry_bits", "ports"),
                         [(140, 1), (120, 1), (280, 1), (130, 1), (140, 2), (120, 2), (140, 4)])
def test_unpacker_is_exact_under_stalls(entry_bits, ports):
    rng = np.random.default_rng(entry_bits)
    streams = [_indices(rng, n * ports, entry_bits // 5, 5) for n in (9, 1, 17)]
    _unpack_on_rtl(entry_bits, streams, seed=entry_bits, p_valid=0.6, p_ready=0.5,
                   ports=ports)


@pytest.mark.parametrize(("entry_bits", "ports"), [(140, 1), (120, 1), (280, 1), (140, 2),
                                                   (120, 2), (140, 4)])
def test_unpacker_never_holds_the_stream_up(entry_bits, ports):
    """With the engine always ready, every row goes in the cycle it is offered, and each
    group leaves ``WeightUnpacker.LATENCY`` cycles after the row that completes it."""
    from ternedge.rtl.weight_stream import WeightUnpacker

    rng = np.random.default_rng(1)
    streams = [_indices(rng, 24 * ports, entry_bits // 5, 5),
               _indices(rng, 5 * ports, entry_bits // 5, 5)]
    got, row_cycles = _unpack_on_rtl(entry_bits, streams, seed=5, p_valid=1, p_ready=1,
                                     ports=ports)
    assert np.all(np.diff(row_cycles) == 1)
    pitch, row_bits = isa.entry_pitch(entry_bits), ports * isa.BEAT_BITS
    expected, first = [], 0
    for idx in streams:
        for e in range(ports - 1, len(idx), ports):        # a group's last entry
            last_bit = e * pitch + entry_bits - 1
            expected.append(row_cycles[first + last_bit // row_bits] + WeightUnpacker.LATENCY)
        first += isa.weight_stream_beats(len(idx), entry_bits, ports) // ports
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
    ports = [Memory(bus, 128, 2, words, max_reads=8) for bus in dut.buses]
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
            for mem in ports:
                mem.drive(ctx, now)
            events = [mem.sample(ctx, now) for mem in ports]
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
            for mem, sampled in zip(ports, events, strict=True):
                mem.update(sampled, now)
        raise AssertionError("the streamer's walk did not end")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return jobs, entries, last_beat, out["done"]


@pytest.mark.parametrize(("tables", "ports"), [(28, 1), (28, 2), (24, 2), (28, 4)])
def test_streamer_walks_the_program_and_matches_its_model(tables, ports):
    """Only LINEARs are streamed, in order, each after the bank two jobs back is released, a
    part of its stream over each port; the walk stops at a LINEAR it cannot stream; the timing
    is ``sim.accelerator``'s."""
    from ternedge.golden.config import AcceleratorConfig
    from ternedge.golden.isa import Instruction, Op, Source
    from ternedge.sim.accelerator import (
        CHECK_LATENCY,
        UNPACK_LATENCY,
        TopTiming,
        _Streamer,
        fetch_to_decode,
    )

    config = AcceleratorConfig(group_size=3, tables_per_step=tables, cols_per_cycle=4,
                               fill_entries_per_cycle=ports)
    rng = np.random.default_rng(11)
    words, program, want = {}, [], []
    addr = 4096 + 48                            # parts start mid-page, all at the same offset
    for k_steps, n_blocks, tokens in ((2, 1, 3), (1, 3, 1), (3, 2, 8)):
        idx = _indices(rng, k_steps * n_blocks * 4, tables, 5)
        stream = isa.pack_weight_stream(idx, 5, ports)
        data = isa.weight_region(stream, ports)
        for i in range(0, len(data), 16):
            words[(addr + i) // 16] = int.from_bytes(data[i:i + 16], "little")
        beats = len(stream) // isa.BEAT_BYTES
        program.append(Instruction(Op.NORM, src0=Source(0, 0, 0, 4)))       # skipped
        steps = config.k_per_step // isa.LANES          # a K-step's activation beats
        program.append(Instruction(Op.LINEAR, tokens=tokens, k_steps=k_steps,
                                   n_blocks=n_blocks, src0=Source(0, 0, 0, k_steps * steps),
                                   src1=Source(addr, 0, 0, beats),
                                   dst=Source(0, 0, 0, n_blocks)))
        want.append(((tokens, k_steps, n_blocks), idx))
        addr += len(data) + 4096
    program.append(Instruction(Op.LINEAR, tokens=1, k_steps=5, n_blocks=1,   # too many K-steps
                               src1=Source(addr, 0, 0, 4)))
    program.append(Instruction(Op.NORM))
    releases = [400, 900]                       # the engine frees job 0's bank, then job 1's
    jobs, entries, last_beat, done = _streamer_run(program, words, releases, config)
    assert jobs == [job for job, _ in want]
    codes = [sum(int(t) << (5 * j) for j, t in enumerate(row)) for _, idx in want for row in idx]
    width = tables * 5
    assert entries == [sum(c << (width * f) for f, c in enumerate(codes[i:i + ports]))
                       for i in range(0, len(codes), ports)]
    model = _Streamer(TopTiming(config, read_latency=2, write_latency=2, reads_in_flight=8),
                      program)
    ends = []
    for job in range(len(want)):
        ends.append(model.weights_in(job))
        if job < len(releases):
            model.release(job, releases[job])
    lasts = np.cumsum([len(idx) // ports for _, idx in want]) - 1
    assert [last_beat[i] for i in lasts] == ends
    assert ends[2] > releases[0]                # job 2 waited for job 0's bank
    # the bad LINEAR is fetched after the last stream's last row and not streamed: DONE after
    # its checks
    assert done == ends[-1] - UNPACK_LATENCY + 1 + fetch_to_decode(model.t) + CHECK_LATENCY
