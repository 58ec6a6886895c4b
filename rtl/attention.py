# SPDX-License-Identifier: BSD-3-Clause
"""Decode and prefill attention for one head, bit-exact to ``golden.attention.attention``.

``DecodeUnit`` streams a head's KV cache twice for one query (TeLLMe
``decode_attention.hpp``); ``PrefillUnit`` does the same for a tile of up to ``queries``
consecutive queries at once (one K/V stream shared by the tile, ``queries`` dot products, exp
units and accumulators in parallel, causal mask by key index):

1. **Scores.** The query is held on chip; each key row streams in ``head_dim / lanes`` beats,
   the products of each beat (operands first clipped to +-(2**23 - 1), ``OPERAND_LIMIT``)
   are summed into the dot product, and the score ``sat32(round(round(dot / 2^16) * c))``
   (``c`` the Scale of 1/sqrt(head_dim)) is written to the score buffer and the exact
   running maximum updated.
2. **Weights.** Each value row streams in; its weight ``p = exp_neg(s - max)`` (Q24,
   ``golden.attention.WEIGHT_FRAC``) comes from the score buffer, ``sum p`` and
   ``sum p * v`` are accumulated exactly (integers, so key order does not matter).

Then one reciprocal per query (the Scale of ``2^24 / sum p``, ``pipeline.Reciprocal``) and
the output pass, ``sat32(round(round(acc / 2^24) * r))`` per element.

Because every sum is exact, the result does not depend on key order, and a prefill tile gives
bit-identical rows to decoding its queries one by one (``golden.attention``).

Pipelining (issue #12): every step has its own register, so no register-to-register path has
more than one carry chain of at most about 32 bits (or a small product) and a few LUTs. The
24-bit operands of ``q . k`` are multiplied in 12-bit halves (four products of at most 12 x 12
bits; the classes low-low, cross and high-high are summed separately over the lanes, one tree
level a stage, and over the beats), so the dot product's sums stay near 32 bits; ``p * v`` is
one 17 x 17 product and three with an operand of at most 8 bits. The two passes share
their four multipliers a lane (``_SharedProduct``: a job's values reach them only after its
keys have left them): on the ECP5 one MULT18X18D and three LUT Booth multipliers a lane for
both passes, instead of those and four more Booth multipliers for ``q . k``; wider sums are
``pipeline.split_add`` halves, and ``sum p v`` is kept in 24-bit chunks, each chunk's
read-modify-write of the accumulator buffer a stage after the one below it with the carry
registered between them. The exponential is the Q30 product in two halves, two ROMs (the
table and its steps) and a shift. Pass 1 and pass 2 never stall (their inputs come one beat
a cycle at most, and they end in memories and registers), so they carry ``valid`` bits
instead of a ready chain; the output pass stalls as a whole while its beat waits.

The inputs are taken as before, one beat a cycle with no back-pressure: ``k`` from the cycle
after the last ``q`` beat, ``v`` from the cycle after the last ``k`` beat. A value beat's
score is read ``score_write`` cycles after the beat arrives (a delay line carries the value),
which is when the last key's score and the maximum are in place even when the values follow
the keys at once. All buffers are read synchronously (block RAM where deep enough).

Stall-free timing (``cycles``) counts the cycles from the one accepting the job to the one
accepting the last output beat, both included.
"""

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed
from ..golden.attention import OPERAND_LIMIT, WEIGHT_FRAC
from . import arith, pipeline

__all__ = ["DecodeUnit", "PrefillUnit"]


def _clip(x):
    """``x`` (int32) saturated to +-OPERAND_LIMIT, as 24 bits: from its top nine bits alone
    (no comparator carry chain)."""
    top = x[23:]
    positive_over = ~x[31] & (top != 0)
    negative_over = x[31] & ((top != 0x1FF) | (x[:23] == 0))
    return Mux(positive_over, OPERAND_LIMIT, Mux(negative_over, -OPERAND_LIMIT, x[:24].as_signed()))


#: the four multipliers of a lane, shared by ``q . k`` (12-bit halves) and ``p * v`` (p in
#: 17 + 8 bits, v in 17 + 7): the operand shapes that hold both
_SHARED_PRODUCTS = {"ll": (unsigned(17), unsigned(17)), "lh": (unsigned(17), signed(12)),
                    "hl": (signed(12), unsigned(17)), "hh": (signed(12), signed(12))}


class _SharedProduct:
    """One registered multiplier for a product of pass 1 (``first``) and one of pass 2
    (``second``): a job's value beats reach the products only after its last key beat has
    left them, so the two never need it in the same cycle, and ``second``'s ``valid`` picks
    the operands. Each pass reads the product at its own shape (the shape of its own
    operands' product, which holds every value it can take)."""

    def __init__(self, st, name, a_shape, b_shape):
        self.a = Signal(a_shape, name=f"{name}_a")
        self.b = Signal(b_shape, name=f"{name}_b")
        self.product = st(name, None, self.a * self.b, reset_less=True)
        self._first = None

    def _view(self, a, b):
        shape = (a * b).shape()
        value = self.product[:shape.width]
        return value.as_signed() if shape.signed else value

    def first(self, a, b):
        self._first = (a, b)
        self.first_product = self._view(a, b)

    def second(self, m, valid, a, b):
        first_a, first_b = self._first
        m.d.comb += [self.a.eq(Mux(valid, a, first_a)), self.b.eq(Mux(valid, b, first_b))]
        self.second_product = self._view(a, b)


def _tree(st, name, terms, stages):
    """Pairwise sums of ``terms``, one level a stage, over exactly ``stages`` stages."""
    for level in range(stages):
        nxt = [st(f"{name}{level}_{j // 2}", None, terms[j] + terms[j + 1], reset_less=True)
               for j in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(st(f"{name}{level}_{len(terms) // 2}", None, terms[-1], reset_less=True))
        terms = nxt
    assert len(terms) == 1
    return terms[0]


#: ``exp_neg``'s ``EXP2_LUT`` and its steps ``EXP2_LUT[i + 1] - EXP2_LUT[i]`` (one ROM each,
#: so the interpolation needs no subtract)
_EXP_BASE = [int(v) for v in fixed.EXP2_LUT[:256]]
_EXP_STEP = [int(fixed.EXP2_LUT[i + 1] - fixed.EXP2_LUT[i]) for i in range(256)]
#: ``exp_neg`` inputs at or below -32.0 give 0 at Q24 (the shift is at least 47 > 26), so the
#: input is clamped there: 22 bits
_EXP_INPUT_BITS = 22


class _TwoPassAttention(wiring.Component):
    #: bits a stage of the wide accumulators (``p * v`` sums): chunks of this many bits,
    #: each a stage after the one below it, with the carry registered in between
    CHUNK = 24
    #: pass 1, from the score's dot-product classes to the score register: the two halves of
    #: ``LL / 2**12 + X``, ``+ HH * 2**12``, the clamp, the two products with the scale, the
    #: rounding constant, the two halves of their sum, the saturation
    SCORE_STAGES = 9
    #: pass 2, from the score read to the weight register: the read, the two halves of
    #: ``s - peak``, the clamp, ``pipeline.log2e_times`` (5), the ROMs and a register after
    #: them, the step product, its rounding, the mantissa, the shift, the rounding and mask
    WEIGHT_STAGES = 16
    #: output pass, from an accumulator read to the output register: the read, the row's
    #: select, the two halves of the rounding, the products with 1/sum, their two halves,
    #: the coarse and fine shifts, the rounding, the saturation
    OUTPUT_STAGES = 11

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

    @property
    def tree_stages(self) -> int:
        """Stages of the pass-1 sum over the lanes (the cross products are 2 * lanes terms,
        one level a stage): ``ceil(log2(2 * lanes))``."""
        return (2 * self.lanes - 1).bit_length()

    @property
    def score_write(self) -> int:
        """Cycles from accepting a key beat to its score's write (and the peak's update): the
        input register, the clip (with the query read), the products, the lane tree, the
        dot-product accumulators, ``SCORE_STAGES``. Pass 2 reads a value beat's score this
        many cycles after accepting the beat (after the last key's write when the first value
        beat follows the last key beat at once)."""
        return 4 + self.tree_stages + self.SCORE_STAGES

    @property
    def reciprocal_start(self) -> int:
        """Cycles from accepting the last value beat to its ``sum p`` entering the reciprocal:
        the score read, ``WEIGHT_STAGES``, the two halves of the sum's accumulator."""
        return self.score_write + self.WEIGHT_STAGES + 2

    @property
    def tail(self) -> int:
        """Stall-free cycles from accepting the last value beat to accepting the first output
        beat: the reciprocal's start and latency, the step into the output pass,
        ``OUTPUT_STAGES``."""
        return (self.reciprocal_start + pipeline.Reciprocal.LATENCY + 1
                + self.OUTPUT_STAGES)

    def _cycles(self, queries, keys):
        arith.check_positive("keys", keys)
        if keys > self.max_keys:
            raise ValueError(f"keys={keys} exceeds this unit's max_keys={self.max_keys}")
        arith.check_positive("queries", queries)
        if queries > min(self.queries, keys):
            raise ValueError(f"queries={queries} must be at most the tile size "
                             f"{self.queries} and at most keys={keys}")
        hb = self.beats
        return 1 + queries * hb + 2 * keys * hb + self.tail + queries * hb - 1

    def _job_queries(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        tile, lanes, hb = self.queries, self.lanes, self.beats
        chunk = self.CHUNK
        # Passes 1 and 2 hold data only between a job's acceptance and its output pass (the
        # FSM out of IDLE): their stages load only then (a clock enable decoded from the
        # state), so a simulator evaluates them only while a job runs.
        job_active = Signal()
        st = pipeline.Stages(m, enable=job_active)
        lane_array = data.ArrayLayout(signed(32), lanes)

        keys_m1 = Signal(range(self.max_keys + 1))  # the job's keys - 1 (registered)
        active = Signal(range(tile + 1))           # queries in this job
        limits = [Signal(range(self.max_keys + tile), name=f"limit{t}") for t in range(tile)]
        key = Signal(range(self.max_keys + 1))
        beat = Signal(range(hb))
        row = Signal(range(tile))                  # query being loaded
        last_beat = beat == hb - 1
        last_key = key == keys_m1
        last_row = row == active - 1

        def step_beat(on_last):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                on_last()

        # ---- queries: registered, clipped into the query buffers ----
        q_accept = self.q.valid & self.q.ready
        q1 = st("q1", lane_array, self.q.payload, reset_less=True)
        q1_valid, q1_row, q1_beat = st("q1_valid", 1, q_accept), st("q1_row", None, row), \
            st("q1_beat", None, beat)

        # ---- pass 1: q . k in 12-bit halves, per query; the score on a key's last beat ----
        k_accept = self.k.valid & self.k.ready
        k1 = st("k1", lane_array, self.k.payload, reset_less=True)
        k1_valid = st("k1_valid", 1, k_accept)
        k1_beat = st("k1_beat", None, beat)
        k1_first, k1_last = st("k1_first", 1, beat == 0), st("k1_last", 1, last_beat)
        k1_key = st("k1_key", None, key)
        k1_key0 = st("k1_key0", 1, key == 0)
        k1_visible = [st(f"k1_visible{t}", 1, key <= limits[t]) for t in range(tile)]
        kc = [st(f"kc{i}", signed(24), _clip(k1[i]), reset_less=True) for i in range(lanes)]
        td = self.tree_stages
        # the flags of a key beat at the dot-product accumulators (stage 3 + td)
        k_valid = st.delay("k_valid", k1_valid, 2 + td)
        k_first = st.delay("k_first", k1_first, 2 + td, reset_less=True)
        k_last = st.delay("k_last", k1_last, 2 + td, reset_less=True)
        row_done = st("row_done", 1, k_valid & k_last)
        # the key's index and flags at the score register
        score_valid = st.delay("score_valid", row_done, self.SCORE_STAGES)
        score_key = st.delay("score_key", k1_key, 3 + td + self.SCORE_STAGES, reset_less=True)
        score_key0 = st.delay("score_key0", k1_key0, 3 + td + self.SCORE_STAGES,
                              reset_less=True)
        # -OPERAND_LIMIT.. as x = xh * 2**12 + xl: xl in [0, 4095], xh in [-2048, 2047]
        d = self.head_dim
        ll_init = 1 << (fixed.FRAC - 1)            # the rounding of dot / 2**16, added up front
        ll_shape = unsigned((d * (1 << 24) + ll_init).bit_length())
        x_shape = signed((d * (1 << 24)).bit_length() + 1)
        hh_shape = signed((d * (1 << 22)).bit_length() + 1)
        e = self.score_e
        clamp_bits = 17 + e                         # |coarse| >= 2**(16 + e) saturates anyway

        q_writes, s_writes, peaks, s_reads = [], [], [], []
        shared = {}                                # (query, lane) -> {part: _SharedProduct}
        for t in range(tile):
            query = memory.Memory(shape=data.ArrayLayout(signed(24), lanes), depth=hb, init=[])
            m.submodules[f"query{t}"] = query
            q_write, q_read = query.write_port(), query.read_port()
            m.d.comb += [q_write.addr.eq(q1_beat), q_write.en.eq(q1_valid & (q1_row == t)),
                         q_read.addr.eq(k1_beat)]
            for i in range(lanes):
                m.d.comb += q_write.data[i].eq(_clip(q1[i]))
            lls, xs, hhs = [], [], []
            for i in range(lanes):
                qd = q_read.data[i]
                ql, qh = qd[:12], qd[12:].as_signed()
                kl, kh = kc[i][:12], kc[i][12:].as_signed()
                products = {part: _SharedProduct(st, f"mul{t}_{i}_{part}", *shapes)
                            for part, shapes in _SHARED_PRODUCTS.items()}
                shared[t, i] = products
                for part, a, b in (("ll", ql, kl), ("lh", ql, kh), ("hl", qh, kl),
                                   ("hh", qh, kh)):
                    products[part].first(a, b)
                lls.append(products["ll"].first_product)
                xs.append(products["lh"].first_product)
                xs.append(products["hl"].first_product)
                hhs.append(products["hh"].first_product)
            ll_beat = _tree(st, f"ll{t}_", lls, td)
            x_beat = _tree(st, f"x{t}_", xs, td)
            hh_beat = _tree(st, f"hh{t}_", hhs, td)
            ll = Signal(ll_shape, name=f"dot{t}_ll")
            x = Signal(x_shape, name=f"dot{t}_x")
            hh = Signal(hh_shape, name=f"dot{t}_hh")
            with m.If(k_valid):
                m.d.sync += [ll.eq(Mux(k_first, ll_init, ll) + ll_beat),
                             x.eq(Mux(k_first, 0, x) + x_beat),
                             hh.eq(Mux(k_first, 0, hh) + hh_beat)]
            # coarse = (dot + 2**15) >> 16 = ((LL >> 12) + X + (HH << 12)) >> 4
            v1 = pipeline.split_add(st, f"dot{t}_v1", ll >> 12, x)
            hh2 = st.delay(f"dot{t}_hh", hh, 2, reset_less=True)
            upper = st(f"dot{t}_upper", None, (v1 >> 12) + hh2, reset_less=True)
            low12 = st(f"dot{t}_low", 12, v1[:12], reset_less=True)
            coarse = Cat(low12, upper).as_signed() >> 4
            over = coarse[clamp_bits - 1:]
            fits = (over == 0) | (over == (1 << len(over)) - 1) if len(over) > 1 else Const(1, 1)
            clamped = st(f"coarse{t}", signed(clamp_bits), Mux(
                fits, coarse[:clamp_bits].as_signed(),
                Mux(coarse[-1], -(1 << (clamp_bits - 1)), (1 << (clamp_bits - 1)) - 1)),
                reset_less=True)
            p_lo = st(f"scaled{t}_lo", None, clamped[:17] * self.score_m, reset_less=True)
            p_hi = st(f"scaled{t}_hi", None, clamped[17:].as_signed() * self.score_m,
                      reset_less=True)
            p_lo_r = st(f"scaled{t}_round", None, p_lo + (1 << (e - 1)), reset_less=True)
            p_hi = st(f"scaled{t}_hi2", None, p_hi, reset_less=True)
            total = pipeline.split_add(st, f"scaled{t}_sum", p_lo_r >> 17, p_hi)
            lo17 = st.delay(f"scaled{t}_lo17", p_lo_r[:17], 2, reset_less=True)
            r = Cat(lo17, total).as_signed() >> e
            high = r[31:]
            in_range = (high == 0) | (high == (1 << len(high)) - 1)
            score = st(f"score{t}", signed(32), Mux(
                in_range, r[:32], Mux(r[-1], fixed.INT32_MIN, fixed.INT32_MAX)),
                reset_less=True)
            score_buf = memory.Memory(shape=signed(32), depth=self.max_keys, init=[])
            m.submodules[f"scores{t}"] = score_buf
            s_write, s_read = score_buf.write_port(), score_buf.read_port()
            visible = st.delay(f"score_visible{t}", k1_visible[t],
                               3 + td + self.SCORE_STAGES, reset_less=True)
            m.d.comb += [s_write.addr.eq(score_key), s_write.data.eq(score),
                         s_write.en.eq(score_valid)]
            peak = Signal(signed(32), name=f"peak{t}")
            with m.If(score_valid & visible & (score_key0 | (score > peak))):
                m.d.sync += peak.eq(score)
            q_writes.append(q_write)
            s_writes.append(s_write)
            peaks.append(peak)
            s_reads.append(s_read)

        # ---- pass 2: the values wait for the scores; p = exp_neg(s - peak); sums ----
        v_accept = self.v.valid & self.v.ready
        v1 = st("v1", lane_array, self.v.payload, reset_less=True)
        v1_valid = st("v1_valid", 1, v_accept)
        meta = {"beat": st("v1_beat", None, beat, reset_less=True),
                "beat0": st("v1_beat0", 1, beat == 0, reset_less=True),
                "key": st("v1_key", None, key, reset_less=True),
                "key0": st("v1_key0", 1, key == 0, reset_less=True),
                "final": st("v1_final", 1, last_beat & last_key, reset_less=True)}
        for t in range(tile):
            meta[f"visible{t}"] = st(f"v1_visible{t}", 1, key <= limits[t], reset_less=True)
        vc = [st(f"vc{i}", signed(24), _clip(v1[i]), reset_less=True) for i in range(lanes)]
        read_stage = self.score_write              # the score read, in cycles after accept
        weight_stage = read_stage + self.WEIGHT_STAGES

        def at(name, stage, source_stage=1):
            """A value beat's meta field (or valid) delayed to ``stage``."""
            if name == "valid":
                return st.delay(f"v{stage}_valid", v1_valid, stage - source_stage)
            return st.delay(f"v{stage}_{name}", meta[name], stage - source_stage,
                            reset_less=True)

        read_key = at("key", read_stage)
        w_valid = at("valid", weight_stage)
        w_beat0, w_key0 = at("beat0", weight_stage), at("key0", weight_stage)
        w_vc = [st.delay(f"w_vc{i}", vc[i], weight_stage - 2, reset_less=True)
                for i in range(lanes)]
        w_beat = at("beat", weight_stage)
        final = st.delay("final", at("final", weight_stage) & w_valid, 2)
        acc_width = 48 + self.max_keys.bit_length()  # |sum p v| < max_keys * 2**47
        bounds = [(lo, min(lo + chunk, acc_width)) for lo in range(0, acc_width, chunk)]
        n_chunks = len(bounds)
        # p * v is in two operands 3 stages after p (the products, the sums' halves); the
        # accumulator chunk i of a beat is read in stage weight_stage + 3 + i and written in
        # the next (its carry registered for chunk i + 1)
        c_valid = [st.delay(f"c{i}_valid", w_valid, 4 + i) for i in range(n_chunks)]
        c_beat = [st.delay(f"c{i}_beat", w_beat, 3 + i, reset_less=True)
                  for i in range(n_chunks + 1)]
        c_key0 = [st.delay(f"c{i}_key0", w_key0, 4 + i, reset_less=True)
                  for i in range(n_chunks)]
        outputting = Signal()
        out_addr = Signal(range(hb))
        out_advance = Signal()

        acc_reads, recips = [], []
        for t in range(tile):
            s_read = s_reads[t]
            m.d.comb += s_read.addr.eq(read_key)
            diff = pipeline.split_add(st, f"diff{t}", s_read.data, ~peaks[t], carry_in=1)
            top = diff[_EXP_INPUT_BITS - 1:]
            ex = st(f"exp{t}_x", signed(_EXP_INPUT_BITS), Mux(
                ~diff[-1], 0, Mux(top == (1 << len(top)) - 1,
                                  diff[:_EXP_INPUT_BITS].as_signed(),
                                  -(1 << (_EXP_INPUT_BITS - 1)))), reset_less=True)
            tq = pipeline.log2e_times(st, f"exp{t}_t", ex)
            whole = tq[16:].as_signed()
            minus_whole = arith.wire(m, 8, -whole, name=f"exp{t}_minus_whole")
            base = st(f"exp{t}_base", 17, Array(Const(v, 17) for v in _EXP_BASE)[tq[8:16]],
                      reset_less=True)
            step = st(f"exp{t}_step", 9, Array(Const(v, 9) for v in _EXP_STEP)[tq[8:16]],
                      reset_less=True)
            frac_lo = st(f"exp{t}_lo", 8, tq[:8], reset_less=True)
            amount = st(f"exp{t}_amount", range(27), Mux(minus_whole > 26, 26, minus_whole),
                        reset_less=True)
            # a register after the ROMs: Yosys may put them in block RAM, whose output is slow
            base, step, frac_lo, amount = (st.delay(f"exp{t}_{n}_rom", v, 1, reset_less=True)
                                           for n, v in (("base", base), ("step", step),
                                                        ("lo", frac_lo), ("amount", amount)))
            interp = st(f"exp{t}_interp", None, step * frac_lo, reset_less=True)
            base, amount = (st.delay(f"exp{t}_base_i", base, 1, reset_less=True),
                            st.delay(f"exp{t}_amount_i", amount, 1, reset_less=True))
            interp = st(f"exp{t}_interp_r", 10, (interp + 128) >> 8, reset_less=True)
            base, amount = (st.delay(f"exp{t}_base_r", base, 1, reset_less=True),
                            st.delay(f"exp{t}_amount_r", amount, 1, reset_less=True))
            mant = st(f"exp{t}_mant", 18, base + interp, reset_less=True)
            amount = st.delay(f"exp{t}_amount_m", amount, 1, reset_less=True)
            # round_shift(mant << 8, amount) = (((mant << 9) >> amount) + 1) >> 1
            shifted = st(f"exp{t}_shifted", 27, Cat(Const(0, 9), mant) >> amount,
                         reset_less=True)
            w_visible = at(f"visible{t}", weight_stage - 1)
            weight = st(f"p{t}", WEIGHT_FRAC + 1,
                        Mux(w_visible, (shifted + 1) >> 1, 0), reset_less=True)

            # sum p (beat 0 of each key) in two chunks, the high one a stage later
            t_lo = Signal(WEIGHT_FRAC + 1, name=f"total{t}_lo")
            t_hi = Signal(self.sum_width - WEIGHT_FRAC - 1, name=f"total{t}_hi")
            low_sum = arith.wire(m, WEIGHT_FRAC + 2, Mux(w_key0, 0, t_lo) + weight,
                                 name=f"total{t}_sum")
            carry = st(f"total{t}_carry", 1, low_sum[-1], reset_less=True)
            with m.If(w_valid & w_beat0):
                m.d.sync += t_lo.eq(low_sum[:-1])
            hi_en = st.delay(f"total{t}_en", w_valid & w_beat0, 1)
            hi_key0 = st.delay(f"total{t}_key0", w_key0, 1, reset_less=True)
            with m.If(hi_en):
                m.d.sync += t_hi.eq(Mux(hi_key0, 0, t_hi) + carry)
            recip = pipeline.Reciprocal(num_log2=WEIGHT_FRAC, den_width=self.sum_width)
            m.submodules[f"recip{t}"] = recip
            m.d.comb += [recip.i.valid.eq(final), recip.i.payload.eq(Cat(t_lo, t_hi))]
            recips.append(recip)

            # sum p v: p * v in four products (p and v each in a 17-bit low part and a high
            # part of 8 and 7 bits: one 17 x 17 product, a DSP multiplier on the ECP5 too,
            # and three with an operand of at most 8 bits, small in LUTs), two sums (in
            # halves), then chunk by chunk
            pv_terms = []
            pl, ph = weight[:17], weight[17:]
            for i in range(lanes):
                vl, vh = w_vc[i][:17], w_vc[i][17:].as_signed()
                products = shared[t, i]
                for part, a, b in (("ll", pl, vl), ("lh", pl, vh), ("hl", ph, vl),
                                   ("hh", ph, vh)):
                    products[part].second(m, w_valid, a, b)
                ll, lh, hl, hh = (products[part].second_product
                                  for part in ("ll", "lh", "hl", "hh"))
                a = pipeline.split_add(st, f"pv{t}_{i}_a", ll, lh.shift_left(17))
                b = pipeline.split_add(st, f"pv{t}_{i}_b", hl, hh.shift_left(17))
                pv_terms.append((arith.wire(m, signed(acc_width), a, name=f"pv{t}_{i}_a"),
                                 arith.wire(m, signed(acc_width), b.shift_left(17),
                                            name=f"pv{t}_{i}_b")))
            reads = []
            carry_pv = [None] * lanes
            carry_acc = [None] * lanes
            for c, (lo, hi) in enumerate(bounds):
                top_chunk = c == n_chunks - 1
                shape = signed(hi - lo) if top_chunk else unsigned(hi - lo)
                buf = memory.Memory(shape=data.ArrayLayout(shape, lanes), depth=hb, init=[])
                m.submodules[f"accs{t}_{c}"] = buf
                a_write = buf.write_port()
                # one-beat rows read a beat in the cycle the key before writes it; longer
                # rows read it a cycle later at the earliest, so the bypass mux (a level on
                # the write data's path) is built only for those
                a_read = buf.read_port(transparent_for=(a_write,) if hb == 1 else ())
                m.d.comb += [a_read.addr.eq(Mux(outputting, out_addr, c_beat[c])),
                             a_read.en.eq(~outputting | out_advance),
                             a_write.addr.eq(c_beat[c + 1]), a_write.en.eq(c_valid[c])]
                for i in range(lanes):
                    a, b = pv_terms[i]
                    a_c = st.delay(f"pv{t}_{i}_a{c}", a[lo:hi], c, reset_less=True)
                    b_c = st.delay(f"pv{t}_{i}_b{c}", b[lo:hi], c, reset_less=True)
                    if top_chunk:
                        a_c, b_c = a_c.as_signed(), b_c.as_signed()
                    cin = Const(0, 1) if carry_pv[i] is None else carry_pv[i]
                    pv_sum = arith.wire(m, hi - lo + 1, pipeline.carry_add(a_c, b_c, cin),
                                        name=f"pv{t}_{i}_s{c}")
                    pv_c = st(f"pv{t}_{i}_c{c}", shape, pv_sum[:hi - lo], reset_less=True)
                    carry_pv[i] = st(f"pv{t}_{i}_k{c}", 1, pv_sum[-1], reset_less=True)
                    old = a_read.data[i]
                    cin = Const(0, 1) if carry_acc[i] is None else carry_acc[i]
                    new = arith.wire(m, hi - lo + 1, pipeline.carry_add(
                        Mux(c_key0[c], 0, old).as_signed() if top_chunk else
                        Mux(c_key0[c], 0, old), pv_c, cin), name=f"acc{t}_{i}_s{c}")
                    m.d.comb += a_write.data[i].eq(new[:hi - lo])
                    carry_acc[i] = st(f"acc{t}_{i}_k{c}", 1, new[-1], reset_less=True)
                reads.append(a_read)
            acc_reads.append(reads)

        # ---- the output pass: sat32(round(round(acc / 2^24) * r)); stalls as a whole ----
        advance = ~self.o.valid | self.o.ready
        m.d.comb += out_advance.eq(advance)
        # the output pass's stages load while it has a beat in flight (none while idle)
        out_active = Signal()
        so = pipeline.Stages(m, enable=advance & out_active)
        inv_m = [Signal(16, name=f"inv_m{t}") for t in range(tile)]
        inv_s = [Signal(range(64), name=f"inv_s{t}") for t in range(tile)]   # e - 14
        out_row = Signal(range(tile))
        issue = outputting & advance
        o1_valid = so("o1_valid", 1, issue)
        o1_row = so("o1_row", None, out_row)
        accs = []
        for t in range(tile):
            chunks = [acc_reads[t][c].data for c in range(n_chunks)]
            accs.append(Cat(*(Cat(*(ch[i] for ch in chunks)) for i in range(lanes))))
        o2_acc = so("o2_acc", len(accs[0]), Array(accs)[o1_row], reset_less=True)
        o2_valid = so("o2_valid", 1, o1_valid)
        o2_m = so("o2_m", 16, Array(inv_m)[o1_row], reset_less=True)
        o2_s = so("o2_s", range(64), Array(inv_s)[o1_row], reset_less=True)
        results = []
        for i in range(lanes):
            acc = o2_acc[i * acc_width:(i + 1) * acc_width].as_signed()
            rounded = pipeline.split_add(so, f"out{i}_round", acc.shift_right(WEIGHT_FRAC),
                                         Const(0, 1),
                                         carry_in=acc[WEIGHT_FRAC - 1])
            mult = so.delay(f"out{i}_m", o2_m, 2, reset_less=True)
            r_lo = so(f"out{i}_plo", None, rounded[:17] * mult, reset_less=True)
            r_hi = so(f"out{i}_phi", None, rounded[17:].as_signed() * mult, reset_less=True)
            prod_hi = pipeline.split_add(so, f"out{i}_prod", r_lo >> 17, r_hi)
            lo17 = so.delay(f"out{i}_lo17", r_lo[:17], 2, reset_less=True)
            prod = Cat(lo17, prod_hi).as_signed()
            shift = so.delay(f"out{i}_s", o2_s, 5, reset_less=True)
            # round_shift(prod, e) = (((prod >> 13) >> (e - 14)) + 1) >> 1, e - 14 >= 0
            coarse = so(f"out{i}_coarse", None, (prod >> 13) >> Cat(Const(0, 2), shift[2:]),
                        reset_less=True)
            fine_shift = so.delay(f"out{i}_s2", shift[:2], 1, reset_less=True)
            z = so(f"out{i}_fine", None, coarse >> fine_shift, reset_less=True)
            high = z[33:]
            in_range = so(f"out{i}_in_range", 1,
                          (high == 0) | (high == (1 << len(high)) - 1) if len(high) else 1,
                          reset_less=True)
            negative = so(f"out{i}_neg", 1, z[-1], reset_less=True)
            rounded = so(f"out{i}_rounded", signed(34), (z[:34].as_signed() + 1) >> 1,
                         reset_less=True)
            fits = (rounded[31:] == 0) | (rounded[31:] == 0b111)
            results.append(Mux(in_range & fits, rounded[:32],
                               Mux(negative, fixed.INT32_MIN, fixed.INT32_MAX)))
        out_valids = [o1_valid, o2_valid]
        for i in range(self.OUTPUT_STAGES - 3):
            out_valids.append(so(f"out_valid{i}", 1, out_valids[-1]))
        out_valid = out_valids[-1]
        m.d.comb += out_active.eq(Cat(outputting, *out_valids).any())
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(out_valid)]
            for i in range(lanes):
                m.d.sync += self.o.payload[i].eq(results[i])
        out_busy = Signal()                        # the next job waits for the output pass
        m.d.comb += out_busy.eq(Cat(outputting, self.o.valid, *out_valids).any())

        # ---- control: the job, the three input passes, the reciprocal, the output pass ----
        out_beat = Signal(range(hb))
        m.d.comb += out_addr.eq(out_beat)
        with m.FSM() as fsm:
            m.d.comb += job_active.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(~out_busy)
                with m.If(self.job.valid & self.job.ready):
                    n = self._job_queries()
                    m.d.sync += [keys_m1.eq(self.job.payload.keys - 1), active.eq(n),
                                 key.eq(0), beat.eq(0), row.eq(0)]
                    for t in range(tile):
                        m.d.sync += limits[t].eq(self.job.payload.keys - n + t)
                    m.next = "QUERY"
            with m.State("QUERY"):
                m.d.comb += self.q.ready.eq(1)
                with m.If(self.q.valid):
                    def row_done_q():
                        m.d.sync += row.eq(Mux(last_row, 0, row + 1))
                        with m.If(last_row):
                            m.next = "KEYS"
                    step_beat(row_done_q)
            with m.State("KEYS"):
                m.d.comb += self.k.ready.eq(1)
                with m.If(self.k.valid):
                    def key_done():
                        m.d.sync += key.eq(Mux(last_key, 0, key + 1))
                        with m.If(last_key):
                            m.next = "VALUES"
                    step_beat(key_done)
            with m.State("VALUES"):
                m.d.comb += self.v.ready.eq(1)
                with m.If(self.v.valid):
                    def value_done():
                        m.d.sync += key.eq(key + 1)
                        with m.If(last_key):
                            m.next = "TAIL"
                    step_beat(value_done)
            with m.State("TAIL"):
                # every query's reciprocal starts and finishes together (fixed latency)
                with m.If(recips[0].o.valid):
                    for t, recip in enumerate(recips):
                        m.d.comb += recip.o.ready.eq(1)
                        m.d.sync += [inv_m[t].eq(recip.o.payload.m),
                                     inv_s[t].eq(recip.o.payload.e - 14)]
                    m.d.sync += [outputting.eq(1), out_row.eq(0), out_beat.eq(0)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                with m.If(advance):
                    m.d.sync += out_beat.eq(Mux(out_beat == hb - 1, 0, out_beat + 1))
                    with m.If(out_beat == hb - 1):
                        m.d.sync += out_row.eq(out_row + 1)
                        with m.If(out_row == active - 1):
                            m.d.sync += outputting.eq(0)
                            m.next = "IDLE"
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
        """Stall-free cycles for one job of S = ``keys`` keys: ``2*B + 2*S*B + tail`` with
        ``B = head_dim / lanes``: the job (1), the query (B), keys and values (2*S*B),
        ``tail`` to the first output beat, the other output beats (B - 1)."""
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
        ``2*n*B + 2*S*B + tail`` with ``B = head_dim / lanes`` (see ``DecodeUnit.cycles``)."""
        return self._cycles(queries, keys)
