# SPDX-License-Identifier: BSD-3-Clause
"""AXI4 / AXI4-Lite signatures and the accelerator's two DDR DMA engines.

``axi4_signature`` / ``axilite_signature``
    The MASTER view of an AXI4 (no ID, lock, cache, prot, QoS, region or user signals) and an
    AXI4-Lite bus (no ``awprot`` / ``arprot``). Members carry the AXI spec's lowercase names
    without the channel prefix: a component port ``bus: Out(axi4_signature())`` converts to
    Verilog ports ``bus__awaddr``, ``bus__awlen``, ... (Amaranth joins paths with ``__``), which
    cocotbext-axi finds with ``AxiBus.from_prefix(dut, "bus_")`` (its bus separator is ``_``).
    cocotbext-axi's AXI4 models require ``awid``, ``bid``, ``arid`` and ``rid``: a test top
    adds them as constant / ignored ports (see ``tests/cocotb_axi_bench.py``).
``bursts``
    How both DMAs split a command (their hardware does the same, and their ``cycles`` models
    call it): INCR bursts of at most ``max_burst`` beats that never cross a 4 KiB boundary.
``ReadDMA``
    Command ``(addr, beats)`` in, ``beats`` data beats out. One burst in flight: AR, then all
    of its R beats (``rready`` is ``data.ready``, so back-pressure on ``data`` stalls the R
    channel), then the next AR.
``WriteDMA``
    Command in, ``beats`` data beats in. One burst in flight: AW together with its W beats,
    then the B response, then the next burst.

One burst in flight costs bandwidth (the memory's latency is paid per burst) but makes every
transfer's timing a closed formula of the memory latency (``cycles``), which the accelerator's
schedule relies on. The latencies of cocotbext-axi's ``AxiRam`` (no pauses) on Verilator are
``AXIRAM_READ_LATENCY`` and ``AXIRAM_WRITE_LATENCY``.

A command's ``addr`` is a byte address aligned to ``data_width / 8`` (the low bits are
ignored); ``beats`` is the number of data beats. A command with ``beats == 0`` is accepted
and does nothing. The next command is accepted in the cycle after the previous one finished
(``cmd.ready`` is ``idle``), so ``cycles`` is also the period of back-to-back commands.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.ddr import (
    AXIRAM_READ_LATENCY,
    AXIRAM_WRITE_LATENCY,
    BOUNDARY,
    bursts,
    check_addr_width,
    check_data_width,
    check_max_burst,
)
from . import arith

__all__ = ["AXIRAM_READ_LATENCY", "AXIRAM_WRITE_LATENCY", "BOUNDARY", "Resp", "axi4_signature",
           "axilite_signature", "dma_command_layout", "bursts", "ReadDMA", "WriteDMA"]

class Resp:
    """AXI response codes (``xRESP``)."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def axi4_signature(*, addr_width: int = 32, data_width: int = 128) -> wiring.Signature:
    """AXI4 master view (``Out`` = driven by the master), without ID and optional signals.

    Members: ``awaddr awlen(8) awsize(3) awburst(2) awvalid`` Out, ``awready`` In;
    ``wdata wstrb(data_width/8) wlast wvalid`` Out, ``wready`` In; ``bresp(2) bvalid`` In,
    ``bready`` Out; ``araddr arlen arsize arburst arvalid`` Out, ``arready`` In;
    ``rdata rresp(2) rlast rvalid`` In, ``rready`` Out. A slave uses ``In(axi4_signature())``.
    """
    check_addr_width(addr_width, 12)
    check_data_width(data_width)
    return wiring.Signature({
        "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


def axilite_signature(*, addr_width: int = 8, data_width: int = 32) -> wiring.Signature:
    """AXI4-Lite master view, without ``awprot`` / ``arprot`` (optional in cocotbext-axi).

    Members: ``awaddr awvalid`` Out, ``awready`` In; ``wdata wstrb wvalid`` Out, ``wready`` In;
    ``bresp(2) bvalid`` In, ``bready`` Out; ``araddr arvalid`` Out, ``arready`` In;
    ``rdata rresp(2) rvalid`` In, ``rready`` Out. A slave uses ``In(axilite_signature())``.
    """
    check_addr_width(addr_width, 1)
    if data_width not in (32, 64):
        raise ValueError(f"AXI4-Lite data_width must be 32 or 64, got {data_width!r}")
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def dma_command_layout() -> data.StructLayout:
    """A DMA command: ``addr`` (byte address, aligned to ``data_width / 8``) and ``beats``
    (data beats, at least 1)."""
    return data.StructLayout({"addr": unsigned(32), "beats": unsigned(20)})


def _check_latency(latency):
    if not isinstance(latency, int) or isinstance(latency, bool) or latency < 1:
        raise ValueError(f"latency must be a positive integer (cycles), got {latency!r}")
    return latency


class _DMA(wiring.Component):
    """What both DMAs share: parameters, ports but ``data``, the burst-length logic."""

    def __init__(self, data_dir, *, addr_width, data_width, max_burst):
        self.addr_width = check_addr_width(addr_width, 12)
        self.data_width = check_data_width(data_width)
        self.max_burst = check_max_burst(max_burst)
        self.size_log2 = (data_width // 8).bit_length() - 1
        super().__init__({
            "bus": Out(axi4_signature(addr_width=addr_width, data_width=data_width)),
            "cmd": In(stream.Signature(dma_command_layout())),
            "data": data_dir(stream.Signature(unsigned(data_width))),
            "idle": Out(1),
            "error": Out(1),
            "clear": In(1),
        })

    def bursts(self, addr: int, beats: int) -> list:
        """``bursts(addr, beats)`` with this DMA's width, burst limit and address width."""
        return bursts(addr, beats, data_width=self.data_width, max_burst=self.max_burst,
                      addr_width=self.addr_width)

    def _registers(self, m):
        """Command registers (current burst address, beats left) and the burst length ``n``:
        ``min(left, max_burst, beats to the next 4 KiB boundary)``."""
        s = self.size_log2
        addr = Signal(self.addr_width)
        left = Signal(20)
        page = BOUNDARY >> s                                    # beats in a 4 KiB page
        to_page = arith.wire(m, range(page + 1), page - addr[s:12], name="to_page")
        cap = arith.wire(m, range(max(page, self.max_burst) + 1),
                         Mux(to_page < self.max_burst, to_page, self.max_burst), name="cap")
        n = arith.wire(m, range(self.max_burst + 1), Mux(left < cap, left, cap), name="n")
        return addr, left, n

    def _load(self, m, addr, left):
        """In the cycle a command is accepted: the registers take it (address aligned)."""
        s = self.size_log2
        cmd_addr = self.cmd.payload.addr
        aligned = Signal(self.addr_width)
        m.d.comb += aligned.eq(cmd_addr)
        if s:
            m.d.comb += aligned[:s].eq(0)
        m.d.sync += [addr.eq(aligned), left.eq(self.cmd.payload.beats)]

    def _advance(self, m, addr, left, n):
        m.d.sync += [addr.eq(addr + (n << self.size_log2)), left.eq(left - n)]


class ReadDMA(_DMA):
    """DDR to stream: AXI4 INCR read bursts, one in flight.

    Parameters
    ----------
    addr_width : int
        AXI address width (12 to 64; the command's 32-bit address is zero-extended or
        truncated to it).
    data_width : int
        AXI data width and data beat width (8 to 1024 bits, a power of two).
    max_burst : int
        Longest burst in beats (1 to 256).

    Attributes
    ----------
    bus : Out(axi4_signature(addr_width=addr_width, data_width=data_width))
        AXI4 master; only the read channels are used (``awvalid``, ``wvalid``, ``bready``
        are 0).
    cmd : In(stream.Signature(dma_command_layout()))
        Read ``beats`` beats from ``addr``; ``ready`` is ``idle``.
    data : Out(stream.Signature(unsigned(data_width)))
        The beats: ``rdata``/``rvalid`` straight through, ``rready`` is ``data.ready``.
    idle : Out(1)
        No command in progress.
    error : Out(1)
        Sticky: some R beat had ``rresp != OKAY`` (its data is passed on all the same).
    clear : In(1)
        Clears ``error`` (an error in the same cycle wins).
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, max_burst: int = 16):
        super().__init__(Out, addr_width=addr_width, data_width=data_width,
                         max_burst=max_burst)

    def cycles(self, addr: int, beats: int, *, latency: int = AXIRAM_READ_LATENCY) -> int:
        """Stall-free cycles from accepting the command to accepting its last data beat,
        both included: ``len(bursts) * latency + beats + 1``.

        Each burst's AR goes out the cycle after the command (or the previous burst's last
        beat) and is accepted at once; ``latency`` is the memory's cycles from the AR handshake
        to the first R handshake (``AXIRAM_READ_LATENCY`` for cocotbext-axi's ``AxiRam``), then
        one beat a cycle. The next command is accepted in the cycle after the last beat, so this
        is also the period of back-to-back commands.
        """
        _check_latency(latency)
        plan = self.bursts(addr, beats)
        return len(plan) * latency + beats + 1

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        addr, left, n = self._registers(m)
        m.d.comb += [
            bus.araddr.eq(addr),
            bus.arlen.eq(n - 1),
            bus.arsize.eq(self.size_log2),
            bus.arburst.eq(1),                     # INCR
            self.data.payload.eq(bus.rdata),
        ]
        beat = Signal()
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.cmd.ready.eq(1)]
                with m.If(self.cmd.valid):
                    self._load(m, addr, left)
                    with m.If(self.cmd.payload.beats != 0):
                        m.next = "AR"
            with m.State("AR"):
                m.d.comb += bus.arvalid.eq(1)
                with m.If(bus.arready):
                    m.next = "R"
            with m.State("R"):
                m.d.comb += [
                    self.data.valid.eq(bus.rvalid),
                    bus.rready.eq(self.data.ready),
                    beat.eq(bus.rvalid & self.data.ready),
                ]
                with m.If(beat & bus.rlast):
                    self._advance(m, addr, left, n)
                    with m.If(left == n):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "AR"
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(beat & (bus.rresp != Resp.OKAY)):
            m.d.sync += self.error.eq(1)
        return m


class WriteDMA(_DMA):
    """Stream to DDR: AXI4 INCR write bursts, one in flight.

    Parameters
    ----------
    addr_width, data_width, max_burst
        As for ``ReadDMA``.

    Attributes
    ----------
    bus : Out(axi4_signature(addr_width=addr_width, data_width=data_width))
        AXI4 master; only the write channels are used (``arvalid``, ``rready`` are 0).
        ``wstrb`` is all ones.
    cmd : In(stream.Signature(dma_command_layout()))
        Write ``beats`` beats to ``addr``; ``ready`` is ``idle``.
    data : In(stream.Signature(unsigned(data_width)))
        The beats: straight to ``wdata``/``wvalid`` while a burst's W beats are due,
        ``ready`` is ``wready`` then (0 otherwise).
    idle : Out(1)
        No command in progress: every burst of every accepted command has had its B response.
    error : Out(1)
        Sticky: some B response had ``bresp != OKAY``.
    clear : In(1)
        Clears ``error`` (an error in the same cycle wins).
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, max_burst: int = 16):
        super().__init__(In, addr_width=addr_width, data_width=data_width,
                         max_burst=max_burst)

    def cycles(self, addr: int, beats: int, *, latency: int = AXIRAM_WRITE_LATENCY) -> int:
        """Stall-free cycles from accepting the command to ``idle`` high again (the cycle
        after its last B handshake), counting the first and not the last:
        ``len(bursts) * latency + beats + 1``.

        Each burst's AW and first W beat go out the cycle after the command (or the previous
        burst's B) and are accepted at once, one W beat a cycle; ``latency`` is the memory's
        cycles from the last W handshake to the B handshake (``AXIRAM_WRITE_LATENCY`` for
        cocotbext-axi's ``AxiRam``). ``idle`` is ``cmd.ready``, so this is also the period of
        back-to-back commands.
        """
        _check_latency(latency)
        plan = self.bursts(addr, beats)
        return len(plan) * latency + beats + 1

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        addr, left, n = self._registers(m)
        aw_done = Signal()
        w_done = Signal()
        count = Signal(range(max(self.max_burst, 2)))      # W beats sent in this burst
        last = Signal()
        m.d.comb += [
            bus.awaddr.eq(addr),
            bus.awlen.eq(n - 1),
            bus.awsize.eq(self.size_log2),
            bus.awburst.eq(1),                     # INCR
            bus.wdata.eq(self.data.payload),
            bus.wstrb.eq(-1),
            last.eq(count == n - 1),
            bus.wlast.eq(last),
        ]
        response = Signal()
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.cmd.ready.eq(1)]
                with m.If(self.cmd.valid):
                    self._load(m, addr, left)
                    m.d.sync += [aw_done.eq(0), w_done.eq(0), count.eq(0)]
                    with m.If(self.cmd.payload.beats != 0):
                        m.next = "BURST"
            with m.State("BURST"):
                aw = Signal()
                w = Signal()
                m.d.comb += [
                    bus.awvalid.eq(~aw_done),
                    bus.wvalid.eq(self.data.valid & ~w_done),
                    self.data.ready.eq(bus.wready & ~w_done),
                    aw.eq(bus.awvalid & bus.awready),
                    w.eq(bus.wvalid & bus.wready),
                ]
                with m.If(aw):
                    m.d.sync += aw_done.eq(1)
                with m.If(w):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last):
                        m.d.sync += [w_done.eq(1), count.eq(0)]
                with m.If((aw_done | aw) & (w_done | (w & last))):
                    m.next = "B"
            with m.State("B"):
                m.d.comb += [bus.bready.eq(1), response.eq(bus.bvalid)]
                with m.If(bus.bvalid):
                    self._advance(m, addr, left, n)
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    with m.If(left == n):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BURST"
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(response & (bus.bresp != Resp.OKAY)):
            m.d.sync += self.error.eq(1)
        return m
