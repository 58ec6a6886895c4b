# SPDX-License-Identifier: BSD-3-Clause
"""The weight path: a LINEAR's weight stream (``golden.isa``) from DDR into the engine's banks.

``WeightStreamer`` walks the program ahead of the sequencer on DDR ports of its own (P =
``fill_entries_per_cycle`` of them) and streams each LINEAR's weights into the engine's free
bank; ``WeightUnpacker`` turns the stream's rows (a beat from each port: P beats, P*128 bits)
into groups of P engine entries at line rate.

An entry that fits a beat is the beat's low ``entry_bits`` bits, so a row is a group. Wider
entries (the KV260's 140 bits) straddle beats, packed back to back, and a group of P of them
straddles rows: the unpacker holds the bits of the next group that have arrived (fewer than a
group's worth) and completes the group with the row that brings its last bit. A group is
wider than a row, so a row completes at most one group, and hands it over through an output
register the next cycle: ``rows.ready`` waits only for that register in a row that completes
a group, never otherwise, so an engine bank that takes a group every cycle never holds the
read up. The
stream's last row (``end``) leaves nothing held: its padding is dropped and the next stream
starts on a row.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa
from .axi import ReadDMA, axi4_signature
from .checks import InstructionCheck, WeightCheck
from .tlmm import job_layout

__all__ = ["row_layout", "WeightUnpacker", "WeightStreamer"]


def row_layout(data_width: int) -> data.StructLayout:
    """A weight stream row (one beat of each port): ``data`` and ``end`` (the stream's last
    row)."""
    return data.StructLayout({"data": data_width, "end": 1})


class WeightUnpacker(wiring.Component):
    """Weight stream rows of ``ports`` beats -> groups of ``ports`` entries of ``entry_bits``
    (entry f at group bits ``[f*entry_bits, (f+1)*entry_bits)``), each group out of a register
    the cycle after the row that completes it (``LATENCY``).

    Attributes
    ----------
    rows : In(stream.Signature(row_layout(ports * 128)))
    entries : Out(stream.Signature(ports * entry_bits))
    """

    #: cycles from the row that completes a group to the group's ``entries`` beat
    LATENCY = 1

    def __init__(self, *, entry_bits: int, ports: int = 1, data_width: int = isa.BEAT_BITS):
        if data_width != isa.BEAT_BITS:
            raise ValueError(f"the weight stream is laid out in {isa.BEAT_BITS}-bit beats, got "
                             f"data_width={data_width}")
        if ports not in isa.WEIGHT_PORTS:
            raise ValueError(f"ports must be one of {isa.WEIGHT_PORTS}, got {ports!r}")
        isa.entry_pitch(entry_bits)                  # checks entry_bits
        self.entry_bits, self.ports, self.data_width = entry_bits, ports, data_width
        super().__init__({
            "rows": In(stream.Signature(row_layout(ports * data_width))),
            "entries": Out(stream.Signature(ports * entry_bits)),
        })

    @property
    def packed(self) -> bool:
        """Entries straddle beats (``entry_bits`` wider than a beat)."""
        return self.entry_bits > self.data_width

    def elaborate(self, platform):
        m = Module()
        row = self.rows.payload
        # a completed group waits in an output register (``LATENCY``): the engine's bank
        # then takes it from a register, not through the unpacker's shifter
        width = self.ports * self.entry_bits
        group = Signal(width)
        complete = Signal()
        out_valid = Signal()
        free = ~out_valid | self.entries.ready
        m.d.comb += [self.entries.valid.eq(out_valid),
                     self.rows.ready.eq(~complete | free)]
        with m.If(free):
            m.d.sync += [out_valid.eq(self.rows.valid & complete),
                         self.entries.payload.eq(group)]
        if not self.packed:                          # an entry a beat: a row is a group
            beat, entry = self.data_width, self.entry_bits
            m.d.comb += [complete.eq(1),
                         group.eq(Cat(row.data[f * beat:f * beat + entry]
                                      for f in range(self.ports)))]
            return m
        row_bits = self.ports * self.data_width
        held = Signal(width - 1)                     # the next group's bits so far, LSB first
        have = Signal(range(width))                  # how many
        joined = Signal(width - 1 + row_bits)
        m.d.comb += [joined.eq(held | (row.data << have)),
                     complete.eq(have + row_bits >= width),
                     group.eq(joined[:width])]
        with m.If(self.rows.valid & self.rows.ready):
            with m.If(row.end):
                m.d.sync += [held.eq(0), have.eq(0)]
            with m.Elif(complete):
                m.d.sync += [held.eq(joined[width:]), have.eq(have + row_bits - width)]
            with m.Else():
                m.d.sync += [held.eq(joined), have.eq(have + row_bits)]
        return m


class WeightStreamer(wiring.Component):
    """Streams every LINEAR's weights into the engine's weight banks, running ahead of the
    sequencer over the same program, on DDR ports of its own (P = ``fill_entries_per_cycle``).

    From ``start`` it walks the program (``program_addr``, ``program_len`` instructions): it
    fetches each instruction (its four beats, like the sequencer, on port 0), skips all but
    LINEARs, and for a LINEAR offers the engine its job (``tokens``, ``k_steps``, ``n_blocks``),
    which the engine accepts when a weight bank is free, then reads its weight stream (source
    1: ``golden.isa``'s P parts, one a port, all at once) through a ``WeightUnpacker`` into
    ``entries`` (P entries a beat). The read starts only once the job is accepted, so the bank
    takes P entries every cycle and the ports never wait; a row goes on when the beats of all
    ports are there, which the parts' layout makes the same cycle. The next fetch follows the
    stream's last row. With two banks, the next linear's weights stream while the engine still
    computes the current one, and during the instructions in between.

    A LINEAR whose weights cannot be streamed (``rtl.checks.WeightCheck``: a job beyond the
    engine's limits, a weight length that is not its stream's, a weight region outside the DDR
    window) is not streamed: the walk stops there (``done``), and the sequencer faults when it
    gets there. A LINEAR that fails only the sequencer's other checks (its activations, its
    destination) is streamed; the sequencer's fault then drains the streamer's reads.

    Timing (``sim.accelerator`` models it): the first FETCH is the cycle after ``start``; a
    FETCH's command is accepted at once (the port is idle), its DECODE is ``latency + 7``
    cycles later (``sim.accelerator.fetch_to_decode``, as the sequencer's); DECODE takes a
    cycle, and a LINEAR then waits in CHECK as the sequencer does for its checks,
    ``InstructionCheck.LATENCY - 1`` cycles (``WeightCheck``'s verdict is there sooner);
    its JOB is offered from the next cycle, its READ is the cycle after the job's handshake
    and is accepted at once; the next FETCH is the cycle after the last weight row. ``done``
    is high from the cycle after the last instruction's DECODE (or CHECK, or its stream's
    last row).

    Attributes
    ----------
    bus0 .. bus{P-1} : Out(axi4_signature())
        Read channels only (their write channels idle).
    start : In(1)
        A run starts (one-cycle pulse).
    program_addr, program_len, window_lo, window_hi : In(32), In(16), In(32), In(33)
        The program, and the DDR window ``[window_lo, window_hi)`` reads must lie in.
    job : Out(stream.Signature(job_layout))
    entries : Out(stream.Signature(P * entry_bits))
    drain : In(1)
        Issue nothing more and discard what arrives.
    idle : Out(1)
        No read outstanding and no beat waiting.
    done : Out(1)
        The walk is over (the program's end, or a LINEAR it does not stream).
    error : Out(1)
        Sticky: some R beat had an error response (until the streamer is reset).
    """

    def __init__(self, *, config, max_tokens: int, max_k_steps: int, max_n_blocks: int,
                 max_in_flight: int, data_width: int = isa.BEAT_BITS):
        self.config = config
        self._check = WeightCheck(config=config, max_tokens=max_tokens,
                                  max_k_steps=max_k_steps, max_n_blocks=max_n_blocks)
        self.max_tokens, self.max_k_steps, self.max_n_blocks = (max_tokens, max_k_steps,
                                                                max_n_blocks)
        layout = job_layout(max_tokens=max_tokens, max_k_steps=max_k_steps,
                            max_n_blocks=max_n_blocks)
        self.ports = ports = config.fill_entries_per_cycle
        self._readers = [ReadDMA(data_width=data_width, max_in_flight=max_in_flight)
                         for _ in range(ports)]
        self._unpacker = WeightUnpacker(entry_bits=config.entry_bits, ports=ports,
                                        data_width=data_width)
        self.data_width = data_width
        super().__init__({
            **{f"bus{p}": Out(axi4_signature(data_width=data_width)) for p in range(ports)},
            "start": In(1), "program_addr": In(32), "program_len": In(16),
            "window_lo": In(32), "window_hi": In(33),
            "job": Out(stream.Signature(layout)),
            "entries": Out(stream.Signature(ports * config.entry_bits)),
            "drain": In(1), "idle": Out(1), "done": Out(1), "error": Out(1),
        })

    @property
    def buses(self) -> list:
        """The ports' AXI4 masters, port 0 first."""
        return [getattr(self, f"bus{p}") for p in range(self.ports)]

    def part_stride_beats(self, beats):
        """Beats from one part of a ``beats``-beat stream to the next
        (``golden.isa.weight_part_stride``), in hardware."""
        page = isa.WEIGHT_PART_ALIGN // (self.data_width // 8)
        rows = beats >> (self.ports.bit_length() - 1)
        return ((rows + (page - 1)) >> (page.bit_length() - 1)) << (page.bit_length() - 1)

    def elaborate(self, platform):
        m = Module()
        readers = self._readers
        for p, reader in enumerate(readers):
            m.submodules[f"reader{p}"] = reader
            wiring.connect(m, wiring.flipped(self.buses[p]), reader.bus)
        reader = readers[0]                          # fetches the program
        m.submodules.unpacker = unpacker = self._unpacker
        wiring.connect(m, unpacker.entries, wiring.flipped(self.entries))
        m.d.comb += self.error.eq(Cat(r.error for r in readers).any())

        # the fetched instruction, and the check of a LINEAR's weights
        words = Signal(data.ArrayLayout(32, isa.WORDS))
        m.submodules.check = check = self._check
        m.d.comb += [check.words.eq(words), check.window_lo.eq(self.window_lo),
                     check.window_hi.eq(self.window_hi)]
        check_wait = Signal(range(InstructionCheck.LATENCY))
        checking = Signal()             # the checks run from the fetch to the verdicts
        m.d.comb += check.enable.eq(checking)
        op = words[0][:8]
        tokens, k_steps, n_blocks = words[1][:16], words[2][:16], words[2][16:]
        w_addr, w_beats = words[8], words[11]
        pc = Signal(16)
        beat_index = Signal(range(isa.WORDS // 4 + 1))
        remaining = Signal(20)                       # weight rows still to come
        beat = reader.data.payload
        rows = w_beats >> (self.ports.bit_length() - 1)
        # each part's address, registered (the words are held through CHECK)
        stride = Signal(32)                          # bytes from a part to the next
        part_addr = [Signal(32, name=f"part_addr{p}") for p in range(self.ports)]
        m.d.sync += [stride.eq(self.part_stride_beats(w_beats) * (self.data_width // 8)),
                     *(a.eq(w_addr + p * stride) for p, a in enumerate(part_addr))]
        all_ready = Cat(r.cmd.ready for r in readers).all()
        row_valid = Cat(r.data.valid for r in readers).all()

        m.d.comb += [
            self.job.payload.tokens.eq(tokens), self.job.payload.k_steps.eq(k_steps),
            self.job.payload.n_blocks.eq(n_blocks),
            unpacker.rows.payload.data.eq(Cat(r.data.payload for r in readers)),
            unpacker.rows.payload.end.eq(remaining == 1),
            self.idle.eq(Cat(r.idle & ~r.data.valid for r in readers).all()),
        ]
        with m.If(self.drain):
            m.d.comb += [r.data.ready.eq(1) for r in readers]

        final_pc = Signal()                          # (registered: pc changes a fetch before)
        m.d.sync += final_pc.eq(pc + 1 == self.program_len)

        def next_instruction():
            m.d.sync += pc.eq(pc + 1)
            with m.If(final_pc):
                m.next = "DONE"
            with m.Else():
                m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pc.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [reader.cmd.payload.addr.eq(self.program_addr + (pc << 6)),
                             reader.cmd.payload.beats.eq(isa.WORDS // 4),
                             reader.cmd.valid.eq(~self.drain)]
                m.d.sync += beat_index.eq(0)
                with m.If(reader.cmd.valid & reader.cmd.ready):
                    m.d.sync += checking.eq(1)
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.comb += reader.data.ready.eq(1)
                with m.If(reader.data.valid & ~self.drain):
                    m.d.sync += beat_index.eq(beat_index + 1)
                    for i in range(isa.WORDS // 4):
                        with m.If(beat_index == i):
                            m.d.sync += words.as_value()[128 * i:128 * (i + 1)].eq(beat)
                with m.If(beat_index == isa.WORDS // 4):
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += check_wait.eq(InstructionCheck.LATENCY - 2)
                with m.If(op != int(isa.Op.LINEAR)):
                    next_instruction()
                with m.Else():
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += check_wait.eq(check_wait - 1)
                with m.If(check_wait == 0):
                    m.d.sync += checking.eq(0)
                    with m.If(check.ok):
                        m.next = "JOB"
                    with m.Else():
                        m.next = "DONE"
            with m.State("JOB"):
                m.d.comb += self.job.valid.eq(~self.drain)
                with m.If(self.job.valid & self.job.ready):
                    m.next = "READ"
            with m.State("READ"):                # every port's part at once
                for p, r in enumerate(readers):
                    m.d.comb += [r.cmd.payload.addr.eq(part_addr[p]),
                                 r.cmd.payload.beats.eq(rows),
                                 r.cmd.valid.eq(~self.drain & all_ready)]
                with m.If(~self.drain & all_ready):
                    m.d.sync += remaining.eq(rows)
                    m.next = "STREAM"
            with m.State("STREAM"):
                with m.If(~self.drain):
                    m.d.comb += [unpacker.rows.valid.eq(row_valid)]
                    m.d.comb += [r.data.ready.eq(row_valid & unpacker.rows.ready)
                                 for r in readers]
                with m.If(row_valid & unpacker.rows.ready & ~self.drain):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        next_instruction()
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m
