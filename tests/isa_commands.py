# SPDX-License-Identifier: BSD-3-Clause
"""The DMA commands and attention jobs the top's sequencer issues for a ``golden.isa``
instruction, from the instruction alone: the tests' model of ``rtl.sequencer.Sequencer``
(the weight stream, read by the weight streamer, is not among them)."""

from ternedge.golden.isa import Op
from ternedge.rtl.router import Route


def commands(ins):
    """``(reads, writes, jobs)`` of ``ins``, each in issue order: reads ``(addr, beats,
    route, final)``, writes ``(addr, beats)``, attention jobs ``(keys, queries)``."""
    reads, writes, jobs = [], [], []
    s0, s1, d = ins.src0, ins.src1, ins.dst
    if ins.op is Op.NORM:
        for t in range(ins.tokens):
            reads += [(s0.addr + t * s0.stride_t + g * s0.stride_h, s0.beats, Route.NORM_X,
                       g == ins.heads - 1) for g in range(ins.heads)]
            reads.append((s1.addr, s1.beats, Route.NORM_GAMMA, True))
            writes.append((d.addr + t * d.stride_t, d.beats))
    elif ins.op is Op.LINEAR:
        for t in range(ins.tokens):
            reads.append((s0.addr + t * s0.stride_t, s0.beats, Route.QUANT_X, True))
            if ins.epilogue is not None:
                e = ins.epilogue
                reads.append((e.addr + t * e.stride_t, d.beats, Route.POINTWISE_A, True))
            writes += [(d.addr + t * d.stride_t + h * d.stride_h, d.beats)
                       for h in range(ins.heads)]
    elif ins.op is Op.ROPE:
        for t in range(ins.tokens):
            for h in range(ins.heads):
                reads += [(s0.addr + t * s0.stride_t + h * s0.stride_h, s0.beats,
                           Route.ROPE_X, True),
                          (s1.addr + t * s1.stride_t, s1.beats, Route.ROPE_TABLE, True)]
                writes.append((d.addr + t * d.stride_t + h * d.stride_h, d.beats))
    elif ins.op is Op.ATTENTION:
        for t in range(0, ins.tokens, ins.tile):
            step = min(ins.tile, ins.tokens - t)
            keys = ins.keys0 + t + step - 1
            for h in range(ins.heads):
                kv = s1.addr + (h >> ins.group_shift) * s1.stride_h
                reads += [(s0.addr + t * s0.stride_t + h * s0.stride_h, step * s0.beats,
                           Route.ATT_Q, True),
                          (kv, keys * s1.beats, Route.ATT_K, True),
                          (kv + ins.v_offset, keys * s1.beats, Route.ATT_V, True)]
                writes.append((d.addr + t * d.stride_t + h * d.stride_h, step * d.beats))
                jobs.append((keys, step))
    else:
        assert ins.heads == 1
        for t in range(ins.tokens):
            reads += [(s0.addr + t * s0.stride_t, s0.beats, Route.POINTWISE_A, True),
                      (s1.addr + t * s1.stride_t, s1.beats, Route.POINTWISE_B, True)]
            writes.append((d.addr + t * d.stride_t, d.beats))
    return reads, writes, jobs
