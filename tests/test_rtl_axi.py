# SPDX-License-Identifier: BSD-3-Clause
"""rtl.axi and rtl.regs on Amaranth's simulator: burst splitting, the DMAs against a Python AXI
memory of any latency (data under random stalls, exact stall-free cycles), and the register
block driven by a small Python AXI4-Lite master."""

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.sim import Simulator
from rtl_streams import seeded

from ternedge.rtl import axi, regs

# constructors that raise leave a half-built Elaboratable behind; that is the point of the test
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# -- bursts ---------------------------------------------------------------------------------

def test_bursts_split():
    assert axi.bursts(0, 1) == [(0, 1)]
    assert axi.bursts(0, 16) == [(0, 16)]
    assert axi.bursts(0, 17) == [(0, 16), (256, 1)]
    assert axi.bursts(0x100, 40) == [(0x100, 16), (0x200, 16), (0x300, 8)]
    # 4 KiB: 0xFE0 + 2 beats of 16 bytes reaches 0x1000
    assert axi.bursts(0xFE0, 5) == [(0xFE0, 2), (0x1000, 3)]
    assert axi.bursts(0x1FF0, 1 + 32) == [(0x1FF0, 1), (0x2000, 16), (0x2100, 16)]
    assert axi.bursts(0xF00, 40, max_burst=256) == [(0xF00, 16), (0x1000, 24)]
    assert axi.bursts(0xFFC, 3, data_width=32, max_burst=4) == [(0xFFC, 1), (0x1000, 2)]
    assert axi.bursts(0, 300, max_burst=256) == [(0, 256), (0x1000, 44)]
    assert axi.bursts(0xFFFF_FFF0, 1) == [(0xFFFF_FFF0, 1)]


def test_bursts_properties():
    rng = seeded(11)
    for _ in range(300):
        width = int(rng.choice([8, 32, 64, 128, 512, 1024]))
        size = width // 8
        max_burst = int(rng.integers(1, 257))
        beats = int(rng.integers(1, 2000))
        addr = size * int(rng.integers(0, (1 << 20) // size))
        plan = axi.bursts(addr, beats, data_width=width, max_burst=max_burst)
        assert sum(n for _, n in plan) == beats
        expected = addr
        for a, n in plan:
            assert a == expected and 1 <= n <= max_burst
            assert a // 4096 == (a + n * size - 1) // 4096          # no 4 KiB crossing
            expected += n * size
        for a, n in plan[:-1]:                                    # greedy: only the last is short
            assert n == max_burst or (a + n * size) % 4096 == 0


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((0x08, 1), {}, "not aligned to the bus width (16 bytes)"),
    ((-16, 1), {}, "addr must be a non-negative integer"),
    ((0, 0), {}, "beats must be an integer from 1 to 1048575"),
    ((0, 1 << 20), {}, "beats must be an integer from 1 to 1048575"),
    ((0, 2.0), {}, "beats must be an integer"),
    ((0, 1), {"data_width": 24}, "data_width must be a power of two from 8 to 1024"),
    ((0, 1), {"data_width": 2048}, "data_width must be a power of two from 8 to 1024"),
    ((0, 1), {"max_burst": 0}, "max_burst must be an integer from 1 to 256"),
    ((0, 1), {"max_burst": 257}, "max_burst must be an integer from 1 to 256"),
    ((0xFFFF_FFF0, 2), {}, "does not fit a 32-bit address space"),
    ((0, 1), {"addr_width": 8}, "addr_width must be an integer from 12 to 64"),
])
def test_bursts_invalid(args, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        axi.bursts(*args, **kwargs)


def test_constructors_and_signatures():
    sig = axi.axi4_signature(addr_width=40, data_width=64)
    assert sig.members["awaddr"].flow == wiring.Out and sig.members["awaddr"].shape == 40
    assert sig.members["wstrb"].shape == 8
    assert sig.members["rdata"].flow == wiring.In and sig.members["awready"].flow == wiring.In
    assert not {"awid", "bid", "arid", "rid"} & set(sig.members.keys())
    lite = axi.axilite_signature()
    assert lite.members["awaddr"].shape == 8 and lite.members["wdata"].shape == 32
    assert "awprot" not in lite.members
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        axi.ReadDMA(data_width=100)
    with pytest.raises(ValueError, match="max_burst must be an integer from 1 to 256"):
        axi.WriteDMA(max_burst=0)
    with pytest.raises(ValueError, match="AXI4-Lite data_width must be 32 or 64"):
        axi.axilite_signature(data_width=128)
    with pytest.raises(ValueError, match="latency must be a positive integer"):
        axi.ReadDMA().cycles(0, 1, latency=0)
    with pytest.raises(ValueError, match="counters must be an integer from 1 to 7"):
        regs.Registers(counters=8)
    with pytest.raises(ValueError, match="max_program_len must be an integer from 1 to 65535"):
        regs.Registers(max_program_len=0)
    with pytest.raises(ValueError, match="max_burst must be a power of two"):
        axi.ReadDMA(max_burst=12)
    dma = axi.ReadDMA()
    assert dma.cycles(0, 1) == axi.AXIRAM_READ_LATENCY + 3
    assert dma.cycles(0xFE0, 5, latency=4) == 2 * 4 + 5 + 2


# -- DMAs against a Python AXI memory --------------------------------------------------------

class Memory:
    """A Python AXI4 slave of fixed latency, ticked once a cycle by the DMA bench.

    Read: ``arready`` is high while fewer than ``max_reads`` bursts are outstanding; bursts are
    answered in order, the first R beat ``latency`` cycles after the AR handshake (or after the
    previous burst's last beat), the others back to back (``rready`` permitting), as the
    harness's C++ memory does.
    Write: ``awready`` and ``wready`` are high (an AW is taken once per burst); the B response
    is presented ``latency`` cycles after the last W handshake. Words in ``error`` get SLVERR.
    """

    def __init__(self, bus, width, latency, words, max_reads=1):
        self.bus, self.size, self.latency = bus, width // 8, latency
        self.max_reads = max_reads
        self.reads = []                             # [addr, beats left, first cycle] each
        self.words = words                          # word index -> int
        self.error = set()
        self.write = None                           # [addr, beats left]
        self.b_at = None
        self.b_resp = 0
        self.ar_stamps, self.aw_stamps = [], []

    def drive(self, ctx, now):
        bus = self.bus
        ctx.set(bus.arready, len(self.reads) < self.max_reads)
        serving = bool(self.reads) and now >= self.reads[0][2]
        ctx.set(bus.rvalid, serving)
        if serving:
            word = self.reads[0][0] // self.size
            ctx.set(bus.rdata, self.words.get(word, 0))
            ctx.set(bus.rlast, self.reads[0][1] == 1)
            ctx.set(bus.rresp, 2 if word in self.error else 0)
        ctx.set(bus.awready, self.write is None and self.b_at is None)
        # W beats are taken with their burst's AW (and after it), as AxiRam does
        ctx.set(bus.wready, self.b_at is None and (self.write is not None
                                                   or bool(ctx.get(bus.awvalid))))
        ctx.set(bus.bvalid, self.b_at is not None and now >= self.b_at)
        ctx.set(bus.bresp, self.b_resp)

    def sample(self, ctx, now):
        """Handshakes of this cycle (call after every driver has set its signals)."""
        bus, get = self.bus, ctx.get
        events = {}
        if len(self.reads) < self.max_reads and get(bus.arvalid):
            assert get(bus.arburst) == 1 and 1 << get(bus.arsize) == self.size
            self.ar_stamps.append(now)
            events["ar"] = (get(bus.araddr), get(bus.arlen) + 1)
        if self.reads and now >= self.reads[0][2] and get(bus.rready):
            events["r"] = True
        if self.write is None and self.b_at is None and get(bus.awvalid):
            assert get(bus.awburst) == 1 and 1 << get(bus.awsize) == self.size
            self.aw_stamps.append(now)
            events["aw"] = (get(bus.awaddr), get(bus.awlen) + 1)
        if get(bus.wready) and get(bus.wvalid):
            assert get(bus.wstrb) == (1 << self.size) - 1
            events["w"] = (get(bus.wdata), get(bus.wlast))
        if self.b_at is not None and now >= self.b_at and get(bus.bready):
            events["b"] = True
        return events

    def update(self, events, now):
        if "ar" in events:
            addr, n = events["ar"]
            assert addr // 4096 == (addr + n * self.size - 1) // 4096, "4 KiB crossing"
        if "r" in events:
            self.reads[0][0] += self.size
            self.reads[0][1] -= 1
            if self.reads[0][1] == 0:
                self.reads.pop(0)
        if "ar" in events:
            self.reads.append([addr, n, now + self.latency])
        if "aw" in events:
            addr, n = events["aw"]
            assert addr // 4096 == (addr + n * self.size - 1) // 4096, "4 KiB crossing"
            self.write = [addr, n]
            self.b_resp = 0
        if "w" in events:
            data, last = events["w"]
            word = self.write[0] // self.size
            self.words[word] = data
            if word in self.error:
                self.b_resp = 2
            self.write[0] += self.size
            self.write[1] -= 1
            assert bool(last) == (self.write[1] == 0), "wlast on the wrong beat"
            if self.write[1] == 0:
                self.write = None
                self.b_at = now + self.latency
        if "b" in events:
            self.b_at = None


class QueuedMemory(Memory):
    """``Memory`` whose write side works as the harness's C++ memory does: ``awready`` high
    while fewer than ``max_writes`` bursts wait for their B, ``wready`` always high, W beats
    matched to the AW'd bursts in order (a beat may come before its AW), and each B presented
    ``latency`` cycles after its burst's last W beat (or its AW, if later), in order."""

    def __init__(self, *args, max_writes, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_writes = max_writes
        self.bursts, self.beats, self.responses = [], [], []   # AW'd, unmatched W, B due
        self.open = 0

    def drive(self, ctx, now):
        super().drive(ctx, now)
        bus = self.bus
        ctx.set(bus.awready, self.open < self.max_writes)
        ctx.set(bus.wready, 1)
        due = bool(self.responses) and now >= self.responses[0][0]
        ctx.set(bus.bvalid, due)
        ctx.set(bus.bresp, self.responses[0][1] if due else 0)

    def sample(self, ctx, now):
        stamps = len(self.aw_stamps)
        events = {k: v for k, v in super().sample(ctx, now).items() if k in ("ar", "r", "w")}
        del self.aw_stamps[stamps:]                  # the base class's AW rule is not ours
        bus, get = self.bus, ctx.get
        if self.open < self.max_writes and get(bus.awvalid):
            assert get(bus.awburst) == 1 and 1 << get(bus.awsize) == self.size
            self.aw_stamps.append(now)
            events["aw"] = (get(bus.awaddr), get(bus.awlen) + 1)
        if self.responses and now >= self.responses[0][0] and get(bus.bready):
            events["b"] = True
        return events

    def update(self, events, now):
        super().update({k: v for k, v in events.items() if k in ("ar", "r")}, now)
        if "b" in events:
            self.responses.pop(0)
            self.open -= 1
        if "aw" in events:
            addr, n = events["aw"]
            assert addr // 4096 == (addr + n * self.size - 1) // 4096, "4 KiB crossing"
            self.bursts.append([addr, n, now, 0])
            self.open += 1
        if "w" in events:
            self.beats.append((*events["w"], now))
        while self.bursts and self.beats:
            burst = self.bursts[0]
            data, last, cycle = self.beats.pop(0)
            word = burst[0] // self.size
            self.words[word] = data
            burst[3] |= word in self.error
            burst[0] += self.size
            burst[1] -= 1
            assert bool(last) == (burst[1] == 0), "wlast on the wrong beat"
            if burst[1] == 0:
                self.responses.append([max(cycle, burst[2]) + self.latency, 2 * burst[3]])
                self.bursts.pop(0)


def run_dma(dma, commands, *, latency, rng, p_valid=1.0, p_ready=1.0, memory=None, stream=(),
            error=(), max_reads=1, max_writes=None):
    """Run ``commands`` through ``dma`` against a ``Memory`` holding ``memory`` (word index ->
    value), the write DMA taking its data beats from ``stream``. Returns the beats read, the
    command / data handshake cycles, the first cycle ``idle`` is high after the last command,
    ``error`` then, and the ``Memory``."""
    read = isinstance(dma, axi.ReadDMA)
    if max_writes is None:
        mem = Memory(dma.bus, dma.data_width, latency, dict(memory or {}), max_reads=max_reads)
    else:
        mem = QueuedMemory(dma.bus, dma.data_width, latency, dict(memory or {}),
                           max_reads=max_reads, max_writes=max_writes)
    mem.error = set(error)
    result = {"cmd": [], "data": [], "beats": [], "idle": None}

    async def bench(ctx):
        now = 0
        pending = list(commands)
        beats = list(stream)
        total = sum(n for _, n in commands)
        offer_cmd = offer_data = take = False
        while True:
            mem.drive(ctx, now)
            if pending:
                offer_cmd = p_valid >= 1 or rng.random() < p_valid
                ctx.set(dma.cmd.valid, offer_cmd)
                ctx.set(Value.cast(dma.cmd.payload),
                        pending[0][0] | pending[0][1] << 32)
            else:
                ctx.set(dma.cmd.valid, 0)
            if read:
                take = p_ready >= 1 or rng.random() < p_ready
                ctx.set(dma.data.ready, take)
            elif beats:
                offer_data = p_valid >= 1 or rng.random() < p_valid
                ctx.set(dma.data.valid, offer_data)
                ctx.set(dma.data.payload, beats[0])
            else:
                ctx.set(dma.data.valid, 0)
            events = mem.sample(ctx, now)
            if pending and offer_cmd and ctx.get(dma.cmd.ready):
                result["cmd"].append(now)
                pending.pop(0)
            if read and take and ctx.get(dma.data.valid):
                result["beats"].append(ctx.get(dma.data.payload))
                result["data"].append(now)
            if not read and beats and offer_data and ctx.get(dma.data.ready):
                beats.pop(0)
                result["data"].append(now)
            done = len(result["data"]) == total and not pending
            if done and ctx.get(dma.idle) and now > result["cmd"][-1] and result["idle"] is None:
                result["idle"] = now
                result["error"] = ctx.get(dma.error)
                return
            await ctx.tick()
            mem.update(events, now)
            now += 1
            assert now < 20_000, "DMA bench timed out"

    sim = Simulator(dma)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    result["mem"] = mem
    return result


TIMING = [(0, 1), (0x40, 4), (0x80, 5), (0xFF8, 5), (0x1F00, 40), (0x2FFC, 9)]


@pytest.mark.parametrize("latency", [1, 2, 3, 6])
def test_read_dma_cycles(latency):
    dma = axi.ReadDMA(data_width=32, max_burst=4)
    rng = seeded(20 + latency)
    words = {i: int(rng.integers(0, 1 << 32)) for i in range(0x4000 // 4)}
    for addr, beats in TIMING:
        res = run_dma(dma, [(addr, beats)], latency=latency, rng=rng, memory=words)
        assert res["beats"] == [words[addr // 4 + i] for i in range(beats)]
        assert res["data"][-1] - res["cmd"][0] + 1 == dma.cycles(addr, beats, latency=latency)
        assert len(res["mem"].ar_stamps) == len(dma.bursts(addr, beats))
    res = run_dma(dma, TIMING, latency=latency, rng=rng, memory=words)    # back to back
    ends = [res["data"][sum(n for _, n in TIMING[:i + 1]) - 1] + 1 for i in range(len(TIMING))]
    assert [e - c for c, e in zip(res["cmd"], ends, strict=True)] == \
        [dma.cycles(a, n, latency=latency) for a, n in TIMING]
    assert res["cmd"][1:] == ends[:-1]


@pytest.mark.parametrize(("in_flight", "max_reads", "latency"),
                         [(2, 8, 1), (4, 8, 6), (8, 8, 11), (8, 3, 9), (3, 64, 30)])
def test_read_dma_in_flight(in_flight, max_reads, latency):
    """Several bursts outstanding: every beat's cycle is ``ReadDMA.schedule``'s, the DMA
    never has more than ``min(max_in_flight, max_reads)`` out, and back-to-back commands
    follow one another the cycle after the last beat."""
    dma = axi.ReadDMA(data_width=32, max_burst=4, max_in_flight=in_flight)
    rng = seeded(60 + latency)
    words = {i: int(rng.integers(0, 1 << 32)) for i in range(0x4000 // 4)}
    for addr, beats in TIMING:
        res = run_dma(dma, [(addr, beats)], latency=latency, rng=rng, memory=words,
                      max_reads=max_reads)
        assert res["beats"] == [words[addr // 4 + i] for i in range(beats)]
        start = res["cmd"][0]
        assert [c - start for c in res["data"]] == dma.schedule(addr, beats, latency=latency,
                                                                max_reads=max_reads)
        assert res["data"][-1] - start + 1 == dma.cycles(addr, beats, latency=latency,
                                                         max_reads=max_reads)
    res = run_dma(dma, TIMING, latency=latency, rng=rng, memory=words, max_reads=max_reads)
    ends = [res["data"][sum(n for _, n in TIMING[:i + 1]) - 1] + 1 for i in range(len(TIMING))]
    assert res["cmd"][1:] == ends[:-1]
    assert [e - c for c, e in zip(res["cmd"], ends, strict=True)] == \
        [dma.cycles(a, n, latency=latency, max_reads=max_reads) for a, n in TIMING]
    # a long read streams once its first beat is in (40 beats = 10 bursts of 4) when a slot
    # frees at least ``latency`` cycles before its burst's beats are due
    if latency <= 4 * (in_flight - 1) and in_flight <= max_reads:
        assert dma.cycles(0x1F00, 40, latency=latency) == 2 + latency + 40


@pytest.mark.parametrize("bad", [0, 65, 2.0, True])
def test_read_dma_in_flight_invalid(bad):
    with pytest.raises(ValueError, match="max_in_flight must be an integer from 1 to 64"):
        axi.ReadDMA(max_in_flight=bad)


@pytest.mark.parametrize("latency", [1, 2, 3, 6])
def test_write_dma_cycles(latency):
    dma = axi.WriteDMA(data_width=32, max_burst=4)
    rng = seeded(30 + latency)
    for addr, beats in TIMING:
        data = [int(x) for x in rng.integers(0, 1 << 32, size=beats)]
        res = run_dma(dma, [(addr, beats)], latency=latency, rng=rng, stream=data)
        assert [res["mem"].words[addr // 4 + i] for i in range(beats)] == data
        assert res["idle"] - res["cmd"][0] == dma.cycles(addr, beats, latency=latency)
        assert res["mem"].aw_stamps[0] == res["cmd"][0] + 2
    data = [int(x) for x in rng.integers(0, 1 << 32, size=sum(n for _, n in TIMING))]
    res = run_dma(dma, TIMING, latency=latency, rng=rng, stream=data)
    assert [e - c for c, e in zip(res["cmd"], res["cmd"][1:] + [res["idle"]], strict=True)] == \
        [dma.cycles(a, n, latency=latency) for a, n in TIMING]


@pytest.mark.parametrize(("in_flight", "latency"), [(1, 3), (2, 1), (4, 6), (8, 11), (3, 30)])
def test_write_dma_in_flight(in_flight, latency):
    """Several bursts outstanding: every B response in ``WriteDMA.responses``' cycle, with
    the data all there and with beats that arrive late; back-to-back commands follow one
    another the cycle after the last B."""
    dma = axi.WriteDMA(data_width=32, max_burst=4, max_in_flight=in_flight)
    rng = seeded(70 + latency)
    for addr, beats in TIMING:
        data = [int(x) for x in rng.integers(0, 1 << 32, size=beats)]
        res = run_dma(dma, [(addr, beats)], latency=latency, rng=rng, stream=data,
                      max_writes=in_flight)
        assert [res["mem"].words[addr // 4 + i] for i in range(beats)] == data
        assert res["idle"] - res["cmd"][0] == dma.cycles(addr, beats, latency=latency)
        assert len(res["mem"].aw_stamps) == len(dma.bursts(addr, beats))
    data = [int(x) for x in rng.integers(0, 1 << 32, size=sum(n for _, n in TIMING))]
    res = run_dma(dma, TIMING, latency=latency, rng=rng, stream=data, max_writes=in_flight)
    assert [e - c for c, e in zip(res["cmd"], res["cmd"][1:] + [res["idle"]], strict=True)] == \
        [dma.cycles(a, n, latency=latency) for a, n in TIMING]
    assert [res["mem"].words[0x1F00 // 4 + i] for i in range(40)] == \
        data[sum(n for _, n in TIMING[:4]):][:40]
    # beats that arrive late (random gaps): the responses still follow the schedule
    res = run_dma(dma, [(0x1F00, 40)], latency=latency, rng=rng, p_valid=0.5,
                  stream=data[:40], max_writes=in_flight)
    start = res["cmd"][0]
    arrivals = [c - start for c in res["data"]]
    assert res["idle"] - start == dma.responses(0x1F00, 40, arrivals, latency=latency)[-1] + 1
    if latency <= 4 * (in_flight - 1):
        assert dma.cycles(0x1F00, 40, latency=latency) == 2 + 40 + latency


def test_dmas_random_stalls_and_errors():
    rng = seeded(40)
    rdma = axi.ReadDMA(data_width=64, max_burst=8)
    wdma = axi.WriteDMA(data_width=64, max_burst=8)
    commands = []
    for i in range(6):
        beats = int(rng.integers(1, 30))
        addr = (i + 1) * 4096 - 8 * int(rng.integers(1, beats + 1))
        commands.append((addr, beats))
    data = [int(x) for x in rng.integers(0, 1 << 63, size=sum(n for _, n in commands))]
    res = run_dma(wdma, commands, latency=3, rng=rng, p_valid=0.5, stream=data)
    assert not res["error"]
    words = res["mem"].words
    assert [words[a // 8 + i] for a, n in commands for i in range(n)] == data
    res = run_dma(rdma, commands, latency=3, rng=rng, p_valid=0.6, p_ready=0.4, memory=words)
    assert res["beats"] == data and not res["error"]
    deep = axi.ReadDMA(data_width=64, max_burst=8, max_in_flight=4)   # several bursts out
    res = run_dma(deep, commands, latency=5, rng=rng, p_valid=0.6, p_ready=0.4, memory=words,
                  max_reads=3)
    assert res["beats"] == data and not res["error"]
    # SLVERR on one word: sticky error, the transfer still completes
    bad = commands[2][0] // 8 + 1
    res = run_dma(rdma, commands[2:3], latency=2, rng=rng, memory=words, error={bad})
    assert res["error"] and res["beats"] == data[sum(n for _, n in commands[:2]):][:commands[2][1]]
    res = run_dma(wdma, commands[2:3], latency=2, rng=rng, stream=[1] * commands[2][1],
                  error={bad})
    assert res["error"]
    deep_w = axi.WriteDMA(data_width=64, max_burst=8, max_in_flight=4)
    res = run_dma(deep_w, commands, latency=5, rng=rng, p_valid=0.5, stream=data, max_writes=4)
    assert not res["error"]
    assert [res["mem"].words[a // 8 + i] for a, n in commands for i in range(n)] == data
    res = run_dma(deep_w, commands[2:3], latency=2, rng=rng, stream=[1] * commands[2][1],
                  error={bad}, max_writes=4)
    assert res["error"]


def test_dma_zero_beats_and_clear():
    """A zero-beat command is accepted and does nothing; ``clear`` clears the sticky error."""
    dma = axi.ReadDMA(data_width=32, max_burst=4)
    mem = Memory(dma.bus, 32, 2, {0: 5, 1: 6})
    mem.error = {1}

    async def bench(ctx):
        now = 0
        seen = []

        async def cycle(**sets):
            nonlocal now
            mem.drive(ctx, now)
            for name, value in sets.items():
                ctx.set(getattr(dma, name) if "__" not in name else
                        getattr(getattr(dma, name.split("__")[0]), name.split("__")[1]), value)
            events = mem.sample(ctx, now)
            if ctx.get(dma.data.valid) and ctx.get(dma.data.ready):
                seen.append(ctx.get(dma.data.payload))
            await ctx.tick()
            mem.update(events, now)
            now += 1

        ctx.set(dma.data.ready, 1)
        ctx.set(Value.cast(dma.cmd.payload), 0)              # beats = 0
        await cycle(cmd__valid=1)
        await cycle(cmd__valid=0)
        assert ctx.get(dma.idle) and not mem.ar_stamps
        ctx.set(Value.cast(dma.cmd.payload), 2 << 32)        # 2 beats from 0, the second bad
        await cycle(cmd__valid=1)
        for _ in range(10):
            await cycle(cmd__valid=0)
        assert seen == [5, 6] and ctx.get(dma.idle) and ctx.get(dma.error)
        await cycle(clear=1)
        await cycle(clear=0)
        assert not ctx.get(dma.error)

    sim = Simulator(dma)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- Registers through a Python AXI4-Lite master ---------------------------------------------

R, E = regs.Reg, regs.ErrorCode


class Lite:
    """A minimal AXI4-Lite master for the Amaranth simulator (one transaction at a time)."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus

    async def write(self, addr, value, strb=0xF):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, strb)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        await ctx.tick().until(bus.awready & bus.wready)
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        resp, = await ctx.tick().sample(bus.bresp).until(bus.bvalid)
        ctx.set(bus.bready, 0)
        assert resp == 0

    async def read(self, addr):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        data, resp = await ctx.tick().sample(bus.rdata, bus.rresp).until(bus.rvalid)
        ctx.set(bus.rready, 0)
        assert resp == 0
        return data

    async def status(self):
        v = await self.read(R.STATUS)
        assert v & ~0xFF07 == 0
        return {"busy": v & 1, "done": v >> 1 & 1, "error": v >> 2 & 1, "code": v >> 8 & 0xFF}


def run_registers(bench, **kwargs):
    dut = regs.Registers(**kwargs)
    starts = []

    async def count_starts(ctx):
        async for _clk, _rst, start in ctx.tick().sample(dut.start):
            if start:
                starts.append(1)

    async def main(ctx):
        await bench(ctx, dut, Lite(ctx, dut.bus), starts)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(count_starts)
    sim.add_testbench(main)
    sim.run()


async def pulse(ctx, signal, code_signal=None, code=0):
    ctx.set(signal, 1)
    if code_signal is not None:
        ctx.set(code_signal, code)
    await ctx.tick()
    ctx.set(signal, 0)


def test_registers_map():
    async def bench(ctx, dut, host, starts):
        assert await host.read(R.ID) == regs.ID
        assert await host.status() == {"busy": 0, "done": 0, "error": 0, "code": 0}
        await host.write(R.PROGRAM_ADDR, 0x1234_5670)
        await host.write(R.PROGRAM_LEN, 0xFFFF_0123)
        await host.write(R.DDR_BASE, 0x8000_0000)
        await host.write(R.DDR_SIZE, 0x1000_0000)
        assert await host.read(R.PROGRAM_ADDR) == 0x1234_5670
        assert await host.read(R.PROGRAM_LEN) == 0x0123
        assert await host.read(R.DDR_BASE) == 0x8000_0000
        assert await host.read(R.DDR_SIZE) == 0x1000_0000
        assert ctx.get(dut.program_addr) == 0x1234_5670 and ctx.get(dut.program_len) == 0x123
        assert ctx.get(dut.ddr_base) == 0x8000_0000 and ctx.get(dut.ddr_size) == 0x1000_0000
        await host.write(R.DDR_BASE + 2, 0x00AB_0000, strb=0b0100)      # byte strobes
        assert await host.read(R.DDR_BASE) == 0x80AB_0000
        for offset in (R.STATUS, R.CYCLES_LO, R.CYCLES_HI, R.COUNTER, R.ID, 0x30, 0x40, 0xFC):
            await host.write(offset, 0xFFFF_FFFF)                       # ignored
        assert await host.read(R.ID) == regs.ID
        assert await host.status() == {"busy": 0, "done": 0, "error": 0, "code": 0}
        assert not starts
        for offset in (R.CTRL, 0x30, 0x34, 0x38, 0x40, 0x80, 0xFC):
            assert await host.read(offset) == 0
        ctx.set(dut.cycles, 0xDEAD_BEEF_0BAD_F00D)
        for i, value in enumerate([1, 0xFFFF_FFFF, 0x8000_0000, 12345]):
            ctx.set(dut.counter[i], value)
        assert await host.read(R.CYCLES_LO) == 0x0BAD_F00D
        assert await host.read(R.CYCLES_HI) == 0xDEAD_BEEF
        assert [await host.read(R.COUNTER + 4 * i) for i in range(4)] == \
            [1, 0xFFFF_FFFF, 0x8000_0000, 12345]
        ctx.set(dut.busy, 1)
        assert (await host.status())["busy"] == 1

    run_registers(bench, counters=4)


async def configure(host, addr, length, base, size):
    await host.write(R.PROGRAM_ADDR, addr)
    await host.write(R.PROGRAM_LEN, length)
    await host.write(R.DDR_BASE, base)
    await host.write(R.DDR_SIZE, size)


START_CASES = [
    # (program_addr, program_len, ddr_base, ddr_size)
    (0x1000, 1, 0x1000, 0x40),                 # exactly fits
    (0x1000, 0, 0x1000, 0x10000),              # zero length
    (0x1000, 101, 0x1000, 0x10000),            # above max_program_len
    (0x1000, 100, 0x1000, 0x10000),            # max_program_len
    (0x1008, 1, 0x1000, 0x10000),              # misaligned
    (0x0FF0, 1, 0x1000, 0x10000),              # below the window
    (0x1FC0, 2, 0x1000, 0x1000),               # runs past the window
    (0x1FC0, 1, 0x1000, 0x1000),               # ends at the window's end
    (0xFFFF_FFC0, 1, 0xFFFF_0000, 0x10000),    # ends at 2**32 exactly (no wrap)
    (0xFFFF_FFC0, 2, 0xFFFF_0000, 0xFFFF_FFFF),  # window past 2**32, program would wrap
    (0x0000_0010, 1, 0xFFFF_0000, 0x0002_0000),  # window wraps: not below base in 33 bits
]


def test_registers_start_checks():
    async def bench(ctx, dut, host, starts):
        model = dut
        for case in START_CASES:
            await host.write(R.CTRL, 2)
            await configure(host, *case)
            before = len(starts)
            await host.write(R.CTRL, 1)
            await ctx.tick()
            expected = model.start_error(busy=False, program_addr=case[0], program_len=case[1],
                                         ddr_base=case[2], ddr_size=case[3])
            status = await host.status()
            assert (status["error"], status["code"]) == \
                (int(expected != E.NONE), expected.value), (case, expected)
            assert len(starts) - before == int(expected == E.NONE), case
        assert [dut.start_error(busy=False, program_addr=c[0], program_len=c[1], ddr_base=c[2],
                                ddr_size=c[3]) for c in START_CASES] == [
            E.NONE, E.BAD_LENGTH, E.BAD_LENGTH, E.NONE, E.BAD_ADDRESS, E.BAD_ADDRESS,
            E.BAD_ADDRESS, E.NONE, E.NONE, E.BAD_ADDRESS, E.BAD_ADDRESS]

    run_registers(bench, max_program_len=100)


def test_registers_start_busy_done_fault_clear():
    async def bench(ctx, dut, host, starts):
        await configure(host, 0x100, 4, 0, 0x10000)
        await host.write(R.CTRL, 1)
        await ctx.tick()
        assert len(starts) == 1
        ctx.set(dut.busy, 1)
        # START while busy: error, no pulse, running job undisturbed
        await host.write(R.CTRL, 1)
        await ctx.tick()
        assert len(starts) == 1
        assert await host.status() == {"busy": 1, "done": 0, "error": 1,
                                       "code": E.START_WHILE_BUSY.value}
        # a fault while an error is pending: first error wins
        await pulse(ctx, dut.fault, dut.fault_code, E.AXI_READ.value)
        assert (await host.status())["code"] == E.START_WHILE_BUSY.value
        ctx.set(dut.busy, 0)
        await pulse(ctx, dut.done)
        assert await host.status() == {"busy": 0, "done": 1, "error": 1,
                                       "code": E.START_WHILE_BUSY.value}
        # CLEAR clears DONE, ERROR, code
        await host.write(R.CTRL, 2)
        assert await host.status() == {"busy": 0, "done": 0, "error": 0, "code": 0}
        # a fault alone sets its code; a second one does not overwrite it
        await pulse(ctx, dut.fault, dut.fault_code, E.BAD_OPCODE.value)
        await pulse(ctx, dut.fault, dut.fault_code, E.AXI_WRITE.value)
        assert await host.status() == {"busy": 0, "done": 0, "error": 1,
                                       "code": E.BAD_OPCODE.value}
        # a refused START keeps the first error too
        await host.write(R.PROGRAM_LEN, 0)
        await host.write(R.CTRL, 1)
        assert (await host.status())["code"] == E.BAD_OPCODE.value
        # CLEAR | START in one write: cleared first, then checked (still refused)
        await host.write(R.CTRL, 3)
        assert await host.status() == {"busy": 0, "done": 0, "error": 1,
                                       "code": E.BAD_LENGTH.value}
        # an accepted START clears DONE and ERROR
        await pulse(ctx, dut.done)
        await host.write(R.PROGRAM_LEN, 4)
        await host.write(R.CTRL, 1)
        await ctx.tick()
        assert len(starts) == 2
        assert await host.status() == {"busy": 0, "done": 0, "error": 0, "code": 0}
        # CTRL with START in a byte lane not written: ignored
        await host.write(R.CTRL, 1, strb=0b0010)
        await ctx.tick()
        assert len(starts) == 2
        # done and fault in the cycle of a CLEAR's handshake: CLEAR first, the events win
        await pulse(ctx, dut.fault, dut.fault_code, E.BAD_OPCODE.value)
        bus = dut.bus
        for signal, value in ((bus.awaddr, R.CTRL), (bus.wdata, 2), (bus.wstrb, 0xF),
                              (bus.awvalid, 1), (bus.wvalid, 1), (bus.bready, 1),
                              (dut.done, 1), (dut.fault, 1),
                              (dut.fault_code, E.ADDRESS_RANGE.value)):
            ctx.set(signal, value)
        assert ctx.get(bus.awready) and ctx.get(bus.wready)
        await ctx.tick()
        for signal in (bus.awvalid, bus.wvalid, dut.done, dut.fault):
            ctx.set(signal, 0)
        await ctx.tick().until(bus.bvalid)
        ctx.set(bus.bready, 0)
        assert await host.status() == {"busy": 0, "done": 1, "error": 1,
                                       "code": E.ADDRESS_RANGE.value}

    run_registers(bench)


def test_registers_start_pulse_is_one_cycle():
    async def bench(ctx, dut, host, starts):
        await configure(host, 0, 1, 0, 64)
        await host.write(R.CTRL, 1)
        for _ in range(5):
            await ctx.tick()
        assert len(starts) == 1

    run_registers(bench)


def test_error_codes():
    assert [(c.name, c.value) for c in E] == [
        ("NONE", 0), ("START_WHILE_BUSY", 1), ("BAD_LENGTH", 2), ("BAD_ADDRESS", 3),
        ("ADDRESS_RANGE", 4), ("AXI_READ", 5), ("AXI_WRITE", 6), ("BAD_OPCODE", 7)]
    assert regs.ID == 0x7E4D_0001
    assert np.all(np.diff([r.value for r in R]) > 0)
