# SPDX-License-Identifier: BSD-3-Clause
"""cocotb test module that serves the RTL backend: DDR and host side of the simulated board.

Run by ``host.rtl_backend`` inside the simulator (Verilator) with the accelerator top
(``rtl.accelerator``) as toplevel. DDR is cocotbext-axi's ``AxiRam`` on the ``ddr`` port; the
host's register accesses go through cocotbext-axi's ``AxiLiteMaster`` on ``ctrl``. The test
listens on ``TERNEDGE_COSIM_ADDRESS`` (a ``multiprocessing.connection`` address, authkey
``TERNEDGE_COSIM_KEY`` in hex) and answers requests until ``("exit",)``:

``("load", ddr_size, [(addr, bytes), ...])``
    Create the DDR of ``ddr_size`` bytes with these contents.
``("run", writes, program_addr, program_len, reads, timeout_cycles)``
    Write ``writes`` into DDR, program the registers, START, poll STATUS until DONE (giving up
    after ``timeout_cycles``), then answer ``("done", status, cycles, counters, [bytes of each
    (addr, nbytes) in reads])``.
``("script", steps)``
    Register-level steps for tests of misuse: ``("write", offset, value)``, ``("read",
    offset)``, ``("ddr", addr, bytes)`` (write DDR), ``("wait_done", timeout_cycles)`` (poll
    STATUS until the run is over; reads STATUS, or None on timeout). Answers ``("script",
    [value of each read / wait_done])``.

Errors are answered as ``("error", message)``.
"""

import os
import warnings
from multiprocessing.connection import Listener

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..rtl.accelerator import COUNTERS
from ..rtl.regs import Reg

#: a running accelerator is polled this often (cycles), as a host would poll STATUS
POLL_CYCLES = 500


async def _read_reg(ctrl, offset):
    return int.from_bytes((await ctrl.read(offset, 4)).data, "little")


async def _write_reg(ctrl, offset, value):
    await ctrl.write(offset, int(value).to_bytes(4, "little"))


class Board:
    """The simulated board: clock, reset, DDR and the register master."""

    def __init__(self, dut):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

        self.dut = dut
        self.ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "ctrl_"), dut.clk, dut.rst)
        self.ram = None
        self._bus = AxiBus.from_prefix(dut, "ddr_")

    async def start(self):
        Clock(self.dut.clk, 4, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def load(self, size, blocks):
        from cocotbext.axi import AxiRam

        self.ram = AxiRam(self._bus, self.dut.clk, self.dut.rst, size=size)
        for addr, data in blocks:
            self.ram.write(addr, data)
        self.size = size

    async def wait_done(self, timeout_cycles):
        """STATUS once the run is over (DONE, or ERROR while not BUSY: a refused START), or
        None after ``timeout_cycles``. An ERROR while BUSY (a START refused because a run is
        going) does not end the wait: that run still ends with DONE."""
        waited = 0
        while True:
            status = await _read_reg(self.ctrl, Reg.STATUS)
            busy, done, error = status & 1, status & 2, status & 4
            if done or (error and not busy):
                return status
            if waited >= timeout_cycles:
                return None
            await ClockCycles(self.dut.clk, POLL_CYCLES)
            waited += POLL_CYCLES

    async def script(self, steps):
        out = []
        for step in steps:
            if step[0] == "write":
                await _write_reg(self.ctrl, step[1], step[2])
            elif step[0] == "read":
                out.append(await _read_reg(self.ctrl, step[1]))
            elif step[0] == "ddr":
                self.ram.write(step[1], step[2])
            elif step[0] == "wait_done":
                out.append(await self.wait_done(step[1]))
            else:
                raise ValueError(f"unknown script step {step[0]!r}")
        return ("script", out)

    async def run(self, writes, program_addr, program_len, reads, timeout_cycles):
        for addr, data in writes:
            self.ram.write(addr, data)
        await _write_reg(self.ctrl, Reg.DDR_BASE, 0)
        await _write_reg(self.ctrl, Reg.DDR_SIZE, self.size)
        await _write_reg(self.ctrl, Reg.PROGRAM_ADDR, program_addr)
        await _write_reg(self.ctrl, Reg.PROGRAM_LEN, program_len)
        await _write_reg(self.ctrl, Reg.CTRL, 1)
        status = await self.wait_done(timeout_cycles)
        if status is None:
            return ("error", f"the accelerator did not signal DONE within {timeout_cycles} "
                             "cycles; raise timeout_cycles, or check the program")
        cycles = (await _read_reg(self.ctrl, Reg.CYCLES_LO)
                  | await _read_reg(self.ctrl, Reg.CYCLES_HI) << 32)
        counters = {name: await _read_reg(self.ctrl, Reg.COUNTER + 4 * i)
                    for i, name in enumerate(COUNTERS)}
        data = [bytes(self.ram.read(addr, n)) for addr, n in reads]
        return ("done", status, cycles, counters, data)


@cocotb.test()
async def serve(dut):
    """Answer the RTL backend's requests until it says exit."""
    # cocotbext-axi 0.1.28 still reads a deprecated cocotb field on every AXI-Lite response
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
    address = os.environ["TERNEDGE_COSIM_ADDRESS"]
    key = bytes.fromhex(os.environ["TERNEDGE_COSIM_KEY"])
    board = Board(dut)
    await board.start()
    with Listener(address, authkey=key) as listener, listener.accept() as conn:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):            # the backend is gone: end the simulation
                return
            kind = request[0]
            try:
                if kind == "exit":
                    reply = ("bye",)
                elif kind == "load":
                    board.load(request[1], request[2])
                    reply = ("loaded",)
                elif kind == "run":
                    reply = await board.run(*request[1:])
                elif kind == "script":
                    reply = await board.script(request[1])
                else:
                    reply = ("error", f"unknown request {kind!r}")
            except Exception as exc:      # the backend reports it; the simulator stays up
                reply = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except OSError:
                return
            if kind == "exit":
                return
