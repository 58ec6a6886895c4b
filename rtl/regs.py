# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's AXI4-Lite register block (host control and status).

Register map (byte offsets, 32-bit registers; writes to read-only registers are ignored,
unmapped offsets read 0, every response is OKAY, the low two address bits are ignored and
write strobes select the bytes written):

======  ================  ====  ==========================================================
Offset  Name              Kind  Contents
======  ================  ====  ==========================================================
0x00    CTRL              W     bit 0 START, bit 1 CLEAR (clears DONE, ERROR, ERROR_CODE;
                                applied before START when both are written); reads 0
0x04    STATUS            R     bit 0 BUSY (the core's ``busy``), bit 1 DONE (sticky: set by
                                the core's ``done``, cleared by an accepted START or CLEAR),
                                bit 2 ERROR (sticky), bits 15:8 ERROR_CODE (``ErrorCode``)
0x08    PROGRAM_ADDR      RW    byte address of the program in DDR (16-byte aligned)
0x0C    PROGRAM_LEN       RW    program length in 64-byte instructions (bits 15:0)
0x10    DDR_BASE          RW    base of the DDR window the accelerator may use
0x14    DDR_SIZE          RW    size of that window in bytes
0x18    CYCLES_LO         R     cycles of the current / last run, bits 31:0 (the core's
                                counters count a cycle late: complete the cycle after DONE)
0x1C    CYCLES_HI         R     bits 63:32 (not latched: while running, read HI, LO, HI)
0x20    COUNTER[0]        R     performance counters, ``0x20 + 4 * i`` for ``i < counters``
...
0x3C    ID                R     ``ID`` = 0x7E4D_0001
======  ================  ====  ==========================================================

A START write is checked in the cycle after its handshake (against the program registers as
they were two cycles before: registered compares, and a master's next write comes after the
B response of the one before), in this order:

1. ``busy``: ERROR with START_WHILE_BUSY, no ``start`` pulse, the running job is undisturbed;
2. PROGRAM_LEN is 0 or above ``max_program_len``: ERROR with BAD_LENGTH, no pulse;
3. PROGRAM_ADDR is not 16-byte aligned, or ``[PROGRAM_ADDR, PROGRAM_ADDR + 64 * PROGRAM_LEN)``
   is not inside ``[DDR_BASE, DDR_BASE + DDR_SIZE)`` or runs past ``2**32`` (sums taken
   without wrap-around): ERROR with BAD_ADDRESS, no pulse;
4. otherwise DONE, ERROR and ERROR_CODE are cleared and ``start`` pulses for one cycle (two
   cycles after the write's handshake).

The core reports a fault with a one-cycle ``fault`` pulse and its ``fault_code`` (one of
ADDRESS_RANGE, AXI_READ, AXI_WRITE, BAD_OPCODE). Errors are sticky and the first one wins: a
later error (from a START or a fault) leaves ERROR_CODE as it is until CLEAR or an accepted
START. Within one cycle the order is CLEAR, START, then the core's ``done`` / ``fault``.

The slave takes one transaction per channel at a time: AW and W together (both ready when
both are valid and no B response is pending), B the next cycle (a START write's two cycles
later, once it is checked, so its B still comes after its outcome); AR when no R is
pending, R the next cycle.
"""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axi import axilite_signature

__all__ = ["ErrorCode", "Reg", "Registers", "ID", "INSTRUCTION_BYTES", "PROGRAM_ALIGN"]

ID = 0x7E4D_0001
INSTRUCTION_BYTES = 64        # PROGRAM_LEN counts 64-byte instructions
PROGRAM_ALIGN = 16            # PROGRAM_ADDR alignment in bytes


class ErrorCode(enum.Enum):
    """STATUS.ERROR_CODE: checks of a START write (1-3) and faults the core reports (4-7)."""
    NONE = 0
    START_WHILE_BUSY = 1
    BAD_LENGTH = 2
    BAD_ADDRESS = 3
    ADDRESS_RANGE = 4
    AXI_READ = 5
    AXI_WRITE = 6
    BAD_OPCODE = 7


class Reg(enum.IntEnum):
    """Register byte offsets (``COUNTER`` is the first counter, ``COUNTER + 4 * i``)."""
    CTRL = 0x00
    STATUS = 0x04
    PROGRAM_ADDR = 0x08
    PROGRAM_LEN = 0x0C
    DDR_BASE = 0x10
    DDR_SIZE = 0x14
    CYCLES_LO = 0x18
    CYCLES_HI = 0x1C
    COUNTER = 0x20
    ID = 0x3C


MAX_COUNTERS = (Reg.ID - Reg.COUNTER) // 4      # 7: counters end below ID


class Registers(wiring.Component):
    """AXI4-Lite register block (the map is in the module docstring).

    Parameters
    ----------
    counters : int
        Performance counters readable at ``0x20 + 4 * i`` (1 to 7).
    max_program_len : int
        Longest program accepted by START, in instructions (1 to 65535).

    Attributes
    ----------
    bus : In(axilite_signature(addr_width=8))
        AXI4-Lite slave (32-bit data).
    start : Out(1)
        One-cycle pulse: an accepted START.
    program_addr, program_len, ddr_base, ddr_size : Out(32), Out(16), Out(32), Out(32)
        The registers' values.
    busy : In(1)
        The core is running (STATUS.BUSY; a START then is an error).
    done : In(1)
        One-cycle pulse at the end of a run (sets STATUS.DONE).
    fault, fault_code : In(1), In(8)
        One-cycle pulse and its ``ErrorCode`` value (sets STATUS.ERROR / ERROR_CODE).
    counter : In(data.ArrayLayout(unsigned(32), counters))
        Performance counters (maintained by the core).
    cycles : In(64)
        Cycles of the current / last run.
    """

    def __init__(self, *, counters: int = 4, max_program_len: int = 4096):
        if (not isinstance(counters, int) or isinstance(counters, bool)
                or not 1 <= counters <= MAX_COUNTERS):
            raise ValueError(f"counters must be an integer from 1 to {MAX_COUNTERS} (they sit "
                             f"between 0x20 and ID at 0x3C), got {counters!r}")
        if (not isinstance(max_program_len, int) or isinstance(max_program_len, bool)
                or not 1 <= max_program_len <= 0xFFFF):
            raise ValueError(f"max_program_len must be an integer from 1 to 65535 (PROGRAM_LEN "
                             f"has 16 bits), got {max_program_len!r}")
        self.counters = counters
        self.max_program_len = max_program_len
        super().__init__({
            "bus": In(axilite_signature(addr_width=8)),
            "start": Out(1),
            "program_addr": Out(32),
            "program_len": Out(16),
            "ddr_base": Out(32),
            "ddr_size": Out(32),
            "busy": In(1),
            "done": In(1),
            "fault": In(1),
            "fault_code": In(8),
            "counter": In(data.ArrayLayout(unsigned(32), counters)),
            "cycles": In(64),
        })

    def start_error(self, *, busy: bool, program_addr: int, program_len: int, ddr_base: int,
                    ddr_size: int) -> ErrorCode:
        """The check a START write makes (a model of the hardware): ``ErrorCode.NONE`` if the
        START is accepted."""
        if busy:
            return ErrorCode.START_WHILE_BUSY
        if not 1 <= program_len <= self.max_program_len:
            return ErrorCode.BAD_LENGTH
        end = program_addr + INSTRUCTION_BYTES * program_len
        if (program_addr % PROGRAM_ALIGN or program_addr < ddr_base
                or end > ddr_base + ddr_size or end > 1 << 32):
            return ErrorCode.BAD_ADDRESS
        return ErrorCode.NONE

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        done = Signal()
        error = Signal()
        code = Signal(8)
        rw = {Reg.PROGRAM_ADDR: self.program_addr, Reg.PROGRAM_LEN: self.program_len,
              Reg.DDR_BASE: self.ddr_base, Reg.DDR_SIZE: self.ddr_size}

        # write channel: AW and W together, one B at a time; a START's B once it is checked
        # (``pending``, below), so the master sees its outcome as it would an immediate one
        write = Signal()
        pending = Signal()                               # a START written last cycle
        start = Signal()
        m.d.comb += [
            write.eq(bus.awvalid & bus.wvalid & ~bus.bvalid & ~pending),
            bus.awready.eq(write),
            bus.wready.eq(write),
            bus.bresp.eq(0),
        ]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If((write & ~start) | pending):
            m.d.sync += bus.bvalid.eq(1)
        word = bus.awaddr[2:]
        for offset, reg in rw.items():
            with m.If(write & (word == offset >> 2)):
                for byte in range((len(reg) + 7) // 8):
                    with m.If(bus.wstrb[byte]):
                        m.d.sync += reg[8 * byte:8 * byte + 8].eq(bus.wdata[8 * byte:8 * byte + 8])

        # CTRL: CLEAR, then START (checked), then the core's done / fault
        ctrl = Signal()
        clear = Signal()
        m.d.comb += [
            ctrl.eq(write & (word == Reg.CTRL >> 2) & bus.wstrb[0]),
            clear.eq(ctrl & bus.wdata[1]),
            start.eq(ctrl & bus.wdata[0]),
        ]
        # START is checked the cycle after its write (``pending``), against registered
        # verdicts on the program registers: each follows them by two cycles, sooner than an
        # AXI-Lite master can write START after them (a write's B response comes first)
        m.d.sync += pending.eq(start)
        end = Signal(34)
        limit = Signal(34)
        bad_length = Signal()
        misaligned = Signal()
        below = Signal()
        beyond = Signal()
        start_code = Signal(8)
        m.d.sync += [
            end.eq(self.program_addr + self.program_len * INSTRUCTION_BYTES),
            limit.eq(self.ddr_base + self.ddr_size),
            bad_length.eq((self.program_len == 0) | (self.program_len > self.max_program_len)),
            misaligned.eq(self.program_addr[:PROGRAM_ALIGN.bit_length() - 1] != 0),
            below.eq(self.program_addr < self.ddr_base),
            beyond.eq((end > limit) | (end > (1 << 32))),
        ]
        with m.If(self.busy):
            m.d.comb += start_code.eq(ErrorCode.START_WHILE_BUSY.value)
        with m.Elif(bad_length):
            m.d.comb += start_code.eq(ErrorCode.BAD_LENGTH.value)
        with m.Elif(misaligned | below | beyond):
            m.d.comb += start_code.eq(ErrorCode.BAD_ADDRESS.value)
        accepted = Signal()
        refused = Signal()
        m.d.comb += [accepted.eq(pending & (start_code == 0)),
                     refused.eq(pending & (start_code != 0))]
        m.d.sync += self.start.eq(accepted)

        kept = Signal()                                  # an earlier error survives this cycle
        after_start = Signal()
        code_after_start = Signal(8)
        m.d.comb += [
            kept.eq(error & ~clear & ~accepted),
            after_start.eq(kept | refused),
            code_after_start.eq(Mux(kept, code, Mux(refused, start_code, 0))),
        ]
        m.d.sync += [
            error.eq(after_start | self.fault),
            code.eq(Mux(after_start, code_after_start, Mux(self.fault, self.fault_code, 0))),
            done.eq((done & ~clear & ~accepted) | self.done),
        ]

        # read channel: one R at a time, registered data
        read = Signal()
        m.d.comb += [read.eq(bus.arvalid & ~bus.rvalid), bus.arready.eq(read), bus.rresp.eq(0)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        value = Signal(32)
        with m.Switch(bus.araddr[2:]):
            with m.Case(Reg.STATUS >> 2):
                m.d.comb += value.eq(Cat(self.busy, done, error, Const(0, 5), code))
            for offset, reg in rw.items():
                with m.Case(offset >> 2):
                    m.d.comb += value.eq(reg)
            with m.Case(Reg.CYCLES_LO >> 2):
                m.d.comb += value.eq(self.cycles[:32])
            with m.Case(Reg.CYCLES_HI >> 2):
                m.d.comb += value.eq(self.cycles[32:])
            for i in range(self.counters):
                with m.Case((Reg.COUNTER >> 2) + i):
                    m.d.comb += value.eq(self.counter[i])
            with m.Case(Reg.ID >> 2):
                m.d.comb += value.eq(ID)
        with m.If(read):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(value)]
        return m
