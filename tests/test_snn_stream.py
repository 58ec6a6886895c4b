# SPDX-License-Identifier: BSD-3-Clause
"""host.neural streaming runtime: gaps and bursts, an hour of bins."""

import time

import numpy as np
import pytest

from ternedge.golden import bessel
from ternedge.golden import snn as golden
from ternedge.host import neural
from ternedge.host.errors import InputError
from ternedge.host.neural_data import spike_stream


def seeded(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def random_network(rng, channels=96, resets=("subtract", "zero", "none")):
    sizes = (channels, 32, 48, 2)
    return golden.Network([
        golden.Layer(rng.integers(-127, 128, size=(n, k)), rng.integers(-99999, 99999, size=n),
                     int(rng.integers(0, 4097)), int(rng.integers(0, 600000)), reset,
                     int(rng.integers(10, 20)))
        for (k, n), reset in zip(zip(sizes, sizes[1:], strict=False), resets, strict=False)])


class _Backend(neural._GoldenBackend):
    pass


@pytest.mark.parametrize("filter", ["none", "causal", "block-last", "block-middle",
                                    "block-amortized"])
def test_gaps_and_bursts_keep_every_bin_once(filter):
    rng = seeded(8)
    net = random_network(rng)
    bins = (rng.random((700, 96)) < 0.08).astype(np.uint8)
    expected = golden.run(net, bins)[0]
    if filter == "causal":
        expected = bessel.lfilter(expected, zero_state=False)
    elif filter == "block-amortized":
        expected = bessel.amortized_block_filter(expected)
    elif filter.startswith("block"):
        expected = bessel.block_filter(expected, tap=filter.split("-")[1])
    stream = neural.NeuralStream(_Backend(net), filter=filter, block=64)
    got, fed, next_out = [], 0, 0
    while fed < len(bins):
        burst = int(rng.choice([1, 2, 3, 50, 64, 65, 200]))        # single bins and bursts
        stream.feed(fed, bins[fed:fed + burst])
        fed += len(bins[fed:fed + burst])
        for _ in range(int(rng.integers(0, 3))):                   # polls with nothing new
            first, out = stream.poll()
            assert first == next_out
            next_out += len(out)
            got.append(out)
        assert stream.pending_bins < stream.block
    first, out = stream.flush()
    assert first == next_out
    got.append(out)
    got = np.concatenate(got)
    assert len(got) == len(bins)
    np.testing.assert_array_equal(np.round(got * 65536).astype(np.int64), expected)


def test_dropped_duplicated_and_bad_bins_are_errors():
    rng = seeded(9)
    stream = neural.NeuralStream(_Backend(random_network(rng)), block=16)
    stream.feed(0, np.zeros((10, 96), np.uint8))
    with pytest.raises(InputError, match="dropped"):
        stream.feed(12, np.zeros((1, 96), np.uint8))
    with pytest.raises(InputError, match="duplicated"):
        stream.feed(9, np.zeros((1, 96), np.uint8))
    with pytest.raises(InputError, match="binary"):
        stream.feed(10, np.full((1, 96), 2, np.uint8))
    with pytest.raises(InputError, match="filter"):
        neural.NeuralStream(_Backend(random_network(rng)), filter="kalman")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_one_simulated_hour_bounded_memory():
    """900,000 bins (1 h at 4 ms) in bursts of up to 4,096: every bin decoded exactly once, in
    order, state identical to one uninterrupted run, bounded buffers, no memory growth after
    the first five minutes (resident set, so tracing does not slow the hour down)."""
    rng = seeded(10)
    net = random_network(rng)
    hour = 900_000
    start = time.perf_counter()
    stream = neural.NeuralStream(_Backend(net), block=2048)
    emitted = 0
    checksum = np.zeros(2)
    rss_after_warmup = None
    for first, chunk in spike_stream(seed=11, channels=96, bins=hour, rate=0.06, chunk=4096):
        for part in np.array_split(chunk, 3):                         # uneven bursts
            stream.feed(first, part)
            first += len(part)
        index, out = stream.poll()
        assert index == emitted
        emitted += len(out)
        checksum += out.sum(axis=0)
        if rss_after_warmup is None and emitted >= 75_000:
            rss_after_warmup = _rss_bytes()
    index, out = stream.flush()
    emitted += len(out)
    checksum += out.sum(axis=0)
    growth = _rss_bytes() - rss_after_warmup
    elapsed = time.perf_counter() - start
    print(f"1 h of bins in {elapsed:.1f} s, resident growth after 5 min {growth / 1e6:.1f} MB")
    assert emitted == hour and stream.next_index == hour
    assert stream.max_buffered < 2048 + 4096
    assert growth < 16e6
    # the same bins in one pass give the same final state and the same outputs' sum
    state = golden.State.zeros(net)
    total = np.zeros(2)
    for _, chunk in spike_stream(seed=11, channels=96, bins=hour, rate=0.06, chunk=4096):
        out, state = golden.run(net, chunk, state)
        total += out.sum(axis=0) / 65536
    np.testing.assert_allclose(checksum, total, rtol=0, atol=1e-6)
    for a, b in zip(stream.backend.state.u, state.u, strict=False):
        np.testing.assert_array_equal(a, b)
