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
    Command ``(addr, beats)`` in, ``beats`` data beats out. Up to ``max_in_flight`` bursts
    outstanding: ARs go out one a cycle while a slot is free, and a burst's slot frees with its
    last R beat (``rready`` is ``data.ready``, so back-pressure on ``data`` stalls the R
    channel; the memory holds the beats of the bursts behind).
``WriteDMA``
    Command in, ``beats`` data beats in. Up to ``max_in_flight`` bursts outstanding: AWs go
    out one a cycle while a slot is free (a slot frees with its B response), the W beats
    follow in order, a burst's first W beat no earlier than the cycle its AW is offered.

With one burst in flight (``max_in_flight=1``, the default) the memory's latency is paid per
burst; with several, a long transfer streams a beat a cycle. Either way every transfer's
timing is a function of the memory latency (``cycles``, ``golden.ddr.read_schedule`` and
``write_schedule``), which the accelerator's schedule relies on. The latencies of
cocotbext-axi's ``AxiRam`` (no pauses) on Verilator are ``AXIRAM_READ_LATENCY`` and
``AXIRAM_WRITE_LATENCY``.

A command's ``addr`` is a byte address aligned to ``data_width / 8`` (the low bits are
ignored); ``beats`` is the number of data beats. A command with ``beats == 0`` is accepted
and does nothing. The next command is accepted in the cycle after the previous one finished
(``cmd.ready`` is ``idle``), so ``cycles`` is also the period of back-to-back commands.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.ddr import (
    AXIRAM_READ_LATENCY,
    AXIRAM_WRITE_LATENCY,
    BOUNDARY,
    DMA_FIRST_REQUEST,
    bursts,
    check_addr_width,
    check_data_width,
    check_max_burst,
    read_schedule,
    write_schedule,
)
from . import arith

__all__ = ["AXIRAM_READ_LATENCY", "AXIRAM_WRITE_LATENCY", "BOUNDARY", "Resp", "axi4_signature",
           "axilite_signature", "dma_command_layout", "bursts", "ReadDMA",
           "WriteDMA"]


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

    def __init__(self, data_dir, *, addr_width, data_width, max_burst, max_in_flight):
        if (not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool)
                or not 1 <= max_in_flight <= 64):
            raise ValueError(f"max_in_flight must be an integer from 1 to 64 (bursts), got "
                             f"{max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.addr_width = check_addr_width(addr_width, 12)
        self.data_width = check_data_width(data_width)
        self.max_burst = check_max_burst(max_burst)
        if max_burst & (max_burst - 1):
            raise ValueError(f"max_burst must be a power of two (the burst walk relies on it), "
                             f"got {max_burst!r}")
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

    def _walker(self, m, prefix=""):
        """The burst walk of a command: registers of the next burst's address, the beats not
        requested yet and ``cap``, the longest the next burst may be (``min(max_burst, beats
        to the next 4 KiB boundary)``), with the next burst's length ``n = min(left, cap)``.

        ``_load`` takes a command; the cycle after (``primed`` low) the walk computes ``cap``
        from the address; each ``_step`` (a burst requested) moves on by ``cap`` (the whole
        burst unless it was the last: then ``left`` becomes 0). With ``max_burst`` and the
        page both powers of two, the beats to the boundary after a full burst are the ones
        before it less ``max_burst`` (``whole``: full bursts to the boundary, ``part``: the
        fragment before it), so no step computes a compare of its own result."""
        s, aw = self.size_log2, self.addr_width
        page = BOUNDARY >> s                                    # beats in a 4 KiB page
        burst = min(self.max_burst, page)
        k = burst.bit_length() - 1
        walk = {
            "addr": Signal(aw, name=f"{prefix}addr"),
            "left": Signal(20, name=f"{prefix}left"),
            "cap": Signal(range(burst + 1), name=f"{prefix}cap"),
            "whole": Signal(range(page // burst + 1), name=f"{prefix}whole"),
            "part": Signal(k, name=f"{prefix}part"),
            "primed": Signal(name=f"{prefix}primed"),
        }
        n = arith.wire(m, range(burst + 1), Mux(walk["left"] < walk["cap"], walk["left"],
                                                  walk["cap"]), name=f"{prefix}n")
        walk["n"] = n
        walk["burst"], walk["page"] = burst, page
        return walk

    def _load(self, m, walk):
        """In the cycle a command is accepted: the walk takes it (address aligned)."""
        s = self.size_log2
        aligned = Signal(self.addr_width)
        m.d.comb += aligned.eq(self.cmd.payload.addr)
        if s:
            m.d.comb += aligned[:s].eq(0)
        m.d.sync += [walk["addr"].eq(aligned), walk["left"].eq(self.cmd.payload.beats),
                     walk["primed"].eq(0)]

    def _prime(self, m, walk):
        """The cycle after a command is taken: ``cap`` of its first burst."""
        s, burst, page = self.size_log2, walk["burst"], walk["page"]
        k = burst.bit_length() - 1
        to_page = arith.wire(m, range(page + 1),
                             page - walk["addr"][s:s + page.bit_length() - 1])
        whole = to_page >> k
        m.d.sync += [walk["whole"].eq(whole), walk["part"].eq(to_page[:k]),
                     walk["cap"].eq(Mux(whole != 0, burst, to_page[:k])),
                     walk["primed"].eq(1)]

    def _step(self, m, walk):
        """A burst of ``n`` beats is requested: on to the next."""
        s, burst, page = self.size_log2, walk["burst"], walk["page"]
        addr, left, cap = walk["addr"], walk["left"], walk["cap"]
        whole, part = walk["whole"], walk["part"]
        fragment = whole == 0                    # this burst ends at the boundary: cap = part
        at_boundary = fragment | ((whole == 1) & (part == 0))
        m.d.sync += [
            addr.eq(Cat(addr[:s], addr[s:] + cap)),
            left.eq(Mux(left > cap, left - cap, 0)),
            whole.eq(Mux(at_boundary, page // burst, whole - 1)),
            part.eq(Mux(fragment, 0, part)),
            cap.eq(Mux(fragment | (whole != 1) | (part == 0), burst, part)),
        ]


class ReadDMA(_DMA):
    """DDR to stream: AXI4 INCR read bursts, up to ``max_in_flight`` of them outstanding.

    Parameters
    ----------
    addr_width : int
        AXI address width (12 to 64; the command's 32-bit address is zero-extended or
        truncated to it).
    data_width : int
        AXI data width and data beat width (8 to 1024 bits, a power of two).
    max_burst : int
        Longest burst in beats (1 to 256).
    max_in_flight : int
        Bursts outstanding at most (1 to 64): ARs whose last R beat has not been taken.

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

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, max_burst: int = 16,
                 max_in_flight: int = 1):
        super().__init__(Out, addr_width=addr_width, data_width=data_width,
                         max_burst=max_burst, max_in_flight=max_in_flight)

    def schedule(self, addr: int, beats: int, *, latency: int = AXIRAM_READ_LATENCY,
                 max_reads: int | None = None) -> list:
        """Stall-free cycle of every data beat, counted from the cycle that accepts the
        command (cycle 0), against a memory of first-beat ``latency`` that keeps ``max_reads``
        bursts outstanding (None: no limit of its own): ``golden.ddr.read_schedule`` from an
        AR in cycle ``DMA_FIRST_REQUEST``."""
        _check_latency(latency)
        in_flight = self.max_in_flight if max_reads is None else min(self.max_in_flight,
                                                                    max_reads)
        return read_schedule(self.bursts(addr, beats), start=DMA_FIRST_REQUEST, latency=latency,
                             in_flight=in_flight)

    def cycles(self, addr: int, beats: int, *, latency: int = AXIRAM_READ_LATENCY,
               max_reads: int | None = None) -> int:
        """Stall-free cycles from accepting the command to accepting its last data beat,
        both included (``schedule``'s last beat + 1); with one burst in flight,
        ``len(bursts) * latency + beats + 2``.

        The first AR goes out two cycles after the command (``DMA_FIRST_REQUEST``: the
        cycle between computes its length) and is accepted at once (the next
        ones one a cycle while a slot is free); ``latency`` is the memory's cycles from the AR
        handshake to the first R handshake (``AXIRAM_READ_LATENCY`` for cocotbext-axi's
        ``AxiRam``), then one beat a cycle. The next command is accepted in the cycle after
        the last beat, so this is also the period of back-to-back commands.
        """
        return self.schedule(addr, beats, latency=latency, max_reads=max_reads)[-1] + 1

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        walk = self._walker(m)                      # left: beats not requested yet
        active = Signal()                           # a command in progress
        due = Signal(20)                            # beats of it not received yet
        in_flight = Signal(range(self.max_in_flight + 1))
        beat = Signal()
        ar = Signal()
        m.d.comb += [
            bus.araddr.eq(walk["addr"]),
            bus.arlen.eq(walk["n"] - 1),
            bus.arsize.eq(self.size_log2),
            bus.arburst.eq(1),                     # INCR
            bus.arvalid.eq(active & walk["primed"] & (walk["left"] != 0)
                           & (in_flight != self.max_in_flight)),
            ar.eq(bus.arvalid & bus.arready),
            self.data.payload.eq(bus.rdata),
            self.data.valid.eq(active & bus.rvalid),
            bus.rready.eq(active & self.data.ready),
            beat.eq(bus.rvalid & bus.rready),
            self.idle.eq(~active),
            self.cmd.ready.eq(~active),
        ]
        with m.If(active & ~walk["primed"]):
            self._prime(m, walk)
        with m.If(ar):
            self._step(m, walk)
        m.d.sync += in_flight.eq(in_flight + ar - (beat & bus.rlast))
        with m.If(beat):
            m.d.sync += due.eq(due - 1)
            with m.If(due == 1):
                m.d.sync += active.eq(0)
        with m.If(~active & self.cmd.valid):
            self._load(m, walk)
            m.d.sync += [due.eq(self.cmd.payload.beats), active.eq(self.cmd.payload.beats != 0)]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(beat & (bus.rresp != Resp.OKAY)):
            m.d.sync += self.error.eq(1)
        return m


class WriteDMA(_DMA):
    """Stream to DDR: AXI4 INCR write bursts, up to ``max_in_flight`` of them outstanding.

    Parameters
    ----------
    addr_width, data_width, max_burst, max_in_flight
        As for ``ReadDMA`` (``max_in_flight``: AWs without their B response).

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

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, max_burst: int = 16,
                 max_in_flight: int = 1):
        super().__init__(In, addr_width=addr_width, data_width=data_width,
                         max_burst=max_burst, max_in_flight=max_in_flight)

    def responses(self, addr: int, beats: int, available=None, *,
                  latency: int = AXIRAM_WRITE_LATENCY) -> list:
        """Cycle of every B response, counted from the cycle that accepts the command (cycle
        0), when beat ``j`` is available from cycle ``available[j]`` (default: all at once)
        and the memory takes every AW at once: ``golden.ddr.write_schedule`` from cycle
        ``DMA_FIRST_REQUEST``."""
        _check_latency(latency)
        if available is None:
            available = [0] * beats
        return write_schedule(self.bursts(addr, beats), list(available), start=DMA_FIRST_REQUEST,
                              latency=latency, in_flight=self.max_in_flight)

    def cycles(self, addr: int, beats: int, *, latency: int = AXIRAM_WRITE_LATENCY) -> int:
        """Stall-free cycles from accepting the command to ``idle`` high again (the cycle
        after its last B handshake), counting the first and not the last (``responses``'
        last + 1); with one burst in flight, ``len(bursts) * latency + beats + 2``.

        The first AW and W beat go out two cycles after the command (``DMA_FIRST_REQUEST``)
        and are accepted at once,
        one W beat a cycle; ``latency`` is the memory's cycles from the burst's last W
        handshake to its B handshake (``AXIRAM_WRITE_LATENCY`` for cocotbext-axi's
        ``AxiRam``). ``idle`` is ``cmd.ready``, so this is also the period of back-to-back
        commands.
        """
        return self.responses(addr, beats, latency=latency)[-1] + 1

    def elaborate(self, platform):
        m = Module()
        bus, limit = self.bus, self.max_in_flight
        walk = self._walker(m, "aw_")                           # bursts not yet offered
        s, page, burst = self.size_log2, walk["page"], walk["burst"]
        active = Signal()
        in_flight = Signal(range(limit + 1))                    # AWs without their B
        # AWs handshaken minus bursts whose W beats are all sent: the W side runs at most
        # one burst ahead of the AW side (-1), and only while that burst's AW is offered
        aw_ahead = Signal(signed((limit + 1).bit_length() + 1))
        # the W side, beat by beat: a beat ends its burst when it is the command's last, the
        # burst's ``burst``-th or the page's last (``bursts``' three limits)
        w_left = Signal(20)                                     # W beats still to send
        w_last_beat = Signal()                                  # w_left == 1
        w_page = Signal(page.bit_length() - 1)                  # the next W beat's page beat
        count = Signal(range(max(burst, 2)))                    # W beats sent in this burst
        last = Signal()
        aw, w, b = Signal(), Signal(), Signal()
        w_open = Signal()
        m.d.comb += [
            bus.awaddr.eq(walk["addr"]),
            bus.awlen.eq(walk["n"] - 1),
            bus.awsize.eq(s),
            bus.awburst.eq(1),                     # INCR
            bus.awvalid.eq(active & walk["primed"] & (walk["left"] != 0)
                           & (in_flight != limit)),
            aw.eq(bus.awvalid & bus.awready),
            w_open.eq(active & walk["primed"] & (w_left != 0)
                      & ((aw_ahead > 0) | ((aw_ahead == 0) & bus.awvalid))),
            bus.wdata.eq(self.data.payload),
            bus.wstrb.eq(-1),
            last.eq(w_last_beat | (count == burst - 1) | (w_page == page - 1)),
            bus.wlast.eq(last),
            bus.wvalid.eq(self.data.valid & w_open),
            self.data.ready.eq(bus.wready & w_open),
            w.eq(bus.wvalid & bus.wready),
            bus.bready.eq(active),
            b.eq(bus.bvalid & bus.bready),
            self.idle.eq(~active),
            self.cmd.ready.eq(~active),
        ]
        with m.If(active & ~walk["primed"]):
            self._prime(m, walk)
            m.d.sync += [w_left.eq(walk["left"]), w_last_beat.eq(walk["left"] == 1),
                         w_page.eq(walk["addr"][s:s + len(w_page)])]
        with m.If(aw):
            self._step(m, walk)
        m.d.sync += [in_flight.eq(in_flight + aw - b),
                     aw_ahead.eq(aw_ahead + aw - (w & last))]
        with m.If(w):
            m.d.sync += [count.eq(Mux(last, 0, count + 1)), w_page.eq(w_page + 1),
                         w_left.eq(w_left - 1), w_last_beat.eq(w_left == 2)]
        with m.If(b & (in_flight == 1) & (walk["left"] == 0)):  # the last burst's B
            m.d.sync += active.eq(0)
        with m.If(~active & self.cmd.valid):
            self._load(m, walk)
            m.d.sync += [active.eq(self.cmd.payload.beats != 0), count.eq(0), aw_ahead.eq(0),
                         w_left.eq(0)]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(b & (bus.bresp != Resp.OKAY)):
            m.d.sync += self.error.eq(1)
        return m
