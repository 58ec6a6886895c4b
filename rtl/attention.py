# SPDX-License-Identifier: BSD-3-Clause
"""Decode and prefill attention for one head, bit-exact to ``golden.attention.attention``.

``DecodeUnit`` streams a head's KV cache twice for one query (TeLLMe
``decode_attention.hpp``); ``PrefillUnit`` does the same for a tile of up to ``queries``
consecutive queries at once (one K/V stream shared by the tile, ``queries`` dot products, exp
units and accumulators in parallel, causal mask by key index):

1. **Scores.** The query is held on chip; each key row streams in ``head_dim / lanes`` beats,
   ``lanes`` products per beat are summed into the dot product (operands first clipped to
   +-(2**23 - 1), ``OPERAND_LIMIT``), and on the row's last beat the score
   ``sat32(round(round(dot / 2^16) * c))`` (``c`` the Scale of 1/sqrt(head_dim)) is written
   to the score buffer and the exact running maximum updated.
2. **Weights.** Each value row streams in; its weight ``p = exp_neg(s - max)`` (Q24,
   ``golden.attention.WEIGHT_FRAC``) comes from the score buffer and the shared ``exp_neg``
   ROM datapath, ``sum p`` and ``sum p * v`` are accumulated exactly (integers, so key order
   does not matter).

Then one ``RatioScale`` per query (the Scale of ``2^24 / sum p``) and the output pass,
``sat32(round(round(acc / 2^24) * r))`` per element.

Because every sum is exact, the result does not depend on key order, and a prefill tile gives
bit-identical rows to decoding its queries one by one (``golden.attention``). Buffers use
asynchronous-read memories (LUTRAM-style); a BRAM/URAM mapping adds one read-register stage.

Stall-free timing (``cycles``) counts the cycles from the one accepting the job to the one
accepting the last output beat, both included.
"""

import math

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed
from ..golden.attention import OPERAND_LIMIT, WEIGHT_FRAC
from . import arith

__all__ = ["DecodeUnit", "PrefillUnit"]


def _clip(m, x, name):
    out = Signal(signed(24), name=name)
    with m.If(x > OPERAND_LIMIT):
        m.d.comb += out.eq(OPERAND_LIMIT)
    with m.Elif(x < -OPERAND_LIMIT):
        m.d.comb += out.eq(-OPERAND_LIMIT)
    with m.Else():
        m.d.comb += out.eq(x)
    return out


class _TwoPassAttention(wiring.Component):
    def __init__(self, *, queries, lanes, head_dim, max_keys, job_layout):
        self.queries = arith.check_positive("queries", queries)
        self.lanes = arith.check_positive("lanes", lanes)
        arith.check_positive("head_dim", head_dim)
        if head_dim % lanes:
            raise ValueError(f"head_dim={head_dim} must be a multiple of lanes={lanes}")
        self.head_dim = head_dim
        self.max_keys = arith.check_positive("max_keys", max_keys)
        if max_keys < queries:
            raise ValueError(f"max_keys={max_keys} must be at least queries={queries}")
        self.beats = head_dim // lanes
        self.score_m, self.score_e = fixed.float_to_scale(1.0 / math.sqrt(head_dim))
        # sum of p <= max_keys * 2**WEIGHT_FRAC
        self.sum_width = WEIGHT_FRAC + 1 + max_keys.bit_length()
        super().__init__({
            "job": In(stream.Signature(job_layout)),
            "q": In(stream.Signature(data.ArrayLayout(signed(32), lanes))),
            "k": In(stream.Signature(data.ArrayLayout(signed(32), lanes))),
            "v": In(stream.Signature(data.ArrayLayout(signed(32), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(32), lanes))),
        })

    def _cycles(self, queries, keys):
        arith.check_positive("keys", keys)
        if keys > self.max_keys:
            raise ValueError(f"keys={keys} exceeds this unit's max_keys={self.max_keys}")
        arith.check_positive("queries", queries)
        if queries > min(self.queries, keys):
            raise ValueError(f"queries={queries} must be at most the tile size "
                             f"{self.queries} and at most keys={keys}")
        hb = self.beats
        return (1 + queries * hb + 2 * keys * hb + 1 + arith.RatioScale.QUOTIENT_WIDTH + 1
                + queries * hb + 1)

    def _job_queries(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        tile, lanes, hb = self.queries, self.lanes, self.beats
        pv_width = WEIGHT_FRAC + 1 + 24 + 1                  # p (unsigned) times clipped v
        acc_width = pv_width - 1 + self.max_keys.bit_length()

        keys = Signal(range(self.max_keys + 1))
        active = Signal(range(tile + 1))           # queries in this job
        key = Signal(range(self.max_keys + 1))
        beat = Signal(range(hb))
        row = Signal(range(tile))                  # query being loaded or emitted
        last_beat = beat == hb - 1
        last_key = key == keys - 1
        last_row = row == active - 1
        start = Signal()
        query_clipped = [_clip(m, self.q.payload[i], f"qc{i}") for i in range(lanes)]
        values_clipped = [_clip(m, self.v.payload[i], f"vc{i}") for i in range(lanes)]
        keys_clipped = [_clip(m, self.k.payload[i], f"kc{i}") for i in range(lanes)]

        q_writes, s_writes, a_writes, recips, outputs = [], [], [], [], []
        for t in range(tile):
            query = memory.Memory(shape=data.ArrayLayout(signed(24), lanes), depth=hb, init=[])
            score_buf = memory.Memory(shape=signed(32), depth=self.max_keys, init=[])
            acc_buf = memory.Memory(shape=data.ArrayLayout(signed(acc_width), lanes), depth=hb,
                                    init=[])
            recip = arith.RatioScale(num_width=WEIGHT_FRAC + 1, den_width=self.sum_width)
            m.submodules[f"query{t}"] = query
            m.submodules[f"scores{t}"] = score_buf
            m.submodules[f"accs{t}"] = acc_buf
            m.submodules[f"recip{t}"] = recip
            q_write, q_read = query.write_port(), query.read_port(domain="comb")
            s_write, s_read = score_buf.write_port(), score_buf.read_port(domain="comb")
            a_write, a_read = acc_buf.write_port(), acc_buf.read_port(domain="comb")
            m.d.comb += [q_read.addr.eq(beat), q_write.addr.eq(beat), a_read.addr.eq(beat),
                         a_write.addr.eq(beat), s_read.addr.eq(key), s_write.addr.eq(key)]
            for i in range(lanes):
                m.d.comb += q_write.data[i].eq(query_clipped[i])
            # causal mask: this tile's queries sit at positions keys - active .. keys - 1
            visible = arith.wire(m, 1, key + active <= keys + t, name=f"visible{t}")

            # pass 1: partial dot product per beat, the score on the row's last beat
            dot = Signal(signed(48 + lanes.bit_length() + hb.bit_length()), name=f"dot{t}")
            products = [arith.wire(m, signed(48), q_read.data[i] * keys_clipped[i],
                                   name=f"qk{t}_{i}") for i in range(lanes)]
            partial = arith.wire(m, signed(len(dot)), sum(products), name=f"partial{t}")
            full = arith.wire(m, signed(len(dot)), Mux(beat == 0, 0, dot) + partial,
                              name=f"full{t}")
            coarse = arith.round_shift(m, full, fixed.FRAC, name=f"coarse{t}")
            scaled = arith.wire(m, signed(len(coarse) + 17), coarse * self.score_m,
                                name=f"scaled{t}")
            score = arith.sat32(m, arith.round_shift(m, scaled, self.score_e,
                                                     name=f"score_r{t}"), name=f"score{t}")
            peak = Signal(signed(32), name=f"peak{t}")
            m.d.comb += s_write.data.eq(score)
            with m.If(self.k.valid & self.k.ready):
                m.d.sync += dot.eq(full)
                with m.If(last_beat & visible & ((key == 0) | (score > peak))):
                    m.d.sync += peak.eq(score)

            # pass 2: the key's weight (0 when masked) and the exact sums of p and p * v
            diff = arith.wire(m, signed(34), s_read.data - peak, name=f"diff{t}")
            weight = arith.wire(m, WEIGHT_FRAC + 1,
                                Mux(visible, arith.exp_neg(m, diff, frac=WEIGHT_FRAC,
                                                           name=f"exp{t}"), 0), name=f"p{t}")
            total = Signal(self.sum_width, name=f"total{t}")
            for i in range(lanes):
                pv = arith.wire(m, signed(pv_width), weight * values_clipped[i],
                                name=f"pv{t}_{i}")
                m.d.comb += a_write.data[i].eq(Mux(key == 0, 0, a_read.data[i]) + pv)
            with m.If(self.v.valid & self.v.ready & (beat == 0)):
                m.d.sync += total.eq(Mux(key == 0, 0, total) + weight)

            # the reciprocal of the sum, then sat32(round(round(acc / 2^24) * r))
            inv_m = Signal(16, name=f"inv_m{t}")
            inv_e = Signal(signed(8), name=f"inv_e{t}")
            m.d.comb += [recip.i.valid.eq(start), recip.i.payload.num.eq(1 << WEIGHT_FRAC),
                         recip.i.payload.den.eq(total), recip.o.ready.eq(1)]
            with m.If(recip.o.valid):
                m.d.sync += [inv_m.eq(recip.o.payload.m), inv_e.eq(recip.o.payload.e)]
            lanes_out = []
            for i in range(lanes):
                rounded = arith.round_shift(m, a_read.data[i], WEIGHT_FRAC, name=f"acc{t}_{i}")
                product = arith.wire(m, signed(len(rounded) + 17), rounded * inv_m,
                                     name=f"out{t}_{i}")
                lanes_out.append(arith.scale_sat32(m, product, inv_e, name=f"o{t}_{i}"))
            q_writes.append(q_write)
            s_writes.append(s_write)
            a_writes.append(a_write)
            recips.append(recip)
            outputs.append(Cat(*lanes_out))

        out_free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def step_beat(on_last):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                on_last()

        def step_row(on_last):
            def row_done():
                m.d.sync += row.eq(Mux(last_row, 0, row + 1))
                with m.If(last_row):
                    on_last()
            step_beat(row_done)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(1)
                with m.If(self.job.valid):
                    m.d.sync += [keys.eq(self.job.payload.keys), active.eq(self._job_queries()),
                                 key.eq(0), beat.eq(0), row.eq(0)]
                    m.next = "QUERY"
            with m.State("QUERY"):
                m.d.comb += self.q.ready.eq(1)
                for t, q_write in enumerate(q_writes):
                    m.d.comb += q_write.en.eq(self.q.valid & (row == t))
                with m.If(self.q.valid):
                    step_row(lambda: setattr(m, "next", "KEYS"))
            with m.State("KEYS"):
                m.d.comb += self.k.ready.eq(1)
                for s_write in s_writes:
                    m.d.comb += s_write.en.eq(self.k.valid & last_beat)
                with m.If(self.k.valid):
                    def key_done():
                        m.d.sync += key.eq(Mux(last_key, 0, key + 1))
                        with m.If(last_key):
                            m.next = "VALUES"
                    step_beat(key_done)
            with m.State("VALUES"):
                m.d.comb += self.v.ready.eq(1)
                for a_write in a_writes:
                    m.d.comb += a_write.en.eq(self.v.valid)
                with m.If(self.v.valid):
                    def value_done():
                        m.d.sync += key.eq(key + 1)
                        with m.If(last_key):
                            m.d.sync += start.eq(1)
                            m.next = "RECIPROCAL"
                    step_beat(value_done)
            with m.State("RECIPROCAL"):
                # every query's divider starts and finishes together (fixed latency)
                with m.If(recips[0].i.ready):
                    m.d.sync += start.eq(0)
                with m.If(recips[0].o.valid):
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                with m.If(out_free):
                    m.d.sync += [self.o.valid.eq(1),
                                 self.o.payload.as_value().eq(Array(outputs)[row])]
                    step_row(lambda: setattr(m, "next", "IDLE"))
        return m


class DecodeUnit(_TwoPassAttention):
    """Two-pass streaming attention of one query against ``keys`` cached keys/values.

    Parameters
    ----------
    lanes : int
        Elements per beat of ``q``, ``k``, ``v`` and ``o``; must divide ``head_dim``.
    head_dim : int
        Head dimension D (the score scale is ``golden.fixed.float_to_scale(1/sqrt(D))``).
    max_keys : int
        Longest KV sequence: depth of the score buffer (one int32 per key).

    Attributes
    ----------
    job : In(stream.Signature(StructLayout({"keys": range(max_keys + 1)})))
        One beat per (query, head): the number of visible keys S (1 <= S <= max_keys).
    q : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        D / lanes beats: the Q16 query (after RoPE).
    k : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        S * D / lanes beats, key-major: the Q16 keys (after RoPE).
    v : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        S * D / lanes beats, key-major, accepted after all keys: the Q16 values.
    o : Out(stream.Signature(ArrayLayout(signed(32), lanes)))
        D / lanes beats: the Q16 attention output.
    """

    def __init__(self, *, lanes: int = 4, head_dim: int = 64, max_keys: int = 1024):
        arith.check_positive("max_keys", max_keys)
        super().__init__(queries=1, lanes=lanes, head_dim=head_dim, max_keys=max_keys,
                         job_layout=data.StructLayout({"keys": range(max_keys + 1)}))

    def cycles(self, keys: int) -> int:
        """Stall-free cycles for one job of S = ``keys`` keys: ``2*B + 2*S*B + 23`` with
        ``B = head_dim / lanes``: the job (1), the query (B), keys and values (2*S*B), the
        divider start and ``RatioScale`` (1 + 20), the output (B) and its register (1)."""
        return self._cycles(1, keys)


class PrefillUnit(_TwoPassAttention):
    """Two-pass streaming attention of a tile of consecutive causal queries (one head).

    A job of ``queries`` = n queries and ``keys`` = S keys holds the queries at positions
    S - n .. S - 1 (the last n positions of the sequence); query t sees keys 0 .. S - n + t.
    One pass over K and one over V serve the whole tile.

    Parameters
    ----------
    queries : int
        Tile size: queries processed in parallel (dot products, exp units, accumulators,
        dividers are replicated this many times).
    lanes, head_dim, max_keys : int
        As for ``DecodeUnit``.

    Attributes
    ----------
    job : In(stream.Signature(StructLayout({"keys": ..., "queries": ...})))
        ``keys`` = S (``range(max_keys + 1)``), ``queries`` = n (``range(queries + 1)``) with
        1 <= n <= min(queries, S).
    q : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        n * D / lanes beats, query-major (ascending position).
    k, v : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        As for ``DecodeUnit``: S * D / lanes beats each, keys before values.
    o : Out(stream.Signature(ArrayLayout(signed(32), lanes)))
        n * D / lanes beats, query-major.
    """

    def __init__(self, *, queries: int = 8, lanes: int = 4, head_dim: int = 64,
                 max_keys: int = 1024):
        arith.check_positive("queries", queries)
        arith.check_positive("max_keys", max_keys)
        super().__init__(queries=queries, lanes=lanes, head_dim=head_dim, max_keys=max_keys,
                         job_layout=data.StructLayout({"keys": range(max_keys + 1),
                                                       "queries": range(queries + 1)}))

    def _job_queries(self):
        return self.job.payload.queries

    def cycles(self, queries: int, keys: int) -> int:
        """Stall-free cycles for one job of n = ``queries`` queries and S = ``keys`` keys:
        ``2*n*B + 2*S*B + 23`` with ``B = head_dim / lanes`` (see ``DecodeUnit.cycles``)."""
        return self._cycles(queries, keys)
