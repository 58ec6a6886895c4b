# SPDX-License-Identifier: BSD-3-Clause
"""The weight unpacker: a LINEAR's weight stream (``golden.isa``) from DDR beats into engine
entries, at line rate.

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

__all__ = ["beat_layout", "WeightUnpacker"]


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
