# SPDX-License-Identifier: BSD-3-Clause
"""``rtl.checks.InstructionCheck``: the pipelined checks of a decoded instruction,
``rtl.checks.WeightCheck`` (the weight streamer's), and ``rtl.counter.Counter``.

The range verdict is checked against the commands the sequencer issues (every read and write
of the instruction, enumerated by ``isa_commands`` as ``rtl.sequencer`` walks them): it must
hold exactly when every command lies in the window, on random instructions whose extents
straddle its end."""

import random

import pytest
from isa_commands import commands

from ternedge.golden import isa
from ternedge.golden.config import AcceleratorConfig
from ternedge.golden.isa import Instruction, Op, Source

CONFIG = AcceleratorConfig(group_size=3, tables_per_step=8, cols_per_cycle=8,
                           fill_entries_per_cycle=2)
STEPS = CONFIG.k_per_step // isa.LANES          # activation beats per K-step
PARTS = CONFIG.cols_per_cycle // isa.LANES      # result beats per N-block
SIZES = dict(max_tokens=16, max_k_steps=8, max_n_blocks=8, row_beats=64, head_beats=8,
             max_context=64, attention_tile=4)
HI = 1 << 20                                    # the window [LO, HI)
LO = 1 << 16


def _commands(ins):
    """(addr, beats) of every command the sequencer issues for ``ins``
    (``isa_commands.commands``), and of a LINEAR's weight region, which the streamer reads."""
    reads, writes, _ = commands(ins)
    out = [(addr, beats) for addr, beats, _, _ in reads] + writes
    if ins.op is Op.LINEAR:
        region = isa.weight_region_bytes(ins.src1.beats, CONFIG.fill_entries_per_cycle)
        out.append((ins.src1.addr, region // isa.BEAT_BYTES))
    return out


def _in_window(ins, lo=LO, hi=HI):
    return all(a % isa.BEAT_BYTES == 0 and a >= lo and a + 16 * n <= hi
               for a, n in _commands(ins))


def _random_instruction(rng):
    """An instruction whose lengths pass, its streams placed near the window's end."""
    op = rng.choice(list(Op))
    tokens, heads = rng.randint(1, 6), rng.randint(1, 3)
    hb = SIZES["head_beats"]

    def near_end(extent):
        """An address whose stream of ``extent`` bytes ends just inside or outside HI."""
        addr = HI - extent + 16 * rng.randint(-3, 2)
        if rng.random() < 0.05:
            addr += rng.choice((4, 8))           # misaligned
        if rng.random() < 0.05:
            addr = LO - 16 * rng.randint(1, 3)    # below the window
        return max(addr, 0)

    def stride(beats):
        s = 16 * (beats + rng.randint(0, 3))
        return s + 8 if rng.random() < 0.03 else s

    def source(beats, t=tokens, h=1, st=None, sh=None):
        st = stride(beats * h) if st is None else st
        sh = stride(beats) if sh is None else sh
        extent = (t - 1) * st + (h - 1) * sh + 16 * beats
        base = near_end(extent) if rng.random() < 0.5 else LO + 16 * rng.randint(0, 64)
        return Source(base, st, sh, beats)

    if op is Op.NORM:
        b0 = rng.randint(1, 8)
        return Instruction(op, tokens=tokens, heads=heads, src0=source(b0, h=heads),
                           src1=source(heads * b0, t=1), dst=source(heads * b0))
    if op is Op.LINEAR:
        k, n = rng.randint(1, 3), rng.randint(1, 3)
        heads = rng.choice([h for h in (1, 2, 3) if (n * PARTS) % h == 0])
        bd = n * PARTS // heads
        beats = isa.weight_stream_beats(k * n * CONFIG.cols_per_cycle, CONFIG.entry_bits,
                                        CONFIG.fill_entries_per_cycle)
        region = isa.weight_region_bytes(beats, CONFIG.fill_entries_per_cycle)
        epilogue = None
        if heads == 1 and rng.random() < 0.5:
            e = source(bd)
            epilogue = Source(e.addr, e.stride_t)
        return Instruction(op, tokens=tokens, heads=heads, k_steps=k, n_blocks=n,
                           pointwise=0, epilogue=epilogue, src0=source(k * STEPS),
                           src1=Source(near_end(region) if rng.random() < 0.5 else LO,
                                       0, 0, beats),
                           dst=source(bd, h=heads))
    if op is Op.ROPE:
        return Instruction(op, tokens=tokens, heads=heads, src0=source(hb, h=heads),
                           src1=source(hb), dst=source(hb, h=heads))
    if op is Op.ATTENTION:
        tile = rng.randint(1, SIZES["attention_tile"])
        keys0 = rng.randint(1, SIZES["max_context"] - tokens + 1)
        shift = rng.choice([0, 1])
        kv_heads = ((heads - 1) >> shift) + 1
        kv = source(hb, t=keys0 + tokens - 1, h=kv_heads, st=16 * hb)
        v_offset = 16 * rng.randint(0, 64) + (8 if rng.random() < 0.03 else 0)
        if rng.random() < 0.3:
            v_offset = (HI - kv.addr - (keys0 + tokens - 1) * 16 * hb
                        - ((heads - 1) >> shift) * kv.stride_h + 16 * rng.randint(-2, 1))
            v_offset = max(v_offset, 0)
        contiguous = 16 * hb if tile > 1 else None
        return Instruction(op, tokens=tokens, heads=heads, keys0=keys0, group_shift=shift,
                           tile=tile, v_offset=v_offset,
                           src0=source(hb, h=heads, st=contiguous), src1=Source(
                               kv.addr, 0, kv.stride_h, hb),
                           dst=source(hb, h=heads, st=contiguous))
    b0 = rng.randint(1, 8)
    return Instruction(op, tokens=tokens, src0=source(b0), src1=source(b0), dst=source(b0),
                       pointwise=0)


def _verdicts(instructions, window=(LO, HI)):
    """(known_op, lengths_ok, range_ok) of each instruction, from the RTL."""
    from amaranth.sim import Simulator

    from ternedge.rtl.checks import InstructionCheck
    from ternedge.rtl.elementwise import PointwiseOp

    dut = InstructionCheck(config=CONFIG, pointwise_ops=(PointwiseOp.ADD,), **SIZES)
    out = []

    async def bench(ctx):
        ctx.set(dut.window_lo, window[0])
        ctx.set(dut.window_hi, window[1])
        for n, ins in enumerate(instructions):
            words = ins if isinstance(ins, list) else ins.words()
            # a few enabled cycles of other words first (the fetch), so the range check's
            # stream turn starts at every phase
            ctx.set(dut.enable, 1)
            for _ in range(n % 5):
                for i in range(isa.WORDS):
                    ctx.set(dut.words[i], (n * 2654435761 + i * 40503) & 0xFFFFFFFF)
                await ctx.tick()
            for i, word in enumerate(words):
                ctx.set(dut.words[i], word)
            # the verdicts hold LATENCY enabled cycles after the words (the first cycle they
            # hold is the one after this set), and while the words do
            await ctx.tick().repeat(InstructionCheck.LATENCY)
            verdicts = (ctx.get(dut.known_op), ctx.get(dut.lengths_ok), ctx.get(dut.range_ok))
            out.append(verdicts)
            for _ in range(n % 4):
                await ctx.tick()
                assert (ctx.get(dut.known_op), ctx.get(dut.lengths_ok),
                        ctx.get(dut.range_ok)) == verdicts
            # disabled, the pipeline holds whatever its words do
            ctx.set(dut.enable, 0)
            for i in range(len(words)):
                ctx.set(dut.words[i], 0)
            await ctx.tick().repeat(1 + n % 3)
            assert (ctx.get(dut.known_op), ctx.get(dut.lengths_ok),
                    ctx.get(dut.range_ok)) == verdicts

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def test_range_verdict_is_every_command_in_the_window():
    rng = random.Random(5)
    instructions = [_random_instruction(rng) for _ in range(160)]
    verdicts = _verdicts(instructions)
    want = [_in_window(ins) for ins in instructions]
    assert [v[:2] for v in verdicts] == [(1, 1)] * len(instructions)
    assert [bool(v[2]) for v in verdicts] == want
    assert 30 < sum(want) < len(want) - 30      # both verdicts are well covered


def test_op_and_length_verdicts():
    good = Instruction(Op.POINTWISE, tokens=2, src0=Source(LO, 64, 0, 4),
                       src1=Source(LO + 4096, 64, 0, 4), dst=Source(LO + 8192, 64, 0, 4))
    unknown = good.words()
    unknown[0] = 9
    no_gate = good.words()
    no_gate[0] |= 2 << 8                        # a Pointwise operation the unit lacks
    cases = [
        (good, None),
        (unknown, "BAD_OPCODE"),
        (no_gate, "BAD_OPCODE"),
        (Instruction(Op.POINTWISE, tokens=0, src0=good.src0, src1=good.src1, dst=good.dst),
         "BAD_LENGTH"),
        (Instruction(Op.POINTWISE, tokens=2, src0=good.src0, src1=Source(LO, 64, 0, 3),
                     dst=good.dst), "BAD_LENGTH"),
        # ATTENTION tiles need contiguous queries
        (Instruction(Op.ATTENTION, tokens=4, heads=2, keys0=1, tile=2,
                     src0=Source(LO, 256, 128, 8), src1=Source(LO + 8192, 0, 4096, 8),
                     dst=Source(LO + 65536, 128, 1024, 8)), "BAD_LENGTH"),
        # a LINEAR epilogue needs one destination segment
        (Instruction(Op.LINEAR, tokens=1, heads=2, k_steps=1, n_blocks=2,
                     epilogue=Source(LO, 0), src0=Source(LO, 0, 0, STEPS),
                     src1=Source(LO, 0, 0, isa.weight_stream_beats(
                         2 * CONFIG.cols_per_cycle, CONFIG.entry_bits, 2)),
                     dst=Source(LO, 0, 32, PARTS)), "BAD_LENGTH"),
    ]

    def fault(known, lengths, in_range):
        """The sequencer's fault on the verdicts (``CHECK``: the first that fails)."""
        return ("BAD_OPCODE" if not known else "BAD_LENGTH" if not lengths
                else "ADDRESS_RANGE" if not in_range else None)

    assert [fault(*v) for v in _verdicts([c for c, _ in cases])] == [w for _, w in cases]



def _weight_verdicts(instructions, window=(LO, HI)):
    """``WeightCheck.ok`` of each instruction, from the RTL."""
    from amaranth.sim import Simulator

    from ternedge.rtl.checks import WeightCheck

    limits = {k: SIZES[k] for k in ("max_tokens", "max_k_steps", "max_n_blocks")}
    dut = WeightCheck(config=CONFIG, **limits)
    out = []

    async def bench(ctx):
        ctx.set(dut.window_lo, window[0])
        ctx.set(dut.window_hi, window[1])
        for n, ins in enumerate(instructions):
            for i, word in enumerate(ins.words()):
                ctx.set(dut.words[i], word)
            ctx.set(dut.enable, 1)
            await ctx.tick().repeat(WeightCheck.LATENCY)
            out.append(ctx.get(dut.ok))
            ctx.set(dut.enable, 0)                  # disabled, it holds its verdict
            for i in range(isa.WORDS):
                ctx.set(dut.words[i], 0)
            await ctx.tick().repeat(1 + n % 3)
            assert ctx.get(dut.ok) == out[-1]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def _streamable(ins, lo=LO, hi=HI):
    """May the streamer stream ``ins``: a LINEAR whose job fits the engine, whose weight
    length is its stream's and whose weight region lies in the window."""
    if ins.op is not Op.LINEAR:
        return False
    fits = (1 <= ins.tokens <= SIZES["max_tokens"] and 1 <= ins.k_steps <= SIZES["max_k_steps"]
            and 1 <= ins.n_blocks <= SIZES["max_n_blocks"])
    if not fits:
        return False
    ports = CONFIG.fill_entries_per_cycle
    want = isa.weight_stream_beats(ins.k_steps * ins.n_blocks * CONFIG.cols_per_cycle,
                                   CONFIG.entry_bits, ports)
    addr, beats = ins.src1.addr, isa.weight_region_bytes(ins.src1.beats, ports) // 16
    return (ins.src1.beats == want and addr % isa.BEAT_BYTES == 0 and addr >= lo
            and addr + 16 * beats <= hi)


def test_weight_verdict_is_the_weight_stream_in_the_window():
    """``WeightCheck`` passes exactly the LINEARs whose weights may be streamed: random
    LINEARs whose weight regions straddle the window's ends, with wrong lengths and job
    sizes mixed in, and instructions of the other ops (never streamed)."""
    rng = random.Random(7)
    instructions = []
    while len(instructions) < 120:
        ins = _random_instruction(rng)
        if ins.op is Op.LINEAR:
            roll = rng.random()
            if roll < 0.1:                          # a weight length that is not the stream's
                ins.src1 = Source(ins.src1.addr, 0, 0, ins.src1.beats + 2)
            elif roll < 0.2:                        # a job beyond the engine's limits
                ins.tokens = SIZES["max_tokens"] + 1
        elif rng.random() < 0.7:
            continue
        instructions.append(ins)
    verdicts = _weight_verdicts(instructions)
    want = [_streamable(ins) for ins in instructions]
    assert [bool(v) for v in verdicts] == want
    assert 20 < sum(want) < len(want) - 20      # both verdicts are well covered
    # every LINEAR the sequencer's checks pass, the streamer streams
    full = _verdicts(instructions)
    assert all(ok for ok, v, ins in zip(verdicts, full, instructions, strict=True)
               if ins.op is Op.LINEAR and all(v))


@pytest.mark.parametrize(("width", "inc_width", "chunk"), [(12, 2, 4), (10, 3, 4), (9, 1, 3)])
def test_counter_counts_exactly_every_cycle(width, inc_width, chunk):
    from amaranth.sim import Simulator

    from ternedge.rtl.counter import Counter

    dut = Counter(width, inc_width=inc_width, chunk=chunk)
    rng = random.Random(width)

    async def bench(ctx):
        want = 0
        for _ in range(4 << (width - inc_width)):   # wraps around at least once
            inc = rng.choice([0, (1 << inc_width) - 1, rng.randrange(1 << inc_width)])
            clear = rng.random() < 0.001
            ctx.set(dut.inc, inc)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            want = 0 if clear else (want + inc) % (1 << width)
            assert ctx.get(dut.value) == want

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_counter_refuses_bad_sizes():
    from ternedge.rtl.counter import Counter

    with pytest.raises(ValueError, match="inc_width < chunk <= width"):
        Counter(16, inc_width=4, chunk=4)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        Counter(0)


def test_model_latencies_are_the_rtl_s():
    """``sim.accelerator`` mirrors the sequencer's CHECK and TILE waits (sim/ may not import
    rtl/, so the model keeps its own copies of the constants); the streamer's check is done
    within the sequencer's wait, which it takes too."""
    from ternedge.rtl import sequencer
    from ternedge.rtl.checks import InstructionCheck, WeightCheck
    from ternedge.rtl.weight_stream import WeightUnpacker
    from ternedge.sim import accelerator as model

    assert model.CHECK_LATENCY == InstructionCheck.LATENCY >= WeightCheck.LATENCY
    assert model.TILE_LATENCY == sequencer.TILE_LATENCY
    assert model.UNPACK_LATENCY == WeightUnpacker.LATENCY
