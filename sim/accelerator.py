# SPDX-License-Identifier: BSD-3-Clause
"""Cycle-exact model of the RTL accelerator top (``rtl.accelerator``) running a ``golden.isa``
program, under a ``golden.ddr.DdrTiming`` DDR (the harness's ``kv260`` and ``ideal`` profiles).

The top is built so that neither DMA ever waits for a unit (operands that arrive early and
all unit outputs go through FIFOs deep enough for a whole iteration), so every beat's cycle
follows forward from the DMA commands: the model walks the sequencer's states, places every
read beat (``ReadDMA``: ``golden.ddr.read_schedule``, up to ``TOP_READS_IN_FLIGHT`` bursts
outstanding, each ``read_latency`` cycles from its AR to its first beat, one beat a cycle),
derives each unit's output cycles from its input beats (the units' own timing, as in
their ``cycles`` docstrings), and lets the ``WriteDMA`` take the outputs burst by burst (one
beat a cycle, ``write_latency`` cycles to each B response). Cycle 0 is the first FETCH; the
count ends with the FINISH cycle, like the top's ``CYCLES`` register.

A LINEAR token runs K-step by K-step through the gearbox (the quantizer's beats collected
into one K-step; two K-step registers, so the next K-step fills while the engine still holds
the one before) and the engine's table builder (``rtl.tlmm``: registered tables, or ``lutram``
tables written P cycles per K-step into two banks); ``_linear_token`` gives the recurrence,
which holds for any ``n_blocks`` (the engine waits for the gearbox when a K-step's lookups are
shorter than its refill).

The weights come over the ``WeightStreamer``'s port (``_Streamer``): it walks the program
from cycle 0 like the sequencer (a fetch, ``read_latency + 6`` cycles to its DECODE), and for
a LINEAR offers the engine its job, which is taken once the bank of the job two back is
released (the cycle after that job's last issue), then reads the weight stream. A LINEAR's
first lookup waits for its bank (``BANK_TO_ISSUE`` cycles after the last weight beat), and the
run ends once the walk is DONE too.

Both DMAs keep several bursts in flight (``TOP_READS_IN_FLIGHT``, ``TOP_WRITES_IN_FLIGHT``).
The DDR's read limit (``max_reads``) bounds the reads in flight with the ReadDMA's own; a
write limit below the WriteDMA's (whose W beats may then run ahead of a held AW) and a
bandwidth cap below the two channels' 32 bytes a cycle are not modeled: ``TopTiming``
refuses them rather than return a wrong number.
"""

from dataclasses import dataclass

from ..golden import isa
from ..golden import tlmm as golden_tlmm
from ..golden.config import AcceleratorConfig
from ..golden.ddr import (
    AXIRAM_READ_LATENCY,
    AXIRAM_WRITE_LATENCY,
    TOP_READS_IN_FLIGHT,
    TOP_WRITES_IN_FLIGHT,
    DdrTiming,
    bursts,
    read_schedule,
    write_schedule,
)
from ..golden.isa import Op
from . import blocks, units

__all__ = ["TopTiming", "program_cycles"]

#: data channels of the top that may each move a beat a cycle: the ReadDMA's, the
#: WeightStreamer's and the WriteDMA's
CHANNELS = 3
#: RMSNorm: cycles from a token's last input beat to its first gamma beat (its pipelined
#: sums, the mean division, square root and reciprocal: ``RMSNorm.setup_cycles``)
NORM_SETUP = units.RMSNorm(lanes=isa.LANES).setup_cycles
#: RoPE: cycles from a second-half beat's handshake to its y1 beat's
ROPE_LATENCY = units.RoPE(lanes=isa.LANES).latency
#: RMSNorm: cycles from a gamma beat's handshake to its output beat's
NORM_LATENCY = units.RMSNorm(lanes=isa.LANES).latency
#: PrefillUnit: cycles from the last value beat to the first output beat (its pipelines, the
#: reciprocal and the output pass: ``tail``, which depends on the lanes alone)
ATTENTION_TAIL = units.DecodeUnit(lanes=isa.LANES, head_dim=isa.LANES).tail
#: Quantizer: cycles from a token's last input beat to its first INT8 beat (its first buffer
#: read ``pass2_start`` cycles after, that beat out of the divider pipeline ``latency`` later)
QUANT_FIRST_BEAT = (units.Quantizer(lanes=isa.LANES).pass2_start
                    + units.Quantizer(lanes=isa.LANES).latency)
#: Dequantizer: cycles from an accumulator beat's handshake to its output beat's
DEQUANT_LATENCY = units.Dequantizer(lanes=isa.LANES).latency
#: Pointwise: cycles from an input beat's handshake to its output beat's (every operation)
POINTWISE_LATENCY = units.Pointwise(lanes=isa.LANES).latency
#: TLMM engine: cycles from a lookup's issue to its lookup stage (``rtl.tlmm.Engine``)
ISSUE_TO_LOOKUP = 2
#: cycles from a job's last weight beat to its bank's first possible issue: the registered
#: bank write, the bank full, then ``running`` (``rtl.tlmm.WeightBuffer``, ``Engine``)
BANK_TO_ISSUE = 3


@dataclass(frozen=True)
class TopTiming:
    """The top's geometry, its DDR latencies (cocotbext-axi ``AxiRam``'s by default) and the
    read bursts in flight (the ReadDMA's, or fewer if the DDR allows fewer)."""

    config: AcceleratorConfig
    read_latency: int = AXIRAM_READ_LATENCY
    write_latency: int = AXIRAM_WRITE_LATENCY
    reads_in_flight: int = TOP_READS_IN_FLIGHT
    writes_in_flight: int = TOP_WRITES_IN_FLIGHT

    @classmethod
    def for_ddr(cls, config: AcceleratorConfig, ddr: DdrTiming) -> "TopTiming":
        """The timing under a DDR profile; refuses a bandwidth cap that could delay a beat of
        the top's read and write channels (one beat each a cycle), which it does not model."""
        if ddr.max_writes < TOP_WRITES_IN_FLIGHT:
            raise ValueError(f"a DDR that keeps {ddr.max_writes} write bursts outstanding can "
                             f"hold back an AW of the top's {TOP_WRITES_IN_FLIGHT} while its W "
                             "beats go ahead; the top model covers memories that take "
                             f"{TOP_WRITES_IN_FLIGHT} or more")
        if ddr.caps(beats_per_cycle=CHANNELS):
            raise ValueError(f"a DDR bandwidth cap of {ddr.bytes_per_cycle:.1f} bytes per cycle "
                             f"(bucket {ddr.bucket_bytes}) can delay the top's "
                             f"{16 * CHANNELS} bytes a cycle; the top model covers caps of at "
                             f"least {16 * CHANNELS} bytes per cycle")
        return cls(config, read_latency=ddr.read_latency, write_latency=ddr.write_latency,
                   reads_in_flight=min(TOP_READS_IN_FLIGHT, ddr.max_reads),
                   writes_in_flight=TOP_WRITES_IN_FLIGHT)

    @property
    def steps_per_k(self) -> int:
        """DDR beats (of 4 activations) per engine K-step."""
        return self.config.k_per_step // isa.LANES

    @property
    def engine_result_latency(self) -> int:
        """Cycles from the engine's issue of a last-K-step lookup to its result's handshake
        (``blocks.TlmmEngine.result_latency``); its lookup stage is two cycles after the issue."""
        return blocks.TlmmEngine(self.config).result_latency

    @property
    def table_writes(self) -> int | None:
        """``lutram`` tables: cycles the table builder writes one K-step (P); registers: None."""
        if self.config.table_memory != "lutram":
            return None
        return (golden_tlmm.table_size(self.config.group_size) - 1) // 2


class _Clock:
    """Read-side bookkeeping: when the ReadDMA is next free."""

    def __init__(self, timing):
        self.t = timing
        self.reader_free = 0

    def read(self, accept, addr, beats):
        """Beat cycles of a read command accepted at ``accept``."""
        out = read_schedule(bursts(addr, beats), start=accept + 1,
                            latency=self.t.read_latency, in_flight=self.t.reads_in_flight)
        self.reader_free = out[-1] + 1
        return out

    def write(self, accept, addr, available):
        """Cycle the WriteDMA is idle again (the cycle after its last B response), given when
        each beat is in the output FIFO."""
        responses = write_schedule(bursts(addr, len(available)), available, start=accept + 1,
                                   latency=self.t.write_latency,
                                   in_flight=self.t.writes_in_flight)
        return responses[-1] + 1


class _Streamer:
    """The ``WeightStreamer``'s walk over the program on its own port: when each LINEAR's
    weights are in its bank, given when the engine released the banks of the jobs before."""

    def __init__(self, timing, program):
        self.t = timing
        self.port = _Clock(timing)               # its own ReadDMA
        self.program = list(program)
        self.pc = 0
        self.fetch = 0                           # cycle of the next FETCH (with the sequencer's)
        self.jobs = 0                            # LINEAR jobs streamed so far
        self.last_beats = []                     # per job: its last weight beat
        self.releases = []                       # per job: the engine's release of its bank
        self.done = None                         # first cycle of DONE

    def _step(self):
        """Walk one instruction."""
        t, ins = self.t, self.program[self.pc]
        decode = self.fetch + t.read_latency + 6
        end = decode                             # the state before the next FETCH
        if ins.op is Op.LINEAR:
            job = self.jobs
            accept = decode + 1                  # JOB: the fill bank is free
            if job >= 2:
                accept = max(accept, self.releases[job - 2] + 1)
            beats = self.port.read(accept + 1, ins.src1.addr, ins.src1.beats)   # READ
            self.last_beats.append(beats[-1])
            self.jobs += 1
            end = beats[-1]
        self.pc += 1
        self.fetch = end + 1
        if self.pc == len(self.program):
            self.done = end + 1

    def weights_in(self, job: int) -> int:
        """Cycle of job ``job``'s last weight beat (its last entry into the bank)."""
        while self.jobs <= job:
            if self.jobs >= 2 and len(self.releases) < self.jobs - 1:
                raise ValueError(f"job {self.jobs} waits for the release of job {self.jobs - 2}")
            self._step()
        return self.last_beats[job]

    def release(self, job: int, cycle: int):
        """The engine's last issue of job ``job`` (its bank is free the cycle after)."""
        if len(self.releases) != job:
            raise ValueError(f"releases come in job order: {len(self.releases)}, not {job}")
        self.releases.append(cycle)

    def finished(self) -> int:
        """The first cycle the walk is DONE."""
        while self.done is None:
            self._step()
        return self.done


def _norm_outputs(x, gamma):
    out, g = [], x[-1] + NORM_SETUP - 1
    for arrival in gamma:
        g = max(g + 1, arrival + 1)
        out.append(g + NORM_LATENCY + 1)        # y's handshake (FIFO write), readable
    return out


def _rope_outputs(x, table):
    half = len(x) // 2
    p = -1
    for arrival in x[:half]:
        p = max(p + 1, arrival + 1)
    out, q = [], p
    for i in range(half):
        q = max(q + 1, x[half + i] + 1, table[2 * i + 1])
        out.append(q + ROPE_LATENCY + 1)        # y1's handshake (FIFO write), readable
    # the y2 half: read from the cycle the pipeline is empty, the read, the output register
    out.extend(q + ROPE_LATENCY + 3 + j for j in range(half))
    return out


def _linear_token(timing: TopTiming, x_last: int, beats: int, k_steps: int,
                  n_blocks: int, first_issue: int | None = None) -> int:
    """Cycle of the first lookup (the engine's lookup stage, two cycles after its issue) of a
    token's last K-step, given the cycle its last activation beat entered the quantizer (the
    engine idle before it) and the first cycle the engine may issue (``first_issue``: the
    job's bank full and running; None: long before).

    The quantizer hands its first INT8 beat over ``QUANT_FIRST_BEAT`` cycles after the token's
    last input beat, then one a cycle while the gearbox takes them. The gearbox is full (valid
    to the engine) the cycle after its K-step's last beat, or, if the K-step before is still
    held, the cycle after the engine took that one; the next K-step's beats come from the
    cycle it is full.
    Registered tables take a K-step (A) once the previous one has moved on to the lookup
    register, in the bank-read cycle of its first lookup (the lookup cycle - 1), and are looked
    up from A + 2. ``lutram`` tables write a K-step for P cycles from W (the gearbox full, the
    previous write done and its bank freed by the lookups two K-steps back), take it at W + P -
    1 and are looked up from W + P. Lookups run one N-block a cycle.
    """
    steps, p = timing.steps_per_k, timing.table_writes
    sizes = [steps] * (k_steps - 1) + [beats - steps * (k_steps - 1)]
    if not 0 < sizes[-1] <= steps:
        raise ValueError(f"{beats} activation beats do not make {k_steps} K-steps of {steps}")
    never = -(1 << 62)
    running = never if first_issue is None else first_issue + ISSUE_TO_LOOKUP
    full = x_last + QUANT_FIRST_BEAT + sizes[0]  # gearbox valid to the engine
    look, look_before, write = never, never, never
    for s in range(k_steps):
        if p is None:
            take = max(full, look - 1)
            first = max(take + 2, look + n_blocks, running)
        else:
            write = max(full, write + p, look_before + n_blocks - 1)
            take = write + p - 1
            first = max(write + p, look + n_blocks, running)
        look_before, look = look, first
        if s + 1 < k_steps:
            # the next K-step fills from the cycle this one left the filling register (its
            # gearbox full), and waits there until this one is taken
            full = max(full + sizes[s + 1] - 1, take) + 1
    return look


def instruction_cycles(ins, timing: TopTiming, clock: _Clock, start: int,
                       streamer: _Streamer, job: int) -> int:
    """Run one instruction whose FETCH is accepted at ``start`` (a LINEAR: the engine's job
    ``job``); the cycle its last WAIT settles (the next FETCH or FINISH is the cycle after)."""
    t = timing
    decode = start + t.read_latency + 6
    clock.read(start, 0, isa.WORDS // 4)
    u = decode + 1
    pending = []                                # output FIFO: cycle each beat is readable
    first_issue = None
    if ins.op is Op.LINEAR:                     # its weights come over the streamer's port
        first_issue = streamer.weights_in(job) + BANK_TO_ISSUE
        if job >= 1:
            first_issue = max(first_issue, streamer.releases[job - 1] + 2)
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
                    last_step = _linear_token(t, reads[0][-1], s0.beats, ins.k_steps,
                                              ins.n_blocks, first_issue if tok == 0 else None)
                    if tok == ins.tokens - 1:       # the bank is released at the last issue
                        streamer.release(job, last_step - ISSUE_TO_LOOKUP + ins.n_blocks - 1)
                    # result parts reach the dequantizer one a cycle from the cycle after the
                    # first result's handshake (its issue, then the result latency)
                    parts = t.config.cols_per_cycle // isa.LANES
                    first_part = last_step - ISSUE_TO_LOOKUP + t.engine_result_latency + 1
                    acc = [first_part + j for j in range(ins.n_blocks * parts)]
                    if ins.epilogue is None:
                        pending = [cycle + DEQUANT_LATENCY + 1 for cycle in acc]
                        state += 1                  # READ1 skipped
                    else:                           # the a rows, then Pointwise
                        row = ins.epilogue.addr + tok * ins.epilogue.stride_t
                        state = read(row, ins.dst.beats, state)
                        late = [j for j, (a, y) in enumerate(zip(reads[1], acc, strict=True))
                                if a + 1 > y + DEQUANT_LATENCY]
                        if late:
                            raise ValueError("the top model needs the epilogue operand in "
                                             "before the linear's outputs (beat "
                                             f"{late[0]} is late)")
                        pending = [cycle + DEQUANT_LATENCY + POINTWISE_LATENCY + 1
                                   for cycle in acc]
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
                pending = [b + POINTWISE_LATENCY + 1 for b in reads[1]]
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
    streamer = _Streamer(timing, program)
    fetch, job, settled = 0, 0, 0
    for ins in program:
        settled = instruction_cycles(ins, timing, clock, fetch, streamer, job)
        fetch = settled + 1
        job += ins.op is Op.LINEAR
    finish = max(settled, streamer.finished()) + 1     # END waits for the streamer's walk
    return finish + 1                                  # the FINISH cycle, counted from 0
