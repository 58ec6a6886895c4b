# SPDX-License-Identifier: BSD-3-Clause
"""The two adapters of the top's linear chain, quantizer -> ``ActivationGear`` -> engine ->
``ResultSplitter`` -> dequantizer (``rtl.accelerator``).

``ActivationGear``
    Collects the quantizer's beats (``lanes`` INT8 activations and ``last``) into the engine's
    K-steps (``k_per_step`` = G*T activations, a whole number of beats). Two K-step
    registers: ``fill`` takes beats from the quantizer while ``out`` waits for the engine
    (LUTRAM tables hold a K-step for their P writes), so the quantizer never waits for the
    table writes of the K-step before. A completed K-step goes straight to ``out`` when that
    is free (or being taken), else waits in ``fill`` (the quantizer held) and moves in the
    cycle ``out`` is taken. A token's final beat completes its K-step early; the lanes past
    the token's K then hold what the K-step before left there, which the engine multiplies by
    zero weights (``golden.packing`` pads K with zeros).

    Timing: a K-step is offered to the engine the cycle after its final beat's handshake
    (``LATENCY``); ``empty`` is high when neither register holds a K-step.
``ResultSplitter``
    Takes each engine result (``cols_per_cycle`` accumulators) into a register and offers it
    to the dequantizer as ``cols_per_cycle / lanes`` beats of ``lanes`` accumulators, one a
    cycle, with ``last`` on the final beat of a token's final column block (``n_blocks``,
    held for the whole job). The next result is taken in the cycle its last beat goes, so
    back-to-back results leave one beat a cycle, without a gap.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .quant import token_layout

__all__ = ["ActivationGear", "ResultSplitter"]


class ActivationGear(wiring.Component):
    """Quantizer beats -> engine K-steps (see the module docstring).

    i : In(stream.Signature(token_layout(signed(8), lanes, "q")))
    o : Out(stream.Signature(ArrayLayout(signed(8), k_per_step)))
    empty : Out(1)
    """

    #: cycles from a K-step's final beat's handshake to its offer to the engine
    LATENCY = 1

    def __init__(self, *, lanes: int, k_per_step: int):
        if lanes < 1 or k_per_step < lanes or k_per_step % lanes:
            raise ValueError(f"k_per_step={k_per_step} must be a positive multiple of "
                             f"lanes={lanes}")
        self.lanes, self.k_per_step = lanes, k_per_step
        super().__init__({
            "i": In(stream.Signature(token_layout(signed(8), lanes, "q"))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), k_per_step))),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, beats = self.lanes, self.k_per_step // self.lanes
        fill = Signal(data.ArrayLayout(signed(8), self.k_per_step))
        fill_next = Signal.like(fill)                # ``fill`` with this cycle's beat in
        filled = Signal(range(beats + 1))            # beats in ``fill``
        fill_held = Signal()                         # ``fill`` is a complete K-step
        out_valid = Signal()
        beat_in = self.i.valid & self.i.ready
        completes = beat_in & (self.i.payload.last | (filled == beats - 1))
        out_free = ~out_valid | self.o.ready
        m.d.comb += [self.i.ready.eq(~fill_held), self.o.valid.eq(out_valid),
                     self.empty.eq(~out_valid & ~fill_held), fill_next.eq(fill)]
        with m.If(beat_in):
            for i in range(beats):
                with m.If(filled == i):
                    for j in range(lanes):
                        m.d.comb += fill_next[i * lanes + j].eq(self.i.payload.q[j])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(fill_held & out_free):
            m.d.sync += [self.o.payload.eq(fill), out_valid.eq(1), fill_held.eq(0)]
        with m.Elif(completes & out_free):
            m.d.sync += [self.o.payload.eq(fill_next), out_valid.eq(1), filled.eq(0)]
        with m.Elif(completes):
            m.d.sync += [fill.eq(fill_next), fill_held.eq(1), filled.eq(0)]
        with m.Elif(beat_in):
            m.d.sync += [fill.eq(fill_next), filled.eq(filled + 1)]
        return m


class ResultSplitter(wiring.Component):
    """Engine results -> dequantizer beats (see the module docstring).

    results : In(stream.Signature(ArrayLayout(signed(acc_width), cols_per_cycle)))
    acc : Out(stream.Signature(token_layout(signed(acc_width), lanes, "acc")))
    n_blocks : In(16)     the job's column blocks per token (held while the job runs)
    """

    def __init__(self, *, lanes: int, cols_per_cycle: int, acc_width: int):
        if lanes < 1 or cols_per_cycle < lanes or cols_per_cycle % lanes:
            raise ValueError(f"cols_per_cycle={cols_per_cycle} must be a positive multiple "
                             f"of lanes={lanes}")
        self.lanes, self.parts, self.acc_width = lanes, cols_per_cycle // lanes, acc_width
        super().__init__({
            "results": In(stream.Signature(data.ArrayLayout(signed(acc_width),
                                                            cols_per_cycle))),
            "acc": Out(stream.Signature(token_layout(signed(acc_width), lanes, "acc"))),
            "n_blocks": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        parts, part_bits = self.parts, self.lanes * self.acc_width
        result = Signal.like(self.results.payload)
        held = Signal()
        part = Signal(range(parts))
        n_block = Signal(16)
        last_block = Signal(16)                      # n_blocks - 1 (registered: words held)
        last_part = part == parts - 1
        m.d.sync += last_block.eq(self.n_blocks - 1)
        emit = self.acc.valid & self.acc.ready
        take = self.results.valid & self.results.ready
        m.d.comb += [self.acc.valid.eq(held),
                     self.acc.payload.acc.eq(Array(result.as_value()[i * part_bits:
                                                                     (i + 1) * part_bits]
                                                   for i in range(parts))[part]),
                     self.acc.payload.last.eq(last_part & (n_block == last_block)),
                     self.results.ready.eq(~held | (last_part & self.acc.ready))]
        with m.If(emit):
            m.d.sync += part.eq(Mux(last_part, 0, part + 1))
            with m.If(last_part):
                m.d.sync += [held.eq(0),
                             n_block.eq(Mux(n_block == last_block, 0, n_block + 1))]
        with m.If(take):
            m.d.sync += [result.eq(self.results.payload), held.eq(1), part.eq(0)]
        return m
