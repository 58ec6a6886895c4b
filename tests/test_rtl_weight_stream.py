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
