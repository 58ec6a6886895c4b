# SPDX-License-Identifier: BSD-3-Clause
"""cocotb bench for ``rtl.axi.ReadDMA`` / ``WriteDMA`` and ``rtl.regs.Registers`` (run through
``tests/test_cocotb_axi.py``).

``Top`` (built by the test) holds one of each, every port forwarded with a prefix:
``rd_*`` / ``wr_*`` (the DMAs: ``rd__araddr``, ``rd_cmd__valid``, ``rd_idle``, ...), ``ctl__*``
(the register block's AXI4-Lite slave) and ``reg_*`` (its core side). cocotbext-axi's AXI4
models require ID signals, which the DMAs do not have: ``Top`` adds 1-bit ``arid``/``awid``
(constant 0) and ``rid``/``bid`` (ignored) to each DMA bus. One ``AxiRam`` serves both DMAs:
an ``AxiBus`` built from the write DMA's write channels and the read DMA's read channels
(``AxiRam`` then runs an ``AxiRamWrite`` and an ``AxiRamRead`` over one memory).

Streams are driven at the falling edge with random valid / ready gaps and a handshake is
taken when ``valid & ready`` a nanosecond later (the value at the next rising edge); stamps are
rising-edge counts, so differences are cycles.

Configured by environment (set by the runner): AXI_SEED.
"""

import os
import warnings

import cocotb
import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from ternedge.rtl import axi, regs

warnings.filterwarnings("ignore", message=".*created but never used")

ADDR_WIDTH = 32
DATA_WIDTH = 128
MAX_BURST = 16
MAX_IN_FLIGHT = 4                        # bursts each DMA keeps outstanding
BEAT = DATA_WIDTH // 8
RAM_SIZE = 1 << 16
POISON = range(0xF000, 0x10000)          # the RAM answers SLVERR here (see _poison)
COUNTERS = 4
MAX_PROGRAM_LEN = 256

_IDS = {"awid": Out(1), "bid": In(1), "arid": Out(1), "rid": In(1)}


def _with_ids(signature):
    return wiring.Signature({**dict(signature.members.items()), **_IDS})


class Top(wiring.Component):
    """A ReadDMA, a WriteDMA and a Registers block, ports forwarded with prefixes."""

    def __init__(self):
        params = dict(addr_width=ADDR_WIDTH, data_width=DATA_WIDTH, max_burst=MAX_BURST,
                      max_in_flight=MAX_IN_FLIGHT)
        self.read_dma = axi.ReadDMA(**params)
        self.write_dma = axi.WriteDMA(**params)
        self.registers = regs.Registers(counters=COUNTERS, max_program_len=MAX_PROGRAM_LEN)
        members = {}
        for prefix, sub in (("rd", self.read_dma), ("wr", self.write_dma),
                            ("reg", self.registers)):
            for name, member in sub.signature.members.items():
                if name == "bus":
                    key = {"rd": "rd", "wr": "wr", "reg": "ctl"}[prefix]
                    members[key] = (Out(_with_ids(member.signature)) if prefix != "reg"
                                    else member)
                else:
                    members[f"{prefix}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.read_dma = self.read_dma
        m.submodules.write_dma = self.write_dma
        m.submodules.registers = self.registers
        for prefix, sub in (("rd", self.read_dma), ("wr", self.write_dma)):
            outer = getattr(self, prefix)
            for name, member in sub.bus.signature.members.items():
                if member.flow == Out:
                    m.d.comb += getattr(outer, name).eq(getattr(sub.bus, name))
                else:
                    m.d.comb += getattr(sub.bus, name).eq(getattr(outer, name))
            m.d.comb += [outer.arid.eq(0), outer.awid.eq(0)]
        wiring.connect(m, wiring.flipped(self.ctl), self.registers.bus)
        for prefix, sub in (("rd", self.read_dma), ("wr", self.write_dma),
                            ("reg", self.registers)):
            for name, member in sub.signature.members.items():
                if name == "bus":
                    continue
                outer, inner = getattr(self, f"{prefix}_{name}"), getattr(sub, name)
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == Out:
                    m.d.comb += outer.eq(inner)
                else:
                    m.d.comb += inner.eq(outer)
        return m


# ---------------------------------------------------------------------------------------------
# Bench helpers

class Ticker:
    """Counts rising edges, so handshakes can be time-stamped in cycles."""

    def __init__(self, clk):
        self.clk, self.now = clk, 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1


def _cmd(addr, beats):
    return addr | (beats << 32)


class StreamDriver:
    """Drives ``<name>__valid/__payload`` with random valid gaps, stamping each handshake."""

    def __init__(self, dut, name, rng, p_valid, ticker):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_valid, self.ticker, self.name = rng, p_valid, ticker, name
        self.stamps = []

    async def send(self, beats):
        i = 0
        while i < len(beats):
            await FallingEdge(self.clk)
            offer = self.p_valid >= 1 or self.rng.random() < self.p_valid
            self.valid.value = int(offer)
            if offer:
                self.payload.value = beats[i]
            await Timer(1, "ns")
            assert self.ready.value.is_resolvable, f"{self.name}__ready is {self.ready.value}"
            if offer and int(self.ready.value):
                self.stamps.append(self.ticker.now)
                i += 1
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamMonitor:
    """Takes beats with random back-pressure, stamping each handshake."""

    def __init__(self, dut, name, rng, p_ready, ticker):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_ready, self.ticker = rng, p_ready, ticker

    async def receive(self, count):
        beats, stamps = [], []
        while len(beats) < count:
            await FallingEdge(self.clk)
            take = self.p_ready >= 1 or self.rng.random() < self.p_ready
            self.ready.value = int(take)
            await Timer(1, "ns")
            if take and int(self.valid.value):
                beats.append(self.payload.value.to_unsigned())
                stamps.append(self.ticker.now)
        await FallingEdge(self.clk)
        self.ready.value = 0
        return beats, stamps


class BusMonitor:
    """Stamps AR, R, AW, W and B handshakes of both DMA buses (for the latency test)."""

    CHANNELS = {"rd": ("ar", "r"), "wr": ("aw", "w", "b")}

    def __init__(self, dut, ticker):
        self.dut, self.ticker = dut, ticker
        self.stamps = {ch: [] for chans in self.CHANNELS.values() for ch in chans}

    async def run(self):
        dut = self.dut
        handles = [(ch, getattr(dut, f"{bus}__{ch}valid"), getattr(dut, f"{bus}__{ch}ready"))
                   for bus, chans in self.CHANNELS.items() for ch in chans]
        while True:
            await FallingEdge(self.dut.clk)
            await Timer(1, "ns")
            for ch, valid, ready in handles:
                if int(valid.value) and int(ready.value):
                    self.stamps[ch].append(self.ticker.now)


def _poison(ram):
    """Make the RAM fail (SLVERR) reads and writes in ``POISON`` (AxiRamRead/Write catch the
    exception of ``_read`` / ``_write`` and answer SLVERR)."""
    read, write = ram.read_if._read, ram.write_if._write

    async def failing_read(address, length):
        if address in POISON:
            raise OSError(f"poisoned read at {address:#x}")
        return await read(address, length)

    async def failing_write(address, data):
        if address in POISON:
            raise OSError(f"poisoned write at {address:#x}")
        return await write(address, data)

    ram.read_if._read = failing_read
    ram.write_if._write = failing_write


async def _setup(dut):
    from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiReadBus, AxiWriteBus

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ticker = Ticker(dut.clk)
    cocotb.start_soon(ticker.run())
    for name in ("rd_cmd__valid", "rd_data__ready", "rd_clear", "wr_cmd__valid",
                 "wr_data__valid", "wr_clear", "reg_busy", "reg_done", "reg_fault",
                 "reg_fault_code", "reg_counter", "reg_cycles"):
        getattr(dut, name).value = 0
    # prefix "rd_" + cocotb_bus' separator "_" finds Amaranth's "rd__araddr"
    bus = AxiBus(AxiWriteBus.from_prefix(dut, "wr_"), AxiReadBus.from_prefix(dut, "rd_"))
    ram = AxiRam(bus, dut.clk, dut.rst, size=RAM_SIZE)
    _poison(ram)
    # before reset: on Icarus undriven ctl__* inputs are X, which would reach the registers
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "ctl_"), dut.clk, dut.rst)
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return ticker, ram, host


def _seed():
    seed = os.environ.get("AXI_SEED")
    if seed is None:
        raise RuntimeError("AXI_SEED is not set; run this bench through tests/test_cocotb_axi.py")
    return int(seed)


def _random_words(rng, count):
    return [int.from_bytes(rng.bytes(BEAT), "little") for _ in range(count)]


def _mem_words(ram, addr, count):
    data = ram.read(addr, count * BEAT)
    return [int.from_bytes(data[i * BEAT:(i + 1) * BEAT], "little") for i in range(count)]


async def _watch_idle(dut, name, driver, count, ticker, limit=20_000):
    """The first stamp, after all ``count`` commands were accepted, at which ``idle`` is high."""
    idle = getattr(dut, f"{name}_idle")
    for _ in range(limit):
        await FallingEdge(dut.clk)
        if (len(driver.stamps) == count and ticker.now > driver.stamps[-1]
                and int(idle.value)):
            return ticker.now
    raise AssertionError(f"{name}_idle never went high")


async def _read(dut, rng, ticker, commands, p_valid, p_ready):
    """Issue read commands, collect all beats: (beats, beat stamps, command stamps)."""
    driver = StreamDriver(dut, "rd_cmd", rng, p_valid, ticker)
    monitor = StreamMonitor(dut, "rd_data", rng, p_ready, ticker)
    idle = cocotb.start_soon(_watch_idle(dut, "rd", driver, len(commands), ticker))
    task = cocotb.start_soon(driver.send([_cmd(a, n) for a, n in commands]))
    beats, stamps = await monitor.receive(sum(n for _, n in commands))
    await task
    await idle
    return beats, stamps, driver.stamps


async def _write(dut, rng, ticker, commands, words, p_valid):
    """Issue write commands with their data; wait for idle: (command stamps, idle stamp)."""
    driver = StreamDriver(dut, "wr_cmd", rng, p_valid, ticker)
    data = StreamDriver(dut, "wr_data", rng, p_valid, ticker)
    idle = cocotb.start_soon(_watch_idle(dut, "wr", driver, len(commands), ticker))
    tasks = [cocotb.start_soon(driver.send([_cmd(a, n) for a, n in commands])),
             cocotb.start_soon(data.send(words))]
    for task in tasks:
        await task
    return driver.stamps, await idle


def _random_commands(rng, count, max_beats=40):
    """Random aligned commands in the first 60 KiB (below POISON), often near a 4 KiB edge."""
    commands = []
    for _ in range(count):
        beats = int(rng.integers(1, max_beats + 1))
        if rng.random() < 0.5:
            page = int(rng.integers(1, 14)) * 4096
            addr = page - BEAT * int(rng.integers(1, beats + 1))
        else:
            addr = BEAT * int(rng.integers(0, (POISON.start - beats * BEAT) // BEAT))
        commands.append((addr, beats))
    return commands


# Stall-free timing cases: (addr, beats), with 4 KiB crossings and beats > MAX_BURST
TIMING_CASES = [(0x0000, 1), (0x0100, 5), (0x0200, 16), (0x0400, 17), (0x0FE0, 5),
                (0x1F00, 40), (0x2FF0, 1 + 2 * MAX_BURST), (0x3000, 256), (0x4FF0, 300)]


# ---------------------------------------------------------------------------------------------
# Tests

@cocotb.test()
async def latency(dut):
    """AxiRam's read latency (AR handshake to first R beat) and write latency (last W beat
    to B) with no stalls: the values in rtl/axi.py (AXIRAM_READ_LATENCY, _WRITE_LATENCY).
    With several bursts in flight AxiRam answers them in order, as ``golden.ddr``'s schedules
    say: a burst's first R beat ``AXIRAM_READ_LATENCY`` after its AR or the cycle after the
    previous burst's last beat, whichever is later; a burst's first W beat is no earlier than
    its AW."""
    ticker, ram, _ = await _setup(dut)
    rng = np.random.default_rng(_seed())
    bus = BusMonitor(dut, ticker)
    cocotb.start_soon(bus.run())
    for addr, beats in ((0x0100, 1), (0x0200, 4), (0x0FC0, 8), (0x0400, 40)):
        bus.stamps = {ch: [] for ch in bus.stamps}
        await _read(dut, rng, ticker, [(addr, beats)], 1.0, 1.0)
        await _write(dut, rng, ticker, [(addr, beats)], _random_words(rng, beats), 1.0)
        s = bus.stamps
        plan = axi.bursts(addr, beats, data_width=DATA_WIDTH, max_burst=MAX_BURST)
        assert len(s["ar"]) == len(plan) == len(s["aw"]) == len(s["b"])
        ends = np.cumsum([n for _, n in plan])
        firsts = [0] + list(ends[:-1])
        read = [s["r"][f] - max(a, s["r"][f - 1] + 1 - axi.AXIRAM_READ_LATENCY if f else a)
                for f, a in zip(firsts, s["ar"], strict=True)]
        write = [b - s["w"][e - 1] for e, b in zip(ends, s["b"], strict=True)]
        aw_w = [s["w"][f] - max(a, s["w"][f - 1] + 1 if f else a)
                for f, a in zip(firsts, s["aw"], strict=True)]
        streams = [s["r"][e - 1] - s["r"][f] for f, e in zip(firsts, ends, strict=True)]
        dut._log.info(f"addr={addr:#x} beats={beats}: read latency {read}, write latency "
                      f"{write}, first W - AW {aw_w}, R burst spans {streams}")
        assert set(read) == {axi.AXIRAM_READ_LATENCY}, read
        assert set(write) == {axi.AXIRAM_WRITE_LATENCY}, write
        assert set(aw_w) == {0}, aw_w
        assert streams == [n - 1 for _, n in plan], streams


@cocotb.test()
async def stall_free_cycles_exact(dut):
    """Data always ready / valid: ``ReadDMA.cycles`` (command accepted to last beat accepted,
    both included) and ``WriteDMA.cycles`` (command accepted to ``idle`` high again) equal the
    measured counts, for single and for back-to-back commands."""
    ticker, ram, _ = await _setup(dut)
    rng = np.random.default_rng(_seed() + 1)
    params = dict(addr_width=ADDR_WIDTH, data_width=DATA_WIDTH, max_burst=MAX_BURST,
                      max_in_flight=MAX_IN_FLIGHT)
    rdma, wdma = axi.ReadDMA(**params), axi.WriteDMA(**params)
    for addr, beats in TIMING_CASES:
        words = _random_words(rng, beats)
        cmd, idle = await _write(dut, rng, ticker, [(addr, beats)], words, 1.0)
        assert _mem_words(ram, addr, beats) == words
        model = wdma.cycles(addr, beats)
        measured = idle - cmd[0]
        assert measured == model, f"write ({addr:#x}, {beats}): model {model} != {measured}"
        got, stamps, cmd = await _read(dut, rng, ticker, [(addr, beats)], 1.0, 1.0)
        assert got == words
        model = rdma.cycles(addr, beats)
        measured = stamps[-1] - cmd[0] + 1
        assert measured == model, f"read ({addr:#x}, {beats}): model {model} != {measured}"
    # back to back: each command is accepted in the cycle after the previous one ends
    commands = TIMING_CASES[:6]
    words = _random_words(rng, sum(n for _, n in commands))
    cmd, idle = await _write(dut, rng, ticker, commands, words, 1.0)
    expected = [wdma.cycles(a, n) for a, n in commands]
    measured = [int(x) for x in np.diff(cmd + [idle])]
    assert measured == expected, f"write: model {expected} != {measured}"
    _, stamps, cmd = await _read(dut, rng, ticker, commands, 1.0, 1.0)
    expected = [rdma.cycles(a, n) for a, n in commands]
    measured = [int(x) for x in np.diff(cmd + [stamps[-1] + 1])]
    assert measured == expected, f"read: model {expected} != {measured}"


@cocotb.test()
async def read_random_backpressure(dut):
    """Random memory read back through ReadDMA with random command gaps and back-pressure."""
    ticker, ram, _ = await _setup(dut)
    rng = np.random.default_rng(_seed() + 3)
    ram.write(0, rng.bytes(POISON.start))
    commands = _random_commands(rng, 12)
    beats, _, _ = await _read(dut, rng, ticker, commands, 0.6, 0.5)
    expected = [w for a, n in commands for w in _mem_words(ram, a, n)]
    assert beats == expected
    assert not int(dut.rd_error.value)


@cocotb.test()
async def write_random_gaps(dut):
    """Random streams written through WriteDMA with random valid gaps land in memory."""
    ticker, ram, _ = await _setup(dut)
    rng = np.random.default_rng(_seed() + 4)
    commands = []
    for addr, beats in _random_commands(rng, 7):          # disjoint: one per 8 KiB slot
        commands.append((len(commands) * 8192 + addr % 4096, beats))
    words = _random_words(rng, sum(n for _, n in commands))
    await _write(dut, rng, ticker, commands, words, 0.5)
    got = [w for a, n in commands for w in _mem_words(ram, a, n)]
    assert got == words
    assert not int(dut.wr_error.value)


@cocotb.test()
async def error_responses(dut):
    """SLVERR from the RAM (its POISON region) sets the sticky error; the transfer completes;
    ``clear`` clears it; good transfers afterwards leave it clear."""
    ticker, ram, _ = await _setup(dut)
    rng = np.random.default_rng(_seed() + 5)
    for name in ("rd", "wr"):
        assert not int(getattr(dut, f"{name}_error").value)
    start = POISON.start - 2 * BEAT                     # two good beats, then SLVERR
    words = _random_words(rng, 4)
    await _write(dut, rng, ticker, [(start, 4)], words, 1.0)
    assert int(dut.wr_error.value)
    assert _mem_words(ram, start, 2) == words[:2]
    beats, _, _ = await _read(dut, rng, ticker, [(start, 4)], 1.0, 1.0)
    assert beats[:2] == words[:2] and beats[2:] == [0, 0]
    assert int(dut.rd_error.value)
    # sticky across good transfers, until clear
    await _read(dut, rng, ticker, [(0, 2)], 1.0, 1.0)
    await _write(dut, rng, ticker, [(0, 2)], _random_words(rng, 2), 1.0)
    assert int(dut.rd_error.value) and int(dut.wr_error.value)
    await FallingEdge(dut.clk)
    dut.rd_clear.value = 1
    dut.wr_clear.value = 1
    await FallingEdge(dut.clk)
    dut.rd_clear.value = 0
    dut.wr_clear.value = 0
    assert not int(dut.rd_error.value) and not int(dut.wr_error.value)
    await _read(dut, rng, ticker, [(0, 20)], 0.7, 0.7)
    await _write(dut, rng, ticker, [(0, 20)], _random_words(rng, 20), 0.7)
    assert not int(dut.rd_error.value) and not int(dut.wr_error.value)


# ---------------------------------------------------------------------------------------------
# Registers through cocotbext-axi's AxiLiteMaster

class StartCounter:
    def __init__(self, dut):
        self.dut, self.count = dut, 0

    async def run(self):
        while True:
            await FallingEdge(self.dut.clk)
            self.count += int(self.dut.reg_start.value)


async def _pulse(dut, name, code=None):
    await FallingEdge(dut.clk)
    getattr(dut, name).value = 1
    if code is not None:
        dut.reg_fault_code.value = code
    await FallingEdge(dut.clk)
    getattr(dut, name).value = 0


@cocotb.test()
async def registers(dut):
    """Register map read/write through AxiLiteMaster, START checks, faults, CLEAR."""
    from cocotbext.axi import AxiResp

    _, _, host = await _setup(dut)
    rng = np.random.default_rng(_seed() + 6)
    starts = StartCounter(dut)
    cocotb.start_soon(starts.run())
    R, E = regs.Reg, regs.ErrorCode
    model = regs.Registers(counters=COUNTERS, max_program_len=MAX_PROGRAM_LEN)

    async def read(offset):
        resp = await host.read(offset, 4)
        assert resp.resp == AxiResp.OKAY
        return int.from_bytes(resp.data, "little")

    async def write(offset, value):
        resp = await host.write(offset, value.to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY

    async def status():
        value = await read(R.STATUS)
        return {"busy": value & 1, "done": value >> 1 & 1, "error": value >> 2 & 1,
                "code": value >> 8 & 0xFF, "rest": value & ~0xFF07}

    assert await read(R.ID) == regs.ID
    assert await status() == {"busy": 0, "done": 0, "error": 0, "code": 0, "rest": 0}
    # RW registers, read-only registers, unmapped offsets
    values = {R.PROGRAM_ADDR: 0x0001_2340, R.PROGRAM_LEN: 0xABCD_0010, R.DDR_BASE: 0x0001_0000,
              R.DDR_SIZE: 0x0001_0000}
    for offset, value in values.items():
        await write(offset, value)
    assert await read(R.PROGRAM_ADDR) == 0x0001_2340
    assert await read(R.PROGRAM_LEN) == 0x0010
    assert int(dut.reg_program_len.value) == 0x10
    assert int(dut.reg_ddr_base.value) == 0x0001_0000
    await write(R.ID, 0)
    await write(R.STATUS, 0xFFFF_FFFF)
    await write(0x40, 0x1234_5678)
    assert await read(R.ID) == regs.ID
    assert (await status())["error"] == 0
    for offset in (0x40, 0x80, 0xFC, R.CTRL):
        assert await read(offset) == 0
    # byte strobes
    resp = await host.write(R.DDR_SIZE + 1, b"\x02")
    assert resp.resp == AxiResp.OKAY
    assert await read(R.DDR_SIZE) == 0x0001_0200
    await write(R.DDR_SIZE, 0x0001_0000)
    # counters and cycles
    counters = [int(x) for x in rng.integers(0, 1 << 32, size=COUNTERS, dtype=np.uint64)]
    dut.reg_counter.value = sum(c << (32 * i) for i, c in enumerate(counters))
    dut.reg_cycles.value = 0x0123_4567_89AB_CDEF
    assert [await read(R.COUNTER + 4 * i) for i in range(COUNTERS)] == counters
    assert await read(R.CYCLES_LO) == 0x89AB_CDEF
    assert await read(R.CYCLES_HI) == 0x0123_4567

    # a good START: one pulse; done sets DONE; the next START clears it
    assert starts.count == 0
    await write(R.CTRL, 1)
    assert starts.count == 1
    dut.reg_busy.value = 1
    assert await status() == {"busy": 1, "done": 0, "error": 0, "code": 0, "rest": 0}
    # START while busy: error, no pulse
    await write(R.CTRL, 1)
    assert starts.count == 1
    assert await status() == {"busy": 1, "done": 0, "error": 1,
                              "code": E.START_WHILE_BUSY.value, "rest": 0}
    dut.reg_busy.value = 0
    await _pulse(dut, "reg_done")
    s = await status()
    assert (s["done"], s["error"], s["code"]) == (1, 1, E.START_WHILE_BUSY.value)
    # CLEAR
    await write(R.CTRL, 2)
    assert await status() == {"busy": 0, "done": 0, "error": 0, "code": 0, "rest": 0}

    # refused STARTs, each against the model's check
    cases = [
        dict(program_addr=0x0001_0000, program_len=0, ddr_base=0x0001_0000, ddr_size=0x10000),
        dict(program_addr=0x0001_0000, program_len=MAX_PROGRAM_LEN + 1, ddr_base=0x0001_0000,
             ddr_size=0x100000),
        dict(program_addr=0x0001_0008, program_len=4, ddr_base=0x0001_0000, ddr_size=0x10000),
        dict(program_addr=0x0000_FFF0, program_len=4, ddr_base=0x0001_0000, ddr_size=0x10000),
        dict(program_addr=0x0001_FF10, program_len=4, ddr_base=0x0001_0000, ddr_size=0x10000),
        dict(program_addr=0xFFFF_FF00, program_len=8, ddr_base=0xFFFF_0000, ddr_size=0xFFFF),
        dict(program_addr=0xFFFF_FF00, program_len=4, ddr_base=0xFFFF_0000, ddr_size=0x10000),
        dict(program_addr=0x0001_FF00, program_len=4, ddr_base=0x0001_0000, ddr_size=0x10000),
    ]
    for case in cases:
        await write(R.CTRL, 2)
        await write(R.PROGRAM_ADDR, case["program_addr"])
        await write(R.PROGRAM_LEN, case["program_len"])
        await write(R.DDR_BASE, case["ddr_base"])
        await write(R.DDR_SIZE, case["ddr_size"])
        before = starts.count
        await write(R.CTRL, 1)
        expected = model.start_error(busy=False, **case)
        s = await status()
        assert (s["error"], s["code"]) == (int(expected != E.NONE), expected.value), case
        assert starts.count - before == int(expected == E.NONE), case
    assert starts.count == 3      # the last two cases fit their window exactly

    # first error wins: a refused START, then a fault keeps the first code
    await write(R.PROGRAM_LEN, 0)
    await write(R.CTRL, 1)
    await _pulse(dut, "reg_fault", E.AXI_READ.value)
    s = await status()
    assert (s["error"], s["code"]) == (1, E.BAD_LENGTH.value)
    # CLEAR, then a fault sets its code; a later fault does not overwrite it
    await write(R.CTRL, 2)
    await _pulse(dut, "reg_fault", E.BAD_OPCODE.value)
    await _pulse(dut, "reg_fault", E.AXI_WRITE.value)
    s = await status()
    assert (s["error"], s["code"]) == (1, E.BAD_OPCODE.value)
    # an accepted START clears ERROR and DONE
    await _pulse(dut, "reg_done")
    await write(R.PROGRAM_LEN, 4)
    before = starts.count
    await write(R.CTRL, 1)
    assert starts.count == before + 1
    assert await status() == {"busy": 0, "done": 0, "error": 0, "code": 0, "rest": 0}
