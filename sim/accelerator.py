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

A LINEAR token runs K-step by K-step through the gearbox (``rtl.linear_chain.ActivationGear``:
the quantizer's beats collected into one K-step; two K-step registers, so the next K-step
fills while the engine still holds the one before) and the engine's table builder
(``rtl.tlmm``: registered tables, or ``lutram`` tables written P cycles per K-step into two
banks); ``_linear_token`` gives the recurrence, which holds for any ``n_blocks`` (the engine
waits for the gearbox when a K-step's lookups are shorter than its refill). A LINEAR's tokens
are pipelined (``_linear``): a token's row is read while the tokens before are still in the
quantizer's pass 2, the engine and the dequantizer, and its writes go out on their own. The
quantizer starts a token's pass 2 only once the token before has left the gearbox and the
dequantizer has started on its results, so the recurrence runs on across tokens in the engine
alone; the model checks that the dequantizer is ready for every token's results and that the
FIFOs in between never fill (the operands of three tokens, the outputs of two).

The weights come over the ``WeightStreamer``'s ports (``_Streamer``): it walks the program
from cycle 0 like the sequencer (a fetch, ``fetch_to_decode`` cycles to its DECODE), and for
a LINEAR offers the engine its job, which is taken once the bank of the job two back is
released (the cycle after that job's last issue), then reads the weight stream's P parts
(``fill_entries_per_cycle`` ports), all at once. The parts split into the same bursts
(``golden.isa`` places them whole 4 KiB pages apart) and the ports have the same timing, so
each port's beats come in the same cycles as port 0's: the model follows port 0. A LINEAR's
first lookup waits for its bank (``UNPACK_LATENCY + BANK_TO_ISSUE`` cycles after the last
weight row), and the run ends once the walk is DONE too.

Both DMAs keep several bursts in flight (``TOP_READS_IN_FLIGHT``, ``TOP_WRITES_IN_FLIGHT``).
The DDR's read limit (``max_reads``) bounds the reads in flight with the ReadDMA's own; a
write limit below the WriteDMA's (whose W beats may then run ahead of a held AW) and a
bandwidth cap below the data channels' 16 bytes a cycle each (``TopTiming.channels``) are not
modeled: ``TopTiming`` refuses them rather than return a wrong number.
"""

from dataclasses import dataclass

from ..golden import isa
from ..golden import tlmm as golden_tlmm
from ..golden.config import AcceleratorConfig
from ..golden.ddr import (
    AXIRAM_READ_LATENCY,
    AXIRAM_WRITE_LATENCY,
    DMA_FIRST_REQUEST,
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
#: Quantizer: cycles from a token's last input beat to its amax beat (taken at once: its
#: first buffer read), and from a buffer read to its INT8 beat
QUANT_PASS2_START = units.Quantizer(lanes=isa.LANES).pass2_start
QUANT_LATENCY = units.Quantizer(lanes=isa.LANES).latency
#: Dequantizer: cycles from an accumulator beat's handshake to its output beat's
DEQUANT_LATENCY = units.Dequantizer(lanes=isa.LANES).latency
#: Dequantizer: cycles from taking a token's scale (the quantizer's amax) to taking its first
#: accumulator beat
DEQUANT_SETUP = units.Dequantizer(lanes=isa.LANES).setup_cycles
#: Dequantizer: cycles from a token's last accumulator beat to the next token's first
DEQUANT_TOKEN_GAP = units.Dequantizer.TOKEN_GAP
#: TLMM engine: cycles from a lookup's issue to its lookup stage (``rtl.tlmm.Engine``)
ISSUE_TO_LOOKUP = 2
#: cycles from a weight row to its entries' handshake with the engine's bank: the unpacker's
#: output register (``rtl.weight_stream.WeightUnpacker.LATENCY``)
UNPACK_LATENCY = 1
#: cycles from a job's last weight entries to its bank's first possible issue: the registered
#: bank write, the bank full, then ``running`` (``rtl.tlmm.WeightBuffer``, ``Engine``)
BANK_TO_ISSUE = 3
#: cycles from DECODE to the instruction's first UNIT_JOB (the sequencer's) or JOB (the
#: streamer's, a LINEAR): the pipelined checks of ``rtl.checks.InstructionCheck`` (its
#: ``LATENCY``: DECODE, then CHECK until the verdicts hold)
CHECK_LATENCY = 20
#: cycles an ATTENTION instruction waits (TILE) between a tile's last WAIT and the next
#: tile's first UNIT_JOB: the tile's registered sizes (``rtl.sequencer.TILE_LATENCY``)
TILE_LATENCY = 4


@dataclass(frozen=True)
class TopTiming:
    """The top's geometry, its DDR latencies (cocotbext-axi ``AxiRam``'s by default), the
    read bursts in flight (the ReadDMA's, or fewer if the DDR allows fewer) and the MLP gates
    its ``Pointwise`` unit has (``rtl.accelerator.Accelerator``'s ``gates``: they set the
    unit's latency)."""

    config: AcceleratorConfig
    read_latency: int = AXIRAM_READ_LATENCY
    write_latency: int = AXIRAM_WRITE_LATENCY
    reads_in_flight: int = TOP_READS_IN_FLIGHT
    writes_in_flight: int = TOP_WRITES_IN_FLIGHT
    gates: tuple = units.POINTWISE_GATES

    @classmethod
    def for_ddr(cls, config: AcceleratorConfig, ddr: DdrTiming,
                gates: tuple = units.POINTWISE_GATES) -> "TopTiming":
        """The timing under a DDR profile; refuses a bandwidth cap that could delay a beat of
        the top's read and write channels (one beat each a cycle), which it does not model."""
        if ddr.max_writes < TOP_WRITES_IN_FLIGHT:
            raise ValueError(f"a DDR that keeps {ddr.max_writes} write bursts outstanding can "
                             f"hold back an AW of the top's {TOP_WRITES_IN_FLIGHT} while its W "
                             "beats go ahead; the top model covers memories that take "
                             f"{TOP_WRITES_IN_FLIGHT} or more")
        channels = cls(config).channels
        if ddr.caps(beats_per_cycle=channels):
            raise ValueError(f"a DDR bandwidth cap of {ddr.bytes_per_cycle:.1f} bytes per cycle "
                             f"(bucket {ddr.bucket_bytes}) can delay the top's "
                             f"{16 * channels} bytes a cycle; the top model covers caps of at "
                             f"least {16 * channels} bytes per cycle")
        return cls(config, read_latency=ddr.read_latency, write_latency=ddr.write_latency,
                   reads_in_flight=min(TOP_READS_IN_FLIGHT, ddr.max_reads),
                   writes_in_flight=TOP_WRITES_IN_FLIGHT, gates=tuple(gates))

    @property
    def pointwise_latency(self) -> int:
        """Pointwise: cycles from an input beat's handshake to its output beat's (every
        operation: the longest built one's)."""
        return units.Pointwise(lanes=isa.LANES, gates=self.gates).latency

    @property
    def weight_ports(self) -> int:
        """The ``WeightStreamer``'s DDR ports (``config.fill_entries_per_cycle``)."""
        return self.config.fill_entries_per_cycle

    @property
    def channels(self) -> int:
        """Data channels of the top that may each move a beat a cycle: the ReadDMA's, the
        WriteDMA's and one per weight port."""
        return 2 + self.weight_ports

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


def fetch_to_decode(timing: TopTiming) -> int:
    """Cycles from a FETCH whose command is accepted at once to its DECODE: the ReadDMA's
    first AR, the memory's latency, the four beats, the words in (the sequencer's and the
    streamer's)."""
    return DMA_FIRST_REQUEST + timing.read_latency + 3 + 2


class _Clock:
    """Read-side bookkeeping: when the ReadDMA is next free."""

    def __init__(self, timing):
        self.t = timing
        self.reader_free = 0

    def read(self, accept, addr, beats):
        """Beat cycles of a read command accepted at ``accept``."""
        out = read_schedule(bursts(addr, beats), start=accept + DMA_FIRST_REQUEST,
                            latency=self.t.read_latency, in_flight=self.t.reads_in_flight)
        self.reader_free = out[-1] + 1
        return out

    def write(self, accept, addr, available):
        """Cycle the WriteDMA is idle again (the cycle after its last B response), given when
        each beat is in the output FIFO."""
        responses = write_schedule(bursts(addr, len(available)), available,
                                   start=accept + DMA_FIRST_REQUEST,
                                   latency=self.t.write_latency,
                                   in_flight=self.t.writes_in_flight)
        return responses[-1] + 1


class _Streamer:
    """The ``WeightStreamer``'s walk over the program on its own ports: when each LINEAR's
    weights are in its bank, given when the engine released the banks of the jobs before."""

    def __init__(self, timing, program):
        self.t = timing
        self.port = _Clock(timing)               # its port 0's ReadDMA (the others keep step)
        self.program = list(program)
        self.pc = 0
        self.fetch = 0                           # cycle of the next FETCH (with the sequencer's)
        self.jobs = 0                            # LINEAR jobs streamed so far
        self.last_beats = []                     # per job: its last entries into the bank
        self.releases = []                       # per job: the engine's release of its bank
        self.done = None                         # first cycle of DONE

    def _step(self):
        """Walk one instruction."""
        t, ins = self.t, self.program[self.pc]
        decode = self.fetch + fetch_to_decode(t)
        end = decode                             # the state before the next FETCH
        if ins.op is Op.LINEAR:
            job = self.jobs
            accept = decode + CHECK_LATENCY      # JOB: the fill bank is free
            if job >= 2:
                accept = max(accept, self.releases[job - 2] + 1)
            rows = ins.src1.beats // t.weight_ports                              # READ
            beats = self.port.read(accept + 1, ins.src1.addr, rows)
            self.last_beats.append(beats[-1] + UNPACK_LATENCY)
            self.jobs += 1
            end = beats[-1]
        self.pc += 1
        self.fetch = end + 1
        if self.pc == len(self.program):
            self.done = end + 1

    def weights_in(self, job: int) -> int:
        """Cycle of job ``job``'s last weight entries into the bank (its last row's, plus the
        unpacker's register)."""
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


def _linear_token(timing: TopTiming, first_beat: int, beats: int, k_steps: int,
                  n_blocks: int, first_issue: int | None = None, engine=None) -> tuple:
    """A token through the gearbox and the engine: the cycle of the first lookup (the
    engine's lookup stage, two cycles after its issue) of its last K-step, the cycle the
    gearbox took its last INT8 beat, the cycle the engine took its last K-step, and the
    engine's state after it, given the cycle the quantizer hands over its first INT8 beat
    (the gearbox empty before it), the first cycle the engine may issue (``first_issue``: the
    job's bank full and running; None: long before) and the engine's state after the token
    before (``engine``; None: idle).

    The quantizer hands over its INT8 beats one a cycle while the gearbox takes them. The
    gearbox is full (valid to the engine) the cycle after its K-step's last beat, or, if the
    K-step before is still held, the cycle after the engine took that one; the next K-step's
    beats come from the cycle it is full.
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
    full = first_beat + sizes[0]                 # gearbox valid to the engine
    last_beat = full - 1
    look, look_before, write = (never, never, never) if engine is None else engine
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
            last_beat = full + sizes[s + 1] - 1
            full = max(last_beat, take) + 1
    return look, last_beat, take, (look, look_before, write)


def _fifo_level(ins_cycles, outs_cycles) -> int:
    """The highest level a write sees in a FIFO written in the cycles ``ins_cycles`` and read
    in ``outs_cycles`` (both in order): the writes and reads before its cycle."""
    j, level = 0, 0
    for i, c in enumerate(ins_cycles):
        while j < len(outs_cycles) and outs_cycles[j] < c:
            j += 1
        level = max(level, i - j)
    return level


def _write_beats(timing: TopTiming, accept: int, addr: int, available) -> list:
    """The W handshake of every beat of a write command accepted at ``accept`` (the W beats
    of ``golden.ddr.write_schedule``)."""
    out, responses = [], []
    start, in_flight = accept + DMA_FIRST_REQUEST, timing.writes_in_flight
    aw = w = start - 1
    j = 0
    for k, (_, n) in enumerate(bursts(addr, len(available))):
        aw = max(aw + 1, start if k < in_flight else responses[k - in_flight] + 1)
        w = max(w, aw - 1)
        for _ in range(n):
            w = max(w + 1, available[j])
            out.append(w)
            j += 1
        responses.append(w + timing.write_latency)
    return out


def _linear(ins, timing: TopTiming, clock: _Clock, u: int, streamer: _Streamer, job: int,
            first_issue: int | None) -> int:
    """The tokens of a LINEAR whose first UNIT_JOB is cycle ``u``, pipelined: the cycle its
    last WAIT settles.

    The sequencer goes UNIT_JOB, WRITE, READ0 (the token's row), READ1 (the epilogue's ``a``
    row), READ2, WAIT and on to the next token without waiting for this one: a token's READ0
    is accepted once the ReadDMA is free and the quantizer's bank for it is (the token two
    before has handed its last INT8 beat to the gearbox). The quantizer's pass 2 of a token
    starts when the dequantizer takes its amax: once the dequantizer has started on the
    token before's accumulators and the engine has taken that token's last K-step. The
    engine's recurrence runs on across the tokens; the dequantizer's next token follows
    ``Dequantizer.TOKEN_GAP`` cycles after the last accumulator at the earliest (the model
    checks that it is ready before the results come). The write commands, (token, head) in
    order, go out from the first UNIT_JOB on, each in the cycle the WriteDMA is idle again;
    the last WAIT waits for all of them."""
    t = timing
    s0, d, e = ins.src0, ins.dst, ins.epilogue
    parts = t.config.cols_per_cycle // isa.LANES
    token_beats = ins.n_blocks * parts          # a token's accumulator (and output) beats
    outputs, a_in, a_out = [], [], []           # output FIFO (readable), a_fifo in and out
    emitted = []                                # per token: the gearbox took its last beat
    acc_last = None
    scale_free = taken = None                   # the token before: dequantizer, engine free
    engine = None
    first_unit_job, wait = u, u
    for tok in range(ins.tokens):
        if tok:
            u = wait + 1                         # WAIT goes on to the next UNIT_JOB
        ready = u + 2                            # READ0
        if tok >= 2:
            ready = max(ready, emitted[tok - 2] + 1)
        accept = max(ready, clock.reader_free)
        row = clock.read(accept, s0.addr + tok * s0.stride_t, s0.beats)
        state = accept + 1                       # READ1
        if e is not None:
            a_accept = max(state, clock.reader_free)
            a_beats = clock.read(a_accept, e.addr + tok * e.stride_t, d.beats)
            state = a_accept + 1
        else:
            state += 1                           # READ1 skipped
        wait = state + 1                         # READ2 skipped
        start = row[-1] + QUANT_PASS2_START      # the amax beat, taken: pass 2 starts
        if tok:
            start = max(start, scale_free, taken + 1)
        last_step, last_beat, take, engine = _linear_token(
            t, start + QUANT_LATENCY, s0.beats, ins.k_steps, ins.n_blocks,
            first_issue if tok == 0 else None, engine)
        emitted.append(last_beat)
        taken = take
        if tok == ins.tokens - 1:                # the bank is released at the last issue
            streamer.release(job, last_step - ISSUE_TO_LOOKUP + ins.n_blocks - 1)
        # result parts reach the dequantizer one a cycle from the cycle after the first
        # result's handshake (its issue, then the result latency)
        first_part = last_step - ISSUE_TO_LOOKUP + t.engine_result_latency + 1
        # the dequantizer takes accumulators from ``streams`` (its setup done, the token
        # before's last accumulator through): the model needs that before the first result
        streams = start + DEQUANT_SETUP
        if acc_last is not None:
            streams = max(streams, acc_last + DEQUANT_TOKEN_GAP)
        if first_part < streams:
            raise ValueError("the top model needs the dequantizer ready before a token's "
                             f"first result (cycle {first_part}, ready from {streams})")
        # ... and the engine's result credits all back (the token before's last result taken
        # into the parts register) before this token's first last-K-step issue
        if acc_last is not None and last_step - ISSUE_TO_LOOKUP < acc_last - parts + 1:
            raise ValueError("the top model needs the token before's results out of the "
                             "engine before this token's last K-step")
        scale_free = streams                    # the next scale may be taken from then
        acc = [first_part + j for j in range(token_beats)]
        acc_last = acc[-1]
        if e is None:
            outputs += [cycle + DEQUANT_LATENCY + 1 for cycle in acc]
        else:                                    # the a rows, then Pointwise
            late = [j for j, (a, y) in enumerate(zip(a_beats, acc, strict=True))
                    if a + 1 > y + DEQUANT_LATENCY]
            if late:
                raise ValueError("the top model needs the epilogue operand in before the "
                                 f"linear's outputs (beat {late[0]} is late)")
            a_in += a_beats
            a_out += [cycle + DEQUANT_LATENCY for cycle in acc]
            outputs += [cycle + DEQUANT_LATENCY + timing.pointwise_latency + 1 for cycle in acc]
    if _fifo_level(a_in, a_out) >= 3 * token_beats:
        raise ValueError("the top model needs the epilogue operands of at most three tokens "
                         "in the a FIFO")
    idle = None
    writes = []
    for tok in range(ins.tokens):
        for h in range(ins.heads):
            accept = first_unit_job if idle is None else idle
            k = tok * ins.heads + h
            available = outputs[k * d.beats:(k + 1) * d.beats]
            addr = d.addr + tok * d.stride_t + h * d.stride_h
            writes += _write_beats(t, accept, addr, available)
            idle = clock.write(accept, addr, available)
    if _fifo_level([c - 1 for c in outputs], writes) >= 2 * token_beats:
        raise ValueError("the top model needs the outputs of at most two tokens waiting in "
                         "the output FIFO (a WriteDMA slower than the linear)")
    return max(wait, clock.reader_free, idle)


def instruction_cycles(ins, timing: TopTiming, clock: _Clock, start: int,
                       streamer: _Streamer, job: int) -> int:
    """Run one instruction whose FETCH is accepted at ``start`` (a LINEAR: the engine's job
    ``job``); the cycle its last WAIT settles (the next FETCH or FINISH is the cycle after)."""
    t = timing
    decode = clock.read(start, 0, isa.WORDS // 4)[-1] + 2     # the words in, then DECODE
    u = decode + CHECK_LATENCY
    pending = []                                # output FIFO: cycle each beat is readable
    if ins.op is Op.LINEAR:                     # its weights come over the streamer's port
        first_issue = streamer.weights_in(job) + BANK_TO_ISSUE
        if job >= 1:
            first_issue = max(first_issue, streamer.releases[job - 1] + 2)
        return _linear(ins, t, clock, u, streamer, job, first_issue)
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
                pending = [b + timing.pointwise_latency + 1 for b in reads[1]]
            d = ins.dst
            dst = d.addr + tok * d.stride_t + h * d.stride_h
            beats = size * d.beats
            available, pending = pending[:beats], pending[beats:]
            write_idle = clock.write(write_accept, dst, available)
            read_done = clock.reader_free if reads else 0
            settled = max(state, read_done, write_idle)
            u = settled + 1
        tok += size
        if ins.op is Op.ATTENTION:                  # TILE: the next tile's sizes
            u += TILE_LATENCY
    return settled


def program_cycles(program, timing: TopTiming, spans: list | None = None) -> int:
    """Cycles of the top's ``CYCLES`` register for a whole program (FETCH to FINISH); with
    ``spans``, each instruction's cycles (its FETCH to the next one's) are appended to it."""
    clock = _Clock(timing)
    streamer = _Streamer(timing, program)
    fetch, job, settled = 0, 0, 0
    for ins in program:
        settled = instruction_cycles(ins, timing, clock, fetch, streamer, job)
        if spans is not None:
            spans.append(settled + 1 - fetch)
        fetch = settled + 1
        job += ins.op is Op.LINEAR
    finish = max(settled, streamer.finished()) + 1     # END waits for the streamer's walk
    return finish + 1                                  # the FINISH cycle, counted from 0
