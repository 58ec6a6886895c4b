# SPDX-License-Identifier: BSD-3-Clause
"""The top's read router: every beat the ReadDMA returns goes to the unit input its command
was tagged with (``Route``).

The sequencer tags each read command when the ReadDMA accepts it (``cmd_taken`` with
``cmd_route``, ``cmd_beats`` and ``cmd_final``); the router then hands the command's beats to
that sink, one per handshake, and marks the final beat of a command that ends a token
(``cmd_final``) with ``last`` on the sinks that take a ``last`` (RMSNorm's and the quantizer's
``x``). Every sink sees every beat; the route selects only who takes it (valid and ready), so
no data path runs through the route's decode. Two sinks pair beats:

- ``rope_table``: a table beat is a cos beat then a sin beat (Q16, 18 bits used of each lane);
  the cos beat waits in a register and both go to RoPE with the sin beat;
- ``pointwise_b`` is offered as it comes; the top pairs it with the ``pointwise_a`` row it
  buffered before.

``drain`` takes and discards every beat (a fault's outstanding reads). A beat moves in the
cycle it arrives if its sink is ready: the router adds no cycle.
"""

import enum

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .elementwise import rope_table_layout
from .quant import token_layout

__all__ = ["Route", "ReadRouter"]


class Route(enum.IntEnum):
    """Where the router sends the beats of a read command."""
    INSTRUCTION = 0
    NORM_X = 1
    NORM_GAMMA = 2
    QUANT_X = 3
    ROPE_X = 4
    ROPE_TABLE = 5
    ATT_Q = 6
    ATT_K = 7
    ATT_V = 8
    POINTWISE_A = 9
    POINTWISE_B = 10


#: Q16 bits of a RoPE table lane (cos or sin) in its 32-bit DDR word
TABLE_BITS = 18


class ReadRouter(wiring.Component):
    """The ReadDMA's beats -> the unit inputs (see the module docstring).

    data : In(stream.Signature(unsigned(32 * lanes)))        the ReadDMA's beats
    cmd_taken, cmd_route, cmd_beats, cmd_final : In          the command accepted this cycle
    drain : In(1)
    busy : Out(1)            beats of the last command not yet taken
    instruction, norm_gamma, rope_x, pointwise_a, pointwise_b : Out(stream of raw beats)
    norm_x, quant_x : Out(stream of token_layout(signed(32), lanes, "x"))
    rope_table : Out(stream of rope_table_layout(lanes))
    att_q, att_k, att_v : Out(stream of ArrayLayout(signed(32), lanes))
    """

    #: sinks that take the raw beat, by route
    RAW = {Route.INSTRUCTION: "instruction", Route.NORM_GAMMA: "norm_gamma",
           Route.ROPE_X: "rope_x", Route.POINTWISE_A: "pointwise_a",
           Route.POINTWISE_B: "pointwise_b"}
    #: sinks that take a token's beats with ``last``
    TOKEN = {Route.NORM_X: "norm_x", Route.QUANT_X: "quant_x"}
    #: the attention unit's inputs
    ATTENTION = {Route.ATT_Q: "att_q", Route.ATT_K: "att_k", Route.ATT_V: "att_v"}

    def __init__(self, *, lanes: int, max_beats_bits: int = 20):
        self.lanes = lanes
        beat = unsigned(32 * lanes)
        members = {
            "data": In(stream.Signature(beat)),
            "cmd_taken": In(1),
            "cmd_route": In(range(len(Route))),
            "cmd_beats": In(max_beats_bits),
            "cmd_final": In(1),
            "drain": In(1),
            "busy": Out(1),
            "rope_table": Out(stream.Signature(rope_table_layout(lanes))),
        }
        members.update({name: Out(stream.Signature(beat)) for name in self.RAW.values()})
        members.update({name: Out(stream.Signature(token_layout(signed(32), lanes, "x")))
                        for name in self.TOKEN.values()})
        members.update({name: Out(stream.Signature(data.ArrayLayout(signed(32), lanes)))
                        for name in self.ATTENTION.values()})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        route = Signal(range(len(Route)))
        remaining = Signal(len(self.cmd_beats))
        final_cmd = Signal()                         # the command ends the unit's token
        beat = self.data.payload
        last = (remaining == 1) & final_cmd
        m.d.comb += self.busy.eq(remaining != 0)
        with m.If(self.cmd_taken):
            m.d.sync += [route.eq(self.cmd_route), remaining.eq(self.cmd_beats),
                         final_cmd.eq(self.cmd_final)]
        with m.Elif(self.data.valid & self.data.ready):
            m.d.sync += remaining.eq(remaining - 1)

        sink_ready = Signal()
        valid = self.data.valid & ~self.drain
        m.d.comb += self.data.ready.eq(self.drain | sink_ready)
        for name in (*self.RAW.values(), *self.ATTENTION.values()):
            m.d.comb += getattr(self, name).payload.eq(beat)
        for name in self.TOKEN.values():
            m.d.comb += [getattr(self, name).payload.x.eq(beat),
                         getattr(self, name).payload.last.eq(last)]

        cos_beat = Signal(len(beat))
        cos_held = Signal()
        table = self.rope_table.payload
        for i in range(self.lanes):
            lane = slice(32 * i, 32 * i + TABLE_BITS)
            m.d.comb += [table.cos[i].eq(cos_beat[lane]), table.sin[i].eq(beat[lane])]

        with m.Switch(route):
            for r, name in {**self.RAW, **self.TOKEN, **self.ATTENTION}.items():
                with m.Case(r):
                    sink = getattr(self, name)
                    m.d.comb += [sink.valid.eq(valid), sink_ready.eq(sink.ready)]
            with m.Case(Route.ROPE_TABLE):
                m.d.comb += [self.rope_table.valid.eq(valid & cos_held),
                             sink_ready.eq(~cos_held | self.rope_table.ready)]
                with m.If(valid & sink_ready):
                    m.d.sync += cos_held.eq(~cos_held)
                    with m.If(~cos_held):
                        m.d.sync += cos_beat.eq(beat)
        return m
