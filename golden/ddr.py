# SPDX-License-Identifier: BSD-3-Clause
"""DDR timing profiles: the memory the accelerator's AXI masters see, shared by the RTL
co-simulation harness (``rtl.harness``) and the cycle model of the top (``sim.accelerator``).

A profile is given in physical units where it describes a board (``kv260``) and turned into
cycles at the fabric clock by :meth:`DdrProfile.timing`:

- ``read_latency``: cycles from a burst's AR handshake to its first R beat;
- ``write_latency``: cycles from a burst's last W beat (or its AW, if later) to its B response;
- ``max_reads`` / ``max_writes``: bursts a port keeps outstanding (``arready`` / ``awready``
  low at the limit);
- a bandwidth cap shared by all ports: ``bytes_per_cycle`` of credit a cycle, into a bucket of
  ``bucket_bytes`` (full at the start); every 16-byte R or W beat takes 16 bytes of it.

The ``kv260`` figures are the simulator's Zynq UltraScale+ estimates (``research/
toolchain.md`` section 6, ``research/streaming-budget.md``): DDR4-2400 x64 at 19.2 GB/s peak,
85 % of it on long streams, about 200 ns to the first read beat through the PS DDR controller,
128-beat read and write buffers per HP port (eight 16-beat bursts). The write-response
latency and the bucket size are engineering estimates (no measurement behind them yet).
``ideal`` answers like cocotbext-axi's ``AxiRam``: two cycles, no limits.
"""

import math
from dataclasses import dataclass

__all__ = ["DDR_PEAK_BYTES_PER_S", "DDR_STREAM_EFFICIENCY", "DDR_READ_LATENCY_S",
           "DDR_WRITE_LATENCY_S", "HP_PORT_BURSTS", "DDR_BUCKET_BYTES", "DdrTiming",
           "DdrProfile", "PROFILES", "profile"]

#: [P] DDR4-2400 x64 on the KV260: 2400 MT/s x 8 bytes
DDR_PEAK_BYTES_PER_S = 19.2e9
#: [3P] fraction of the peak a long sequential stream reaches on the KV260 (Li et al.,
#: arXiv 2502.10659: LLaMA2-7B on a bare-metal KV260 at 85 % of the bandwidth bound)
DDR_STREAM_EFFICIENCY = 0.85
#: [E] first-beat read latency from a PL AXI master through the PS DDR controller
DDR_READ_LATENCY_S = 200e-9
#: [E] last W beat to B response through an HP port (writes are acknowledged once the DDR
#: controller has taken them, before they reach the DRAM)
DDR_WRITE_LATENCY_S = 100e-9
#: [P] UG1085: each HP port buffers 128 read and 128 write beats = eight 16-beat bursts
HP_PORT_BURSTS = 8
#: [E] bytes the DDR side can move ahead of its average rate (one 4 KiB page)
DDR_BUCKET_BYTES = 4096


@dataclass(frozen=True)
class DdrTiming:
    """A DDR profile in cycles of the fabric clock (see the module docstring)."""

    read_latency: int
    write_latency: int
    max_reads: int
    max_writes: int
    bytes_per_cycle: float | None       # None: no bandwidth cap
    bucket_bytes: int = DDR_BUCKET_BYTES

    def __post_init__(self):
        for name in ("read_latency", "write_latency", "max_reads", "max_writes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer (cycles or bursts), "
                                 f"got {value!r}")
        if self.bytes_per_cycle is not None and not (
                math.isfinite(self.bytes_per_cycle) and self.bytes_per_cycle >= 1):
            raise ValueError(f"bytes_per_cycle must be at least 1 (or None for no cap), got "
                             f"{self.bytes_per_cycle!r}")

    def caps(self, beats_per_cycle: int) -> bool:
        """Whether the bandwidth cap can delay a beat of masters that move at most
        ``beats_per_cycle`` 16-byte beats a cycle in all: the bucket starts full and regains
        at least what they take each cycle unless ``bytes_per_cycle`` is below their peak."""
        if self.bytes_per_cycle is None:
            return False
        peak = 16 * beats_per_cycle
        return self.bytes_per_cycle < peak or self.bucket_bytes < peak


@dataclass(frozen=True)
class DdrProfile:
    """A named DDR model: latencies in seconds (board profiles) or cycles (``ideal``)."""

    name: str
    read_latency_s: float | None = None
    write_latency_s: float | None = None
    read_latency_cycles: int | None = None
    write_latency_cycles: int | None = None
    max_reads: int = 1 << 16
    max_writes: int = 1 << 16
    peak_bytes_per_s: float | None = None
    efficiency: float = 1.0
    description: str = ""

    def timing(self, clock_mhz: float) -> DdrTiming:
        """This profile in cycles at ``clock_mhz`` (latencies rounded to the nearest cycle)."""
        if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz)
                and clock_mhz > 0):
            raise ValueError(f"clock_mhz must be a positive number, got {clock_mhz!r}")
        hz = clock_mhz * 1e6

        def cycles(seconds, fixed):
            return fixed if fixed is not None else max(1, round(seconds * hz))

        rate = None
        if self.peak_bytes_per_s is not None:
            rate = self.peak_bytes_per_s * self.efficiency / hz
        return DdrTiming(read_latency=cycles(self.read_latency_s, self.read_latency_cycles),
                         write_latency=cycles(self.write_latency_s, self.write_latency_cycles),
                         max_reads=self.max_reads, max_writes=self.max_writes,
                         bytes_per_cycle=rate)


PROFILES = {
    "kv260": DdrProfile(
        "kv260", read_latency_s=DDR_READ_LATENCY_S, write_latency_s=DDR_WRITE_LATENCY_S,
        max_reads=HP_PORT_BURSTS, max_writes=HP_PORT_BURSTS,
        peak_bytes_per_s=DDR_PEAK_BYTES_PER_S, efficiency=DDR_STREAM_EFFICIENCY,
        description="KV260 PS DDR4 through an HP port: 200 ns to the first read beat, 100 ns "
                    "to a write response, 8 bursts outstanding per direction, 85 % of "
                    "19.2 GB/s shared by all ports"),
    "ideal": DdrProfile(
        "ideal", read_latency_cycles=2, write_latency_cycles=2,
        description="an AxiRam-like memory: 2 cycles to the first read beat and to a write "
                    "response, no outstanding or bandwidth limit"),
}


def profile(name: str) -> DdrProfile:
    """The DDR profile called ``name`` (``kv260`` or ``ideal``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown DDR profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
