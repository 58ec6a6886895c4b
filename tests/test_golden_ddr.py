# SPDX-License-Identifier: BSD-3-Clause
"""DDR timing profiles (``golden.ddr``): the numbers the harness and the cycle model share."""

import pytest

from ternedge.golden import ddr


def test_kv260_profile_in_cycles():
    at_250 = ddr.profile("kv260").timing(250.0)
    assert (at_250.read_latency, at_250.write_latency) == (50, 25)        # 200 ns, 100 ns
    assert (at_250.max_reads, at_250.max_writes) == (8, 8)                 # 128-beat HP FIFOs
    assert at_250.bytes_per_cycle == pytest.approx(19.2e9 * 0.85 / 250e6)  # 65.28
    assert not at_250.caps(beats_per_cycle=2) and at_250.caps(beats_per_cycle=5)
    at_10 = ddr.profile("kv260").timing(10.1)
    assert (at_10.read_latency, at_10.write_latency) == (2, 1)


def test_ideal_profile_is_axiram():
    ideal = ddr.profile("ideal").timing(250.0)
    assert (ideal.read_latency, ideal.write_latency) == (ddr.AXIRAM_READ_LATENCY,
                                                         ddr.AXIRAM_WRITE_LATENCY)
    assert ideal.bytes_per_cycle is None and not ideal.caps(beats_per_cycle=64)
    assert ideal == ddr.profile("ideal").timing(10.1)       # cycles, whatever the clock


@pytest.mark.parametrize("kwargs, message", [
    ({"read_latency": 0}, "read_latency must be a positive integer"),
    ({"max_writes": 1.5}, "max_writes must be a positive integer"),
    ({"bytes_per_cycle": float("nan")}, "bytes_per_cycle must be at least 1"),
    ({"bytes_per_cycle": 32.0, "bucket_bytes": 8}, "bucket_bytes must be an integer of at"),
])
def test_bad_timing_is_refused(kwargs, message):
    fields = {"read_latency": 2, "write_latency": 2, "max_reads": 1, "max_writes": 1,
              "bytes_per_cycle": None} | kwargs
    with pytest.raises(ValueError, match=message):
        ddr.DdrTiming(**fields)


def test_unknown_profile_and_clock():
    with pytest.raises(ValueError, match="unknown DDR profile 'ddr5'"):
        ddr.profile("ddr5")
    with pytest.raises(ValueError, match="clock_mhz must be a positive number"):
        ddr.profile("kv260").timing(0)
