# SPDX-License-Identifier: BSD-3-Clause
"""Cycle-exact model of the RTL accelerator top (``rtl.accelerator``) running an ``rtl.isa``
program, for a DDR of fixed read and write latency.

The top is built so that neither DMA ever waits for a unit (operands that arrive early and
all unit outputs go through FIFOs deep enough for a whole iteration), so every beat's cycle
follows forward from the DMA commands: the model walks the sequencer's states, places every
read beat (``ReadDMA``: per burst an AR cycle, ``read_latency`` cycles, then one beat a
cycle), derives each unit's output cycles from its input beats (the units' own timing, as in
their ``cycles`` docstrings), and lets the ``WriteDMA`` take the outputs burst by burst (one
beat a cycle, ``write_latency`` cycles to each B response). Cycle 0 is the first FETCH; the
count ends with the FINISH cycle, like the top's ``CYCLES`` register.

Valid where the LINEAR pipeline keeps the engine busy: ``n_blocks >= G*T/4 + 1`` (the
quantizer refills the next K-step's activations while the engine looks up the current one);
``instruction_cycles`` raises otherwise rather than return a wrong number.
"""

from dataclasses import dataclass

from ..golden.config import AcceleratorConfig
from ..rtl import isa
from ..rtl.arith import RatioScale
from ..rtl.axi import AXIRAM_READ_LATENCY, AXIRAM_WRITE_LATENCY, bursts
from ..rtl.elementwise import RMSNorm
from ..rtl.isa import Op

__all__ = ["TopTiming", "program_cycles"]

#: RMSNorm: cycles from a token's last input beat to its first gamma beat (the mean division,
#: square root and reciprocal of ``RMSNorm.setup_cycles``, then the step into pass 2)
NORM_SETUP = RMSNorm(lanes=isa.LANES, max_h=isa.LANES).setup_cycles + 1
#: DecodeUnit: cycles from the last value beat to the first output beat: the divider start,
#: ``RatioScale`` (QUOTIENT_WIDTH + 1) and the output register (``DecodeUnit.cycles``)
ATTENTION_TAIL = RatioScale.QUOTIENT_WIDTH + 4


@dataclass(frozen=True)
class TopTiming:
    """The top's geometry and its DDR latencies (cocotbext-axi ``AxiRam`` by default)."""

    config: AcceleratorConfig
    read_latency: int = AXIRAM_READ_LATENCY
    write_latency: int = AXIRAM_WRITE_LATENCY

    @property
    def steps_per_k(self) -> int:
        """DDR beats (of 4 activations) per engine K-step."""
        return self.config.k_per_step // isa.LANES


class _Clock:
    """Read-side bookkeeping: when the ReadDMA is next free."""

    def __init__(self, timing):
        self.t = timing
        self.reader_free = 0

    def read(self, accept, addr, beats):
        """Beat cycles of a read command accepted at ``accept``."""
        out, ar = [], accept + 1
        for _, n in bursts(addr, beats):
            first = ar + self.t.read_latency
            out.extend(range(first, first + n))
            ar = first + n
        self.reader_free = out[-1] + 1
        return out

    def write(self, accept, addr, available):
        """Cycle the WriteDMA is idle again, given when each beat is in the output FIFO."""
        start, j = accept + 1, 0
        for _, n in bursts(addr, len(available)):
            w = start - 1
            for _ in range(n):
                w = max(w + 1, available[j])
                j += 1
            start = w + self.t.write_latency + 1
        return start


def _norm_outputs(x, gamma):
    out, g = [], x[-1] + NORM_SETUP - 1
    for arrival in gamma:
        g = max(g + 1, arrival + 1)
        out.append(g + 2)                       # y register, FIFO write, readable
    return out


def _rope_outputs(x, table):
    half = len(x) // 2
    p = -1
    for arrival in x[:half]:
        p = max(p + 1, arrival + 1)
    out, q = [], p
    for i in range(half):
        q = max(q + 1, x[half + i] + 1, table[2 * i + 1])
        out.append(q + 2)
    out.extend(q + 3 + j for j in range(half))
    return out


def instruction_cycles(ins, timing: TopTiming, clock: _Clock, start: int) -> int:
    """Run one instruction whose FETCH is accepted at ``start``; the cycle its last WAIT
    settles (the next FETCH or FINISH is the cycle after)."""
    t = timing
    decode = start + t.read_latency + 6
    clock.read(start, 0, isa.WORDS // 4)
    u = decode + 1
    pending = []                                # output FIFO: cycle each beat is readable
    if ins.op is Op.LINEAR:
        if ins.n_blocks < t.steps_per_k + 1:
            raise ValueError(f"the top model needs n_blocks >= {t.steps_per_k + 1} "
                             f"(got {ins.n_blocks}): the engine would wait for activations")
        clock.read(decode + 2, ins.src1.addr, ins.src1.beats)
        u = decode + 3
    settled = u
    tok = 0
    while tok < ins.tokens:
        size = min(ins.tile, ins.tokens - tok) if ins.op is Op.ATTENTION else 1
        for h in range(1 if ins.op is Op.NORM else ins.heads):
            write_accept = u + 1
            state = u + 2                          # READ0
            reads = []

            def read(addr, beats, state, reads=reads):
                """Issue from sequencer state cycle ``state``; the next state's cycle."""
                accept = max(state, clock.reader_free)
                reads.append(clock.read(accept, addr, beats))
                return accept + 1

            s0, s1 = ins.src0, ins.src1
            row0 = s0.addr + tok * s0.stride_t
            row1 = s1.addr + tok * s1.stride_t
            if ins.op is Op.NORM:                   # the row from ``heads`` segments
                for segment in range(ins.heads):
                    state = read(row0 + segment * s0.stride_h, s0.beats, state)
                x = [cycle for segment in reads for cycle in segment]
                state = read(s1.addr, s1.beats, state)
                state += 1                          # READ2 skipped
                pending = _norm_outputs(x, reads[-1])
            elif ins.op is Op.LINEAR:
                if h == 0:
                    state = read(row0, s0.beats, state)
                    l0 = reads[0][-1] + t.steps_per_k + 3
                    last_step = l0 + (ins.k_steps - 1) * ins.n_blocks
                    # result parts reach the dequantizer one a cycle from last_step + 2
                    parts = t.config.cols_per_cycle // isa.LANES
                    acc = [last_step + 2 + j for j in range(ins.n_blocks * parts)]
                    if ins.epilogue is None:
                        pending = [cycle + 2 for cycle in acc]
                        state += 1                  # READ1 skipped
                    else:                           # the a rows, then Pointwise
                        row = ins.epilogue.addr + tok * ins.epilogue.stride_t
                        state = read(row, ins.dst.beats, state)
                        late = [j for j, (a, y) in enumerate(zip(reads[1], acc, strict=True))
                                if a + 1 > y + 1]
                        if late:
                            raise ValueError("the top model needs the epilogue operand in "
                                             "before the linear's outputs (beat "
                                             f"{late[0]} is late)")
                        pending = [cycle + 3 for cycle in acc]
                else:
                    state += 2                      # READ0, READ1 skipped
                state += 1                          # READ2 skipped
            elif ins.op is Op.ROPE:
                state = read(row0 + h * s0.stride_h, s0.beats, state)
                state = read(row1, s1.beats, state)
                state += 1
                pending = _rope_outputs(*reads)
            elif ins.op is Op.ATTENTION:            # a tile of ``size`` queries
                keys = ins.keys0 + tok + size - 1
                base = s1.addr + (h >> ins.group_shift) * s1.stride_h
                state = read(row0 + h * s0.stride_h, size * s0.beats, state)
                state = read(base, keys * s1.beats, state)
                state = read(base + ins.v_offset, keys * s1.beats, state)
                end = reads[-1][-1] + ATTENTION_TAIL
                pending = [end + j + 1 for j in range(size * s0.beats)]
            elif ins.op is Op.POINTWISE:
                state = read(row0, s0.beats, state)
                state = read(row1, s1.beats, state)
                state += 1
                pending = [b + 2 for b in reads[1]]
            d = ins.dst
            dst = d.addr + tok * d.stride_t + h * d.stride_h
            beats = size * d.beats
            available, pending = pending[:beats], pending[beats:]
            write_idle = clock.write(write_accept, dst, available)
            read_done = clock.reader_free if reads else 0
            settled = max(state, read_done, write_idle)
            u = settled + 1
        tok += size
    return settled


def program_cycles(program, timing: TopTiming) -> int:
    """Cycles of the top's ``CYCLES`` register for a whole program (FETCH to FINISH)."""
    clock = _Clock(timing)
    fetch = 0
    for ins in program:
        fetch = instruction_cycles(ins, timing, clock, fetch) + 1
    return fetch + 1                            # the FINISH cycle, counted from 0
