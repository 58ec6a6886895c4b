# SPDX-License-Identifier: BSD-3-Clause
"""rtl.sequencer.Sequencer alone, on the shipped tiny model's forward programs: it fetches
every instruction in order and issues exactly the read commands (address, beats, route, the
token's end), write commands and attention jobs the instruction implies, under random stalls
of the DMAs and the units; a LINEAR never has more than two rows in the quantizer; with
nothing stalled, its waits are the ones ``sim.accelerator`` counts; bad instructions and AXI
errors end in FINISH with the fault's code, after the drain."""

import struct

import pytest
from isa_commands import commands
from rtl_streams import seeded, simulate

from ternedge.golden import isa
from ternedge.golden.isa import Instruction, Op, Source
from ternedge.golden.layout import Layout
from ternedge.golden.model import GoldenModel
from ternedge.host.checkpoint import load_checkpoint
from ternedge.host.rtl_backend import RTL_CONFIG
from ternedge.rtl.elementwise import PointwiseOp
from ternedge.rtl.regs import ErrorCode
from ternedge.rtl.router import Route
from ternedge.rtl.sequencer import Sequencer
from ternedge.sim.accelerator import CHECK_LATENCY, TILE_LATENCY

MODEL = "host/models/tiny-kjv"
B = isa.BEAT_BYTES


@pytest.fixture(scope="module")
def layout():
    weights = load_checkpoint(MODEL)
    return Layout(GoldenModel(weights, RTL_CONFIG), RTL_CONFIG, max_tokens=8, max_context=16)


def _sequencer(layout):
    cfg, hd = layout.cfg, layout.hd
    max_dim = max(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads * hd,
                  cfg.num_key_value_heads * hd)
    return Sequencer(config=RTL_CONFIG, max_tokens=8,       # the engine's K and N limits:
                     max_k_steps=-(-max_dim // RTL_CONFIG.k_per_step),    # ``Engine``'s
                     max_n_blocks=-(-max_dim // RTL_CONFIG.cols_per_cycle),
                     row_beats=max_dim // isa.LANES,
                     head_beats=hd // isa.LANES, max_context=16, attention_tile=4,
                     pointwise_ops=(PointwiseOp.ADD, PointwiseOp.RELU2_GATE,
                                    PointwiseOp.SILU_GATE))


def _expected(program):
    """The reads, writes and attention jobs of ``program`` (``isa_commands.commands``), each
    in issue order."""
    reads, writes, jobs = [], [], []
    for ins in program:
        for total, part in zip((reads, writes, jobs), commands(ins), strict=True):
            total += part
    return reads, writes, jobs


def _run(dut, program, *, program_addr, window, seed, p_ready=1.0, read_delay=(0, 0),
         write_delay=(0, 0), read_error_at=None, max_cycles=200_000):
    """Run ``program`` on the sequencer with a modeled environment; what it issued, when.

    Each DMA takes a command only while idle (with probability ``p_ready``) and is busy for
    the command's beats plus a random delay from ``read_delay``/``write_delay``; a quantizer
    row leaves the quantizer some cycles after its read (one row a cycle at most); the
    fetched instruction's beats come one a cycle after its read is taken. ``read_error_at``:
    the index of the read command (not counting fetches) after which ``read_error`` rises.
    """
    rng = seeded(seed)
    image = isa.encode(program) if not isinstance(program, bytes) else program
    log = {"fetches": [], "reads": [], "writes": [], "jobs": [], "beat_cycles": [],
           "write_cycles": [], "read_cycles": [], "job_cycles": [], "in_quant_max": 0,
           "drain_cycles": 0}

    async def bench(ctx):
        ctx.set(dut.program_addr, program_addr)
        ctx.set(dut.program_len, len(image) // isa.INSTRUCTION_BYTES)
        ctx.set(dut.window_lo, window[0])
        ctx.set(dut.window_hi, window[1])
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        reads_free = writes_free = 0           # the cycle each DMA is idle again
        beats = []                             # (cycle, payload) of instruction beats to come
        quant_out = []                         # cycles rows leave the quantizer
        in_quant = 0
        read_error = False
        for cycle in range(max_cycles):
            ctx.set(dut.reads_idle, cycle >= reads_free and not beats)
            ctx.set(dut.writes_idle, cycle >= writes_free)
            done_row = bool(quant_out) and quant_out[0] == cycle
            if done_row:
                quant_out.pop(0)
                in_quant -= 1
            ctx.set(dut.quant_row_done, done_row)
            ctx.set(dut.read_error, read_error)
            ctx.set(dut.drained, cycle >= reads_free and cycle >= writes_free)
            ctx.set(dut.streamer_done, 1)
            beat = bool(beats) and beats[0][0] == cycle
            ctx.set(dut.instruction.valid, beat)
            if beat:
                ctx.set(dut.instruction.payload, beats.pop(0)[1])
            read_ready = cycle >= reads_free and not beats and rng.random() < p_ready
            write_ready = cycle >= writes_free and rng.random() < p_ready
            job_ready = rng.random() < p_ready
            ctx.set(dut.read.ready, read_ready)
            ctx.set(dut.write.ready, write_ready)
            ctx.set(dut.attention_job.ready, job_ready)
            if ctx.get(dut.done):
                log["fault"] = ctx.get(dut.fault)
                log["fault_code"] = ctx.get(dut.fault_code)
                return
            log["drain_cycles"] += ctx.get(dut.drain)
            if ctx.get(dut.read.valid) and read_ready:
                cmd = ctx.get(dut.read.payload)
                addr, n, route = cmd.addr, cmd.beats, Route(cmd.route)
                if route is Route.INSTRUCTION:
                    assert n == isa.WORDS // 4
                    log["fetches"].append(addr)
                    at = addr - program_addr
                    words = struct.unpack_from(f"<{isa.WORDS}I", image, at)
                    for i in range(n):
                        payload = sum(w << (32 * j) for j, w in enumerate(words[4 * i:4 * i + 4]))
                        beats.append((cycle + 1 + i, payload))
                    log["beat_cycles"].append(cycle + n)
                else:
                    log["reads"].append((addr, n, route, bool(cmd.final)))
                    log["read_cycles"].append(cycle)
                    if route is Route.QUANT_X:
                        in_quant += 1
                        log["in_quant_max"] = max(log["in_quant_max"], in_quant)
                        leave = max(cycle + n + int(rng.integers(1, 120)),
                                    quant_out[-1] + 1 if quant_out else 0)
                        quant_out.append(leave)
                    if read_error_at is not None and len(log["reads"]) > read_error_at:
                        read_error = True
                reads_free = cycle + 1 + n + int(rng.integers(*read_delay, endpoint=True))
            if ctx.get(dut.write.valid) and write_ready:
                cmd = ctx.get(dut.write.payload)
                log["writes"].append((cmd.addr, cmd.beats))
                log["write_cycles"].append(cycle)
                writes_free = cycle + 1 + cmd.beats + int(rng.integers(*write_delay,
                                                                       endpoint=True))
            if ctx.get(dut.attention_job.valid) and job_ready:
                job = ctx.get(dut.attention_job.payload)
                log["jobs"].append((job.keys, job.queries))
                log["job_cycles"].append(cycle)
            await ctx.tick()
        raise AssertionError(f"no FINISH after {max_cycles} cycles")

    simulate(dut, [bench])
    return log


@pytest.mark.parametrize(("tokens", "position", "p_ready", "seed"),
                         [(5, 2, 0.6, 1), (1, 7, 0.3, 2), (8, 0, 1.0, 3)],
                         ids=["prefill-stalled", "decode-stalled", "prefill-free"])
def test_issues_every_command_of_a_forward_pass(layout, tokens, position, p_ready, seed):
    program = layout.program(tokens, position)
    dut = _sequencer(layout)
    log = _run(dut, program, program_addr=layout.program_addr, window=(0, layout.size),
               seed=seed, p_ready=p_ready, read_delay=(0, 12), write_delay=(0, 20))
    assert log["fault"] == 0 and log["fault_code"] == 0
    assert log["fetches"] == [layout.program_addr + i * isa.INSTRUCTION_BYTES
                              for i in range(len(program))]
    reads, writes, jobs = _expected(program)
    assert log["reads"] == reads
    assert log["writes"] == writes
    assert log["jobs"] == jobs
    # never a third row into the quantizer; in a prefill, the next row goes in early
    assert log["in_quant_max"] <= 2
    assert tokens == 1 or log["in_quant_max"] == 2
    assert log["drain_cycles"] == 0


def test_waits_are_the_models(layout):
    """Nothing stalled: the first write command ``2 + CHECK_LATENCY + 1`` cycles after the
    instruction's last beat, its first read the cycle after; an attention's next tile
    ``TILE_LATENCY`` cycles later than the head before would take."""
    hb = layout.hd // isa.LANES
    row = Source(0x1000, 16 * hb, 0, hb)
    program = [
        Instruction(Op.POINTWISE, src0=row, src1=Source(0x2000, 16 * hb, 0, hb),
                    dst=Source(0x3000, 16 * hb, 0, hb)),
        # two tiles of one head: keys 2 and 4 (queries 2 and 2)
        Instruction(Op.ATTENTION, tokens=4, heads=2, keys0=1, tile=2, v_offset=0x1000,
                    src0=Source(0x4000, 16 * hb, 0x400, hb), src1=Source(0x8000, 0, 0, hb),
                    dst=Source(0xA000, 16 * hb, 0x400, hb), group_shift=1),
    ]
    log = _run(_sequencer(layout), program, program_addr=0x100, window=(0, 1 << 20), seed=0)
    assert log["fault"] == 0
    first_write = [log["write_cycles"][0], log["write_cycles"][1]]
    for beat, write in zip(log["beat_cycles"], first_write, strict=True):
        assert write == beat + 2 + CHECK_LATENCY + 1
    assert log["read_cycles"][0] == log["write_cycles"][0] + 1
    assert log["read_cycles"][2] == log["write_cycles"][1] + 1
    # attention: per (tile, head) a job, a write the cycle after, the first read the cycle
    # after that and each next read as soon as the ReadDMA is idle again...
    reads = log["read_cycles"][2:]
    lengths = [n for _, n, _, _ in log["reads"][2:]]
    for i, job in enumerate(log["job_cycles"]):
        assert log["write_cycles"][1 + i] == job + 1
        assert reads[3 * i] == job + 2
        for k in (3 * i, 3 * i + 1):
            assert reads[k + 1] == reads[k] + 1 + lengths[k]
    # ... WAIT the cycle after the last read (nothing outstanding stalls it here: the reads
    # take their beats' cycles), and the next head's job once it settles
    settles = []
    for i in range(len(log["job_cycles"]) - 1):
        last_read = reads[3 * i + 2]
        n = log["reads"][2 + 3 * i + 2][1]
        settles.append(max(last_read + 1, last_read + 1 + n, log["write_cycles"][1 + i] + 1
                           + log["writes"][1 + i][1]))
    assert log["job_cycles"][1] == settles[0] + 1                        # next head
    assert log["job_cycles"][2] == settles[1] + 1 + TILE_LATENCY         # next tile
    assert log["jobs"] == [(2, 2), (2, 2), (4, 2), (4, 2)]


def test_faults_end_in_finish_with_their_code(layout):
    hb = layout.hd // isa.LANES
    ok = Instruction(Op.POINTWISE, src0=Source(0x1000, 16 * hb, 0, hb),
                     src1=Source(0x2000, 16 * hb, 0, hb), dst=Source(0x3000, 16 * hb, 0, hb))
    outside = Instruction(Op.POINTWISE, src0=Source(0x1000, 16 * hb, 0, hb),
                          src1=Source(0x2000, 16 * hb, 0, hb),
                          dst=Source((1 << 20) - 8, 16 * hb, 0, hb))
    bad_op = bytearray(isa.encode([ok]))
    bad_op[0] = 0x3F
    cases = [
        (bytes(bad_op), ErrorCode.BAD_OPCODE, None),
        (isa.encode([ok, outside]), ErrorCode.ADDRESS_RANGE, None),
        (isa.encode([ok, ok]), ErrorCode.AXI_READ, 0),
    ]
    for image, code, error_at in cases:
        log = _run(_sequencer(layout), image, program_addr=0x100, window=(0, 1 << 20),
                   seed=4, read_delay=(5, 5), write_delay=(3, 3), read_error_at=error_at)
        assert log["fault"] == 1 and log["fault_code"] == code.value, code
        # no command of the faulting instruction goes out (an AXI error stops the program
        # at the WAIT of the instruction it hits: after its two reads, before the next fetch)
        assert len(log["reads"]) == (0 if code is ErrorCode.BAD_OPCODE else 2), code
        assert len(log["fetches"]) == (1 if error_at is not None else len(image) // 64), code
        if error_at is not None:          # the read was outstanding: drained before FINISH
            assert log["drain_cycles"] > 0
