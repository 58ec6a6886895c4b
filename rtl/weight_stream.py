# SPDX-License-Identifier: BSD-3-Clause
"""The weight path: a LINEAR's weight stream (``golden.isa``) from DDR into the engine's banks.

``WeightStreamer`` walks the program ahead of the sequencer on a DDR port of its own and
streams each LINEAR's weights into the engine's free bank; ``WeightUnpacker`` turns the stream's
beats into engine entries at line rate.

An entry that fits a beat is the beat's low ``entry_bits`` bits. A wider one (the KV260's
140 bits) straddles beats, packed back to back: the unpacker holds the bits of the next entry
that have arrived (fewer than an entry's worth) and completes the entry with the beat that
brings its last bit. A beat therefore completes at most one entry, and hands it over in its
own cycle: ``beats.ready`` waits only for ``entries.ready`` in a beat that completes an entry,
never otherwise, so an engine bank that takes an entry every cycle never holds the read up.
The stream's last beat (``end``) leaves nothing held: its padding is dropped and the next
stream starts on a beat.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa
from .axi import ReadDMA, axi4_signature, in_window
from .tlmm import job_layout

__all__ = ["beat_layout", "WeightUnpacker", "WeightStreamer"]


def beat_layout(data_width: int) -> data.StructLayout:
    """A weight stream beat: ``data`` and ``end`` (the stream's last beat)."""
    return data.StructLayout({"data": data_width, "end": 1})


class WeightUnpacker(wiring.Component):
    """Weight stream beats -> entries of ``entry_bits``.

    Attributes
    ----------
    beats : In(stream.Signature(beat_layout(data_width)))
    entries : Out(stream.Signature(entry_bits))
    """

    def __init__(self, *, entry_bits: int, data_width: int = isa.BEAT_BITS):
        if data_width != isa.BEAT_BITS:
            raise ValueError(f"the weight stream is laid out in {isa.BEAT_BITS}-bit beats, got "
                             f"data_width={data_width}")
        isa.entry_pitch(entry_bits)                  # checks entry_bits
        self.entry_bits, self.data_width = entry_bits, data_width
        super().__init__({
            "beats": In(stream.Signature(beat_layout(data_width))),
            "entries": Out(stream.Signature(entry_bits)),
        })

    @property
    def packed(self) -> bool:
        """Entries straddle beats (``entry_bits`` wider than a beat)."""
        return self.entry_bits > self.data_width

    def elaborate(self, platform):
        m = Module()
        width, beat = self.entry_bits, self.beats.payload
        if not self.packed:
            m.d.comb += [self.entries.valid.eq(self.beats.valid),
                         self.entries.payload.eq(beat.data[:width]),
                         self.beats.ready.eq(self.entries.ready)]
            return m
        held = Signal(width - 1)                     # the next entry's bits so far, LSB first
        have = Signal(range(width))                  # how many
        joined = Signal(width - 1 + self.data_width)
        complete = Signal()
        m.d.comb += [joined.eq(held | (beat.data << have)),
                     complete.eq(have + self.data_width >= width),
                     self.entries.valid.eq(self.beats.valid & complete),
                     self.entries.payload.eq(joined[:width]),
                     self.beats.ready.eq(~complete | self.entries.ready)]
        with m.If(self.beats.valid & self.beats.ready):
            with m.If(beat.end):
                m.d.sync += [held.eq(0), have.eq(0)]
            with m.Elif(complete):
                m.d.sync += [held.eq(joined[width:]), have.eq(have + self.data_width - width)]
            with m.Else():
                m.d.sync += [held.eq(joined), have.eq(have + self.data_width)]
        return m


class WeightStreamer(wiring.Component):
    """Streams every LINEAR's weights into the engine's weight banks, running ahead of the
    sequencer over the same program, on a DDR port of its own.

    From ``start`` it walks the program (``program_addr``, ``program_len`` instructions): it
    fetches each instruction (its four beats, like the sequencer), skips all but LINEARs, and
    for a LINEAR offers the engine its job (``tokens``, ``k_steps``, ``n_blocks``), which the
    engine accepts when a weight bank is free, then reads its weight stream (source 1) through
    a ``WeightUnpacker`` into ``entries``. The read starts only once the job is accepted, so the
    bank takes an entry every cycle and the port never waits; the next fetch follows the
    stream's last beat. With two banks, the next linear's weights stream while the engine still
    computes the current one, and during the instructions in between.

    A LINEAR whose job or weight read is out of range (zero or too many K-steps, N-blocks or
    tokens, a weight length that is not its stream's, a read outside the DDR window) is not
    streamed: the walk stops there (``done``). The sequencer's own checks of that instruction
    include these, so it faults when it gets there.

    Timing (``sim.accelerator`` models it): the first FETCH is the cycle after ``start``; a
    FETCH's command is accepted at once (the port is idle), its DECODE is ``latency + 6``
    cycles later (as the sequencer's); DECODE takes a cycle; a LINEAR's JOB is offered from the
    next cycle, its READ is the cycle after the job's handshake and is accepted at once; the
    next FETCH is the cycle after the last weight beat. ``done`` is high from the cycle after
    the last instruction's DECODE (or its stream's last beat).

    Attributes
    ----------
    bus : Out(axi4_signature())
        Read channels only.
    start : In(1)
        A run starts (one-cycle pulse).
    program_addr, program_len, window_lo, window_hi : In(32), In(16), In(32), In(33)
        The program, and the DDR window ``[window_lo, window_hi)`` reads must lie in.
    job : Out(stream.Signature(job_layout))
    entries : Out(stream.Signature(entry_bits))
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
        self.max_tokens, self.max_k_steps, self.max_n_blocks = (max_tokens, max_k_steps,
                                                                max_n_blocks)
        layout = job_layout(max_tokens=max_tokens, max_k_steps=max_k_steps,
                            max_n_blocks=max_n_blocks)
        self._reader = ReadDMA(data_width=data_width, max_in_flight=max_in_flight)
        self._unpacker = WeightUnpacker(entry_bits=config.entry_bits, data_width=data_width)
        self.data_width = data_width
        super().__init__({
            "bus": Out(axi4_signature(data_width=data_width)),
            "start": In(1), "program_addr": In(32), "program_len": In(16),
            "window_lo": In(32), "window_hi": In(33),
            "job": Out(stream.Signature(layout)),
            "entries": Out(stream.Signature(config.entry_bits)),
            "drain": In(1), "idle": Out(1), "done": Out(1), "error": Out(1),
        })

    def stream_beats(self, blocks):
        """Beats of the weight stream of ``blocks`` K-step x N-block pairs
        (``golden.isa.weight_stream_beats``), in hardware."""
        cfg, width = self.config, self.data_width
        bits = blocks * (cfg.cols_per_cycle * isa.entry_pitch(cfg.entry_bits))
        return (bits + (width - 1)) >> (width.bit_length() - 1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self._reader
        m.submodules.unpacker = unpacker = self._unpacker
        wiring.connect(m, wiring.flipped(self.bus), reader.bus)
        wiring.connect(m, unpacker.entries, wiring.flipped(self.entries))
        m.d.comb += self.error.eq(reader.error)

        # the fields of the fetched instruction it needs (``golden.isa``'s word layout)
        op = Signal(8)
        tokens, k_steps, n_blocks = Signal(16), Signal(16), Signal(16)
        w_addr, w_beats = Signal(32), Signal(32)
        pc = Signal(16)
        beat_index = Signal(range(isa.WORDS // 4 + 1))
        remaining = Signal(20)                       # weight beats still to come
        beat = reader.data.payload
        job_ok = ((tokens != 0) & (tokens <= self.max_tokens)
                  & (k_steps != 0) & (k_steps <= self.max_k_steps)
                  & (n_blocks != 0) & (n_blocks <= self.max_n_blocks)
                  & (w_beats == self.stream_beats(k_steps * n_blocks))
                  & in_window(m, w_addr, w_beats, self.window_lo, self.window_hi))

        m.d.comb += [
            self.job.payload.tokens.eq(tokens), self.job.payload.k_steps.eq(k_steps),
            self.job.payload.n_blocks.eq(n_blocks),
            unpacker.beats.payload.data.eq(beat), unpacker.beats.payload.end.eq(remaining == 1),
            self.idle.eq(reader.idle & ~reader.data.valid),
        ]
        with m.If(self.drain):
            m.d.comb += reader.data.ready.eq(1)

        def next_instruction():
            m.d.sync += pc.eq(pc + 1)
            with m.If(pc + 1 == self.program_len):
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
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.comb += reader.data.ready.eq(1)
                with m.If(reader.data.valid & ~self.drain):
                    m.d.sync += beat_index.eq(beat_index + 1)
                    with m.Switch(beat_index):
                        with m.Case(0):              # words 0-3
                            m.d.sync += [op.eq(beat[0:8]), tokens.eq(beat[32:48]),
                                         k_steps.eq(beat[64:80]), n_blocks.eq(beat[80:96])]
                        with m.Case(2):              # words 8-11: source 1
                            m.d.sync += [w_addr.eq(beat[0:32]), w_beats.eq(beat[96:128])]
                with m.If(beat_index == isa.WORDS // 4):
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(op != int(isa.Op.LINEAR)):
                    next_instruction()
                with m.Elif(job_ok):
                    m.next = "JOB"
                with m.Else():
                    m.next = "DONE"
            with m.State("JOB"):
                m.d.comb += self.job.valid.eq(~self.drain)
                with m.If(self.job.valid & self.job.ready):
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [reader.cmd.payload.addr.eq(w_addr),
                             reader.cmd.payload.beats.eq(w_beats),
                             reader.cmd.valid.eq(~self.drain)]
                with m.If(reader.cmd.valid & reader.cmd.ready):
                    m.d.sync += remaining.eq(w_beats)
                    m.next = "STREAM"
            with m.State("STREAM"):
                with m.If(~self.drain):
                    m.d.comb += [unpacker.beats.valid.eq(reader.data.valid),
                                 reader.data.ready.eq(unpacker.beats.ready)]
                with m.If(reader.data.valid & reader.data.ready & ~self.drain):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        next_instruction()
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m
