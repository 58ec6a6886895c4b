# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top on Amaranth's simulator, built with one MLP gate (``gates``, as a board
build for one model is): the gate it has runs bit-exact, the gate it lacks ends in BAD_OPCODE
and DONE, never a hang. DDR is ``test_rtl_axi``'s Python AXI memory, the host its AXI-Lite
master."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_rtl_axi import Lite, Memory

from ternedge.boards.build import BUILD_MODELS
from ternedge.golden import isa
from ternedge.golden.config import AcceleratorConfig
from ternedge.golden.isa import Instruction, Op, Source
from ternedge.golden.layout import POINTWISE, execute, read_q16, write_q16
from ternedge.rtl import accelerator
from ternedge.rtl.regs import ErrorCode, Reg

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

SIZE = 1 << 12
PROGRAM = 0x800
A, B, OUT = 0x000, 0x100, 0x200
BEATS = 2


def run(dut, ddr: bytearray, program: list, max_cycles: int = 5000) -> dict:
    """Run ``program`` (placed at ``PROGRAM``) on ``dut`` with ``ddr`` as DDR; return the final
    status and update ``ddr`` with what the top wrote."""
    ddr[PROGRAM:PROGRAM + len(program) * isa.INSTRUCTION_BYTES] = isa.encode(program)
    beat = isa.BEAT_BYTES
    words = {i: int.from_bytes(ddr[i * beat:(i + 1) * beat], "little")
             for i in range(len(ddr) // beat)}
    # one memory behind every DDR port (the WeightStreamer's only read)
    ports = [Memory(port, 8 * beat, 2, words) for port in (dut.ddr, *dut.weight_ports)]
    mem = ports[0]
    result = {}

    async def memory(ctx):
        now = 0
        while True:
            for port in ports:
                port.drive(ctx, now)
            events = [port.sample(ctx, now) for port in ports]
            await ctx.tick()
            for port, sampled in zip(ports, events, strict=True):
                port.update(sampled, now)
            now += 1

    async def host(ctx):
        lite = Lite(ctx, dut.ctrl)
        for reg, value in ((Reg.DDR_BASE, 0), (Reg.DDR_SIZE, SIZE), (Reg.PROGRAM_ADDR, PROGRAM),
                           (Reg.PROGRAM_LEN, len(program)), (Reg.CTRL, 1)):
            await lite.write(reg, value)
        for _ in range(max_cycles // 8):
            status = await lite.status()
            if status["done"]:
                result.update(status)
                return
        raise AssertionError(f"no DONE within about {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(memory, background=True)
    sim.add_testbench(host)
    sim.run()
    for i, value in mem.words.items():
        ddr[i * beat:(i + 1) * beat] = value.to_bytes(beat, "little")
    return result


def test_top_built_with_one_gate():
    model = BUILD_MODELS["mini"]
    config = AcceleratorConfig(group_size=3, tables_per_step=4, cols_per_cycle=4)
    dut = accelerator.Accelerator(config=config, model=model, max_tokens=2, max_context=8,
                                  attention_tile=1, gates=("relu2",))
    assert dut.pointwise_ops == (accelerator.PointwiseOp.ADD,
                                 accelerator.PointwiseOp.RELU2_GATE)
    rng = np.random.default_rng(5)
    ddr = bytearray(SIZE)
    n = BEATS * isa.LANES
    write_q16(ddr, A, rng.integers(-(3 << 16), 3 << 16, n))
    write_q16(ddr, B, rng.integers(-(3 << 16), 3 << 16, n))

    def gate(kind):
        return Instruction(Op.POINTWISE, pointwise=kind, src0=Source(A, 0, 0, BEATS),
                           src1=Source(B, 0, 0, BEATS), dst=Source(OUT, 0, 0, BEATS))

    status = run(dut, ddr, [gate(1)])                         # ReLU² gate: built
    assert (status["error"], status["code"]) == (0, 0)
    expected = POINTWISE[1](read_q16(ddr, A, n), read_q16(ddr, B, n))
    np.testing.assert_array_equal(read_q16(ddr, OUT, n), expected)
    reference = bytearray(ddr)
    execute([gate(1)], reference, eps=1, config=config, head_dim=model.head_dim)
    assert reference == ddr

    ddr[OUT:OUT + 4 * n] = bytes(4 * n)
    status = run(dut, ddr, [gate(2)])                         # SiLU gate: left out
    assert status["error"] and status["code"] == ErrorCode.BAD_OPCODE.value
    assert read_q16(ddr, OUT, n).tolist() == [0] * n          # nothing written


def test_gates_validation():
    model = BUILD_MODELS["mini"]
    config = AcceleratorConfig(group_size=3, tables_per_step=4, cols_per_cycle=4)
    for gates in ((), ("gelu",)):
        with pytest.raises(ValueError, match="gates must name some of relu2, silu"):
            accelerator.Accelerator(config=config, model=model, gates=gates)
    assert accelerator.Accelerator.__init__.__kwdefaults__["gates"] == ("relu2", "silu")
