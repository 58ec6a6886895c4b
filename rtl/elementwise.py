# SPDX-License-Identifier: BSD-3-Clause
"""Elementwise stage of the streaming dataflow, bit-exact to ``golden.ops``.

``RMSNorm``
    Two passes over a token (``golden.ops.rmsnorm``): pass 1 buffers the token and sums the
    exact squares; then, once per token, an even normalizing shift (a leading-zero
    normalization), a sequential divider (floor mean over H), a square root and a
    reciprocal (the Scale of 1/rms); pass 2 reads the buffer back with one ``gamma`` beat per
    beat and emits ``sat32(round(sat40(round(x*gamma/2^8)) * inv / 2^8))``.

All four are pipelined (issue #12): no register-to-register path has more than one carry
chain of about 32 bits or a small product (``pipeline``'s split and chunked adds), the
buffers are read synchronously, and each unit's timing (``cycles``, ``latency``) is exact.
``RoPE``
    Rotates one head after another (``golden.ops.rope``, HF ``rotate_half`` pairing: element i
    with i + head_dim/2). Input arrives in natural order, so the first half is buffered;
    while the second half streams in, each beat meets its partner and its ``table`` beat
    (cos/sin of the position), ``y1`` goes out and ``y2`` into a second buffer, which drains
    once the rotation pipeline is empty.
``Pointwise``
    Stateless pipeline with a per-beat ``PointwiseOp``: residual add
    (``golden.ops.residual_add``), ReLU² gate (``relu2_gate``) and SiLU gate (``silu_gate``;
    the sigmoid is ``exp_neg`` from the ROMs and a 17-row divider per lane, one row a stage),
    every built operation as long as the longest (``Pointwise.latency``: 47 cycles with the
    SiLU gate, 17 with the residual add and the ReLU² gate alone; issue #12).

All dataflow is ``lanes`` int32 Q16 elements per beat. Stall-free timing (``cycles``) counts the
cycles from the one accepting a job's first input beat to the one accepting its last output
beat, both included.
"""



from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed, ops
from . import arith, pipeline
from .quant import token_layout

__all__ = ["PointwiseOp", "pointwise_layout", "RMSNorm", "RoPE", "Pointwise"]


def _ceil_div(a, b):
    return -(-a // b)


def _lanes(lanes):
    return data.ArrayLayout(signed(32), lanes)


def _product_q16(m, a, b, name):
    """``sat32(round(a * b / 2^16))``."""
    product = arith.wire(m, signed(len(a) + len(b) + 1), a * b, name=f"{name}_p")
    return arith.sat32(m, arith.round_shift(m, product, fixed.FRAC, name=f"{name}_r"), name=name)


class RMSNorm(wiring.Component):
    """RMSNorm over one token at a time, exactly ``golden.ops.rmsnorm``.

    Pipelined (issue #12): pass 1 squares each element in 16-bit halves (``x = xh * 2**16 +
    xl``: ``xh**2``, ``xh * xl`` and ``xl**2``, summed over the lanes one tree level a stage
    and over the token in accumulators of two chunks, the high one a stage later); once per
    token, ``S = sum xl**2 + (sum xh xl) << 17 + (sum xh**2) << 32`` in 24-bit chunks
    (``pipeline.chunk_add``), the leading-zero normalization of S (one shift a stage), the even
    shift and ``S >> shift``, ``pipeline.LongDivider`` for the mean, the epsilon's add in
    halves, ``pipeline.Isqrt`` and ``pipeline.Reciprocal``; pass 2 reads the buffer back
    (synchronously: block RAM where deep enough) and computes ``x * gamma`` in 16-bit halves,
    its rounding and saturation to 40 bits, the product with 1/rms and the rounding shift,
    one step a stage, stalling as a whole while its output waits.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    max_h : int
        Longest token (elements); the token buffer holds ``max_h // lanes`` beats.
        Each token's length H must be a multiple of ``lanes`` (H is the divisor of the mean).
    eps : int
        Q32 epsilon (``golden.ops.rms_eps``), between 1 and 2**32.

    Attributes
    ----------
    x : In(stream.Signature(token_layout(signed(32), lanes, "x")))
        Q16 inputs, ``last`` on each token's final beat.
    gamma : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        Q16 norm weights, H / lanes beats per token, consumed during pass 2 (one per output beat).
    y : Out(stream.Signature(token_layout(signed(32), lanes, "y")))
        Q16 outputs, same beat structure as ``x``.
    """

    SQUARE_WIDTH = 63  # an exact square of an int32 is at most 2**62
    #: the normalization of the sum of squares, one shift a stage (the sum is below 2**128)
    NORMALIZE_STEPS = (64, 32, 16, 8, 4, 2, 1)
    #: the radicand width of the square root (the mean square, below 2**46, times 2**16)
    ISQRT_WIDTH = 64
    #: pass 2, from a gamma beat's handshake (its buffer read) to the output register: the
    #: read, the partial products, the rounded low product and the cross sum's two halves,
    #: the sum's two halves, the high part, the 40-bit saturation, the three products with
    #: 1/rms, their two sums (two halves each), the coarse and fine shifts, the rounding, the
    #: saturation
    LATENCY = 17
    #: stages of the two adds that make S: with b = ``bit_length(max_h)`` the class sums
    #: have b + 33 (``xl**2``), b + 32 (``xh xl``) and b + 31 (``xh**2``) bits, the two sums
    #: b + 50 and b + 64, so 22 and 21 bits a stage up to ``max_h`` = 65535
    SUM_STAGES = (3, 4)

    def __init__(self, *, lanes: int = 4, max_h: int = 4096, eps: int = 1):
        self.lanes = arith.check_positive("lanes", lanes)
        self.max_h = arith.check_positive("max_h", max_h)
        if max_h % lanes:
            raise ValueError(f"max_h={max_h} must be a multiple of lanes={lanes}")
        if max_h >= 1 << 16:
            raise ValueError(f"max_h={max_h} must be below 65536")
        arith.check_positive("eps", eps)
        if eps > 1 << 32:
            raise ValueError(f"eps must be at most 2**32 (1.0 in Q32), got {eps}")
        self.eps = eps
        self.depth = max_h // lanes
        self.sum_width = self.SQUARE_WIDTH + max_h.bit_length()
        super().__init__({
            "x": In(stream.Signature(token_layout(signed(32), lanes, "x"))),
            "gamma": In(stream.Signature(_lanes(lanes))),
            "y": Out(stream.Signature(token_layout(signed(32), lanes, "y"))),
        })

    @property
    def tree_stages(self) -> int:
        """Stages of the pass-1 sums over the lanes: ``ceil(log2(lanes))``, at least one."""
        return max(1, (self.lanes - 1).bit_length())

    @property
    def setup_cycles(self) -> int:
        """Cycles from accepting a token's last input beat to its first ``gamma`` beat (when
        that is waiting): the input register, the products, the lane tree, the two accumulator
        chunks, the two adds of S, the normalization, the shift, the mean (``LongDivider``)
        and its register, the epsilon's add, the square root, the reciprocal, the step into
        pass 2."""
        return (1 + 1 + self.tree_stages + 2 + sum(self.SUM_STAGES)
                + len(self.NORMALIZE_STEPS) + 1 + (ops.MEAN_SQUARE_BITS + 1) + 1 + 2
                + (self.ISQRT_WIDTH + 1)
                + pipeline.Reciprocal.LATENCY + 1)

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``gamma`` beat to its output beat (stall-free)."""
        return self.LATENCY

    def cycles(self, tokens: int, h: int) -> int:
        """Stall-free cycles for ``tokens`` tokens of ``h`` elements each (B = ``h / lanes``
        beats): ``tokens * (2 B + setup_cycles - 1) + latency``: pass 1, the setup, pass 2
        (the next token's first beat follows its last gamma beat), the last beat's latency."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("h", h)
        if h > self.max_h or h % self.lanes:
            raise ValueError(f"h={h} must be a multiple of lanes={self.lanes} and at most "
                             f"max_h={self.max_h}")
        return tokens * (2 * (h // self.lanes) + self.setup_cycles - 1) + self.latency

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        # Pass 1 and the reduction hold a token from its first beat until its last pass-2
        # beat (``count`` is non-zero all that time): their stages load only then.
        active = Signal()
        st = pipeline.Stages(m, enable=active)
        m.submodules.buffer = buffer = memory.Memory(shape=_lanes(lanes), depth=self.depth,
                                                     init=[])
        write = buffer.write_port()
        read = buffer.read_port()                  # synchronous: block RAM where deep enough
        hw = self.max_h.bit_length()
        m.submodules.mean = mean = pipeline.LongDivider(num_width=ops.MEAN_SQUARE_BITS,
                                                        den_width=hw)
        m.submodules.sqrt = sqrt = pipeline.Isqrt(width=self.ISQRT_WIDTH)
        m.submodules.recip = recip = pipeline.Reciprocal(num_log2=fixed.FRAC, den_width=32)

        count = Signal(range(self.depth + 1))
        index = Signal(range(self.depth + 1))
        reducing = Signal()                        # between pass 1 and pass 2
        emitting = Signal()
        inv_m = Signal(16)
        inv_s = Signal(range(64))                  # the output's right shift, minus 6
        h = Signal(hw)

        # ---- pass 1: the buffer, and the exact sum of squares in three classes ----
        accept = self.x.valid & self.x.ready
        m.d.comb += [
            self.x.ready.eq(~emitting & ~reducing),
            write.addr.eq(count),
            write.data.eq(self.x.payload.x),
            write.en.eq(accept),
        ]
        m.d.comb += active.eq(accept | (count != 0))
        with m.If(accept):
            m.d.sync += count.eq(count + 1)
            with m.If(self.x.payload.last):
                m.d.sync += reducing.eq(1)
        x1 = st("x1", _lanes(lanes), self.x.payload.x, reset_less=True)
        valid1 = st("x1_valid", 1, accept)
        first1 = st("x1_first", 1, count == 0, reset_less=True)
        last1 = st("x1_last", 1, self.x.payload.last, reset_less=True)
        classes = {"hh": [], "hl": [], "ll": []}
        for i in range(lanes):
            xl, xh = x1[i][:16], x1[i][16:].as_signed()
            classes["hh"].append(st(f"sq{i}_hh", None, xh * xh, reset_less=True))
            classes["hl"].append(st(f"sq{i}_hl", None, xh * xl, reset_less=True))
            classes["ll"].append(st(f"sq{i}_ll", None, xl * xl, reset_less=True))
        td = self.tree_stages
        delay = 1 + td                             # x1 to the accumulators
        valid = st.delay("acc_valid", valid1, delay)
        first = st.delay("acc_first", first1, delay, reset_less=True)
        last = st.delay("acc_last", last1, delay, reset_less=True)
        widths = {"hh": (self.max_h << 30).bit_length() + 1,
                  "hl": (self.max_h << 31).bit_length() + 1,
                  "ll": (self.max_h << 32).bit_length() + 1}
        sums = {}
        for name, terms in classes.items():
            for level in range(td):
                terms = ([st(f"{name}{level}_{j}", None, terms[j] + terms[j + 1],
                             reset_less=True) for j in range(0, len(terms) - 1, 2)]
                         + ([st(f"{name}{level}_odd", None, terms[-1], reset_less=True)]
                            if len(terms) % 2 else []))
            value = arith.wire(m, signed(widths[name]), terms[0], name=f"{name}_beat")
            lo = Signal(24, name=f"{name}_lo")
            hi = Signal(signed(widths[name] - 24), name=f"{name}_hi")
            low_sum = arith.wire(m, 25, Mux(first, 0, lo) + value[:24], name=f"{name}_lo_sum")
            carry = st(f"{name}_carry", 1, low_sum[24], reset_less=True)
            value_hi = st(f"{name}_vhi", signed(widths[name] - 24), value[24:].as_signed(),
                          reset_less=True)
            with m.If(valid):
                m.d.sync += lo.eq(low_sum[:24])
            # (stage registers are made outside the If: inside it they would load only then)
            hi_valid = st.delay(f"{name}_valid", valid, 1)
            hi_first = st.delay(f"{name}_first", first, 1, reset_less=True)
            with m.If(hi_valid):
                m.d.sync += hi.eq(pipeline.carry_add(Mux(hi_first, 0, hi), value_hi, carry))
            sums[name] = Cat(lo, hi).as_signed()
        # the token's sums are final once its last beat's high chunks are in
        go = st.delay("sums_done", valid & last, 2)

        # ---- once per token: S, its normalization, the even shift, S >> shift ----
        w = self.sum_width
        stages1, stages2 = self.SUM_STAGES
        first_add, n1 = pipeline.chunk_add(st, "s1", sums["ll"], sums["hl"].shift_left(17),
                                           stages=stages1)
        total, n2 = pipeline.chunk_add(st, "s2", first_add, sums["hh"].shift_left(32),
                                       stages=stages2)
        assert (n1, n2) == self.SUM_STAGES
        go = st.delay("s_done", go, stages1 + stages2)
        value = arith.wire(m, w, total, name="sum_squares")
        raw = value
        lz = Const(0, range(128))
        for step in self.NORMALIZE_STEPS:
            shifts = value[w - step:] == 0 if step < w else Const(0, 1)
            value = st(f"norm{step}", w, Mux(shifts, value << step, value), reset_less=True)
            lz = st(f"norm{step}_lz", range(128), lz + Mux(shifts, step, 0), reset_less=True)
        raw = st.delay("sum_raw", raw, len(self.NORMALIZE_STEPS), reset_less=True)
        go = st.delay("norm_done", go, len(self.NORMALIZE_STEPS))
        bits = ops.MEAN_SQUARE_BITS
        small = lz >= w - bits                     # bit_length(S) <= 45: no shift
        over = arith.wire(m, range(128), (w - bits) - lz, name="sum_over")
        shifted = Signal(bits)
        shift = Signal(range(w))                    # even
        eps_shifted = Signal(33)
        with m.If(go):
            with m.If(small):
                m.d.sync += [shifted.eq(raw[:bits]), shift.eq(0)]
            with m.Elif(over[0]):
                m.d.sync += [shifted.eq(value[w - bits + 1:]), shift.eq(over + 1)]
            with m.Else():
                m.d.sync += [shifted.eq(value[w - bits:]), shift.eq(over)]
        go = st("shift_done", 1, go)
        eps_table = Array(Const(self.eps >> (2 * k), 33) for k in range(w // 2 + 1))
        m.d.comb += eps_shifted.eq(eps_table[shift[1:]])

        # ---- the mean, + eps >> shift, the square root, the reciprocal ----
        with m.If(accept & self.x.payload.last):
            m.d.sync += h.eq((count + 1) * lanes)
        m.d.comb += [mean.i.valid.eq(go), mean.i.payload.num.eq(shifted),
                     mean.i.payload.den.eq(h), mean.o.ready.eq(1)]
        eps_late = st("eps_shifted", 33, eps_shifted, reset_less=True)
        quotient = st("mean", bits, mean.o.payload, reset_less=True)
        mean_valid = st("mean_valid", 1, mean.o.valid)
        mean_square = pipeline.split_add(st, "mean_square", quotient, eps_late)
        ms_valid = st.delay("ms_valid", mean_valid, 2)
        # the mean's register and the add's two halves
        m.d.comb += [sqrt.i.valid.eq(ms_valid),
                     sqrt.i.payload.eq(mean_square[:bits + 1] << fixed.FRAC),
                     sqrt.o.ready.eq(recip.i.ready),
                     recip.i.valid.eq(sqrt.o.valid), recip.i.payload.eq(sqrt.o.payload)]

        # ---- pass 2: x * gamma, rounded and saturated to 40 bits, times 1/rms, shifted ----
        advance = ~self.y.valid | self.y.ready
        # pass 2's stages load only while it emits or has a beat in flight
        active2 = Signal()
        so = pipeline.Stages(m, enable=advance & active2)
        take = self.gamma.valid & self.gamma.ready
        final = index == count - 1
        m.d.comb += [read.addr.eq(index), read.en.eq(advance),
                     self.gamma.ready.eq(emitting & advance)]
        with m.If(take):
            m.d.sync += index.eq(index + 1)
            with m.If(final):
                m.d.sync += [emitting.eq(0), count.eq(0)]
        valids = [so("p1_valid", 1, take)]
        lasts = [so("p1_last", 1, final, reset_less=True)]
        g1 = so("g1", _lanes(lanes), self.gamma.payload, reset_less=True)
        limit = 1 << (31 + ops.NORM_PRODUCT_FRAC - fixed.FRAC)
        results = []
        for i in range(lanes):
            x, g = read.data[i], g1[i]
            xl, xh, gl, gh = x[:16], x[16:].as_signed(), g[:16], g[16:].as_signed()
            ll = so(f"xg{i}_ll", None, xl * gl, reset_less=True)
            lh = so(f"xg{i}_lh", None, xl * gh, reset_less=True)
            hl = so(f"xg{i}_hl", None, xh * gl, reset_less=True)
            hh = so(f"xg{i}_hh", None, xh * gh, reset_less=True)
            # round(x * gamma / 2**8) = L + (cross << 8) + (hh << 24), L = (ll + 2**7) >> 8
            low = so(f"xg{i}_low", 25, (ll[7:] + 1) >> 1, reset_less=True)
            cross = pipeline.split_add(so, f"xg{i}_cross", lh, hl)
            top = hh[19:]
            hh = so(f"xg{i}_hh20", signed(20), Mux(
                (top == 0) | (top == (1 << len(top)) - 1), hh[:20].as_signed(),
                Mux(hh[-1], -(1 << 19), (1 << 19) - 1)), reset_less=True)
            low = so(f"xg{i}_low2", 25, low, reset_less=True)
            t1 = pipeline.split_add(so, f"xg{i}_t1", cross, low >> 8)
            low8 = so.delay(f"xg{i}_low8", low[:8], 2, reset_less=True)
            hh = so.delay(f"xg{i}_hh20d", hh, 3, reset_less=True)
            upper = so(f"xg{i}_upper", signed(22), (t1 >> 16) + hh, reset_less=True)
            low24 = so(f"xg{i}_low24", 24, Cat(low8, t1[:16]), reset_less=True)
            top = upper[15:]
            p = so(f"p{i}", signed(40), Mux(
                (top == 0) | (top == (1 << len(top)) - 1), Cat(low24, upper[:16]).as_signed(),
                Mux(upper[-1], -limit, limit - 1)), reset_less=True)
            mult = so.delay(f"m{i}", inv_m, 8, reset_less=True)
            # p * m in three products of at most 17 x 16 bits (one MULT18X18D each), then
            # (q1 + (q2 << 17)) in halves and q0 + (that << 17) in halves
            q0 = so(f"q{i}_0", None, p[:17] * mult, reset_less=True)
            q1 = so(f"q{i}_1", None, p[17:34] * mult, reset_less=True)
            q2 = so(f"q{i}_2", None, p[34:].as_signed() * mult, reset_less=True)
            upper = pipeline.split_add(so, f"q{i}_upper", q1, q2.shift_left(17))
            q0 = so.delay(f"q{i}_0d", q0, 2, reset_less=True)
            prod_hi = pipeline.split_add(so, f"q{i}_sum", q0.shift_right(17), upper)
            lo17 = so.delay(f"q{i}_lo17", q0[:17], 2, reset_less=True)
            prod = Cat(lo17, prod_hi).as_signed()
            shift_out = so.delay(f"s{i}", inv_s, 13, reset_less=True)
            # round_shift(prod, s) = (((prod >> 5) >> (s - 6)) + 1) >> 1, s - 6 in [0, 57]
            coarse = so(f"y{i}_coarse", None, (prod >> 5) >> Cat(Const(0, 3), shift_out[3:]),
                        reset_less=True)
            fine = so.delay(f"y{i}_s", shift_out[:3], 1, reset_less=True)
            z = so(f"y{i}_fine", None, coarse >> fine, reset_less=True)
            high = z[33:]
            in_range = so(f"y{i}_in_range", 1, (high == 0) | (high == (1 << len(high)) - 1),
                          reset_less=True)
            negative = so(f"y{i}_neg", 1, z[-1], reset_less=True)
            rounded = so(f"y{i}_rounded", signed(34), (z[:34].as_signed() + 1) >> 1,
                         reset_less=True)
            fits = (rounded[31:] == 0) | (rounded[31:] == 0b111)
            results.append(Mux(in_range & fits, rounded[:32],
                               Mux(negative, fixed.INT32_MIN, fixed.INT32_MAX)))
        for k in range(self.LATENCY - 2):
            valids.append(so(f"p{k + 2}_valid", 1, valids[-1]))
            lasts.append(so(f"p{k + 2}_last", 1, lasts[-1], reset_less=True))
        m.d.comb += active2.eq(emitting | Cat(*valids).any())
        with m.If(advance):
            m.d.sync += [self.y.valid.eq(valids[-1]), self.y.payload.last.eq(lasts[-1])]
            for i in range(lanes):
                m.d.sync += self.y.payload.y[i].eq(results[i])

        # a token's 1/rms replaces the previous one's once none of that one is in pass 2
        busy = Cat(*valids, self.y.valid).any()
        m.d.comb += recip.o.ready.eq(~busy)
        with m.If(recip.o.valid & ~busy):
            m.d.sync += [inv_m.eq(recip.o.payload.m),
                         inv_s.eq(recip.o.payload.e + (shift >> 1) - 6),
                         reducing.eq(0), emitting.eq(1), index.eq(0)]
        return m


def rope_table_layout(lanes: int) -> data.StructLayout:
    """One beat of RoPE table: ``lanes`` Q16 cos and sin values (``golden.ops.rope_tables``)."""
    return data.StructLayout({"cos": data.ArrayLayout(signed(18), lanes),
                              "sin": data.ArrayLayout(signed(18), lanes)})


class RoPE(wiring.Component):
    """Rotary position embedding, one head (``head_dim`` elements) after another.

    Pipelined (issue #12): the first half is buffered; each second-half beat meets its
    partner (a synchronous buffer read) and its ``table`` beat, and the rotation goes through
    the products (32-bit elements in 16-bit halves times the 18-bit cos and sin), the two
    halves of the low and high sums, the rounding of the low sum, the two halves of the total,
    the saturation: ``y1`` goes out and ``y2`` into a second buffer, which drains once the
    last ``y1`` is out. The pipeline stalls as a whole while its output waits.

    Parameters
    ----------
    lanes : int
        Elements per beat; must divide ``head_dim // 2``.
    head_dim : int
        Even head dimension.

    Attributes
    ----------
    x : In(stream.Signature(ArrayLayout(signed(32), lanes)))
        ``head_dim / lanes`` beats per head, elements in natural order.
    table : In(stream.Signature(rope_table_layout(lanes)))
        ``head_dim / 2 / lanes`` beats per head: row ``position`` of the cos and sin tables,
        consumed while the head's second half streams in.
    y : Out(stream.Signature(ArrayLayout(signed(32), lanes)))
        The rotated head, natural order.
    """

    #: cycles from a second-half beat's handshake (with its table beat) to its ``y1`` beat:
    #: the read, the products, two halves of the sums, the rounding, two halves of the
    #: total, the saturation, the output register
    LATENCY = 9

    def __init__(self, *, lanes: int = 4, head_dim: int = 64):
        self.lanes = arith.check_positive("lanes", lanes)
        arith.check_positive("head_dim", head_dim)
        if head_dim % (2 * lanes):
            raise ValueError(f"head_dim={head_dim} must be a multiple of 2*lanes={2 * lanes}")
        self.head_dim = head_dim
        self.half_beats = head_dim // 2 // lanes
        super().__init__({
            "x": In(stream.Signature(_lanes(lanes))),
            "table": In(stream.Signature(rope_table_layout(lanes))),
            "y": Out(stream.Signature(_lanes(lanes))),
        })

    @property
    def latency(self) -> int:
        return self.LATENCY

    def cycles(self, heads: int) -> int:
        """Stall-free cycles for ``heads`` consecutive heads: ``heads * (3 * head_dim / (2 *
        lanes) + latency - 1) + 2``: per head the first half in, the second half in, the
        pipeline's drain (``latency - 1``), the buffered ``y2`` half out; the last beat's
        read and output register."""
        arith.check_positive("heads", heads)
        return heads * (3 * self.half_beats + self.LATENCY - 1) + 2

    def elaborate(self, platform):
        m = Module()
        lanes, hb = self.lanes, self.half_beats
        m.submodules.x1_buffer = x1_buffer = memory.Memory(shape=_lanes(lanes), depth=hb,
                                                           init=[])
        m.submodules.y2_buffer = y2_buffer = memory.Memory(shape=_lanes(lanes), depth=hb,
                                                           init=[])
        x1_write, x1_read = x1_buffer.write_port(), x1_buffer.read_port()
        y2_write, y2_read = y2_buffer.write_port(), y2_buffer.read_port()
        phase = Signal(range(3))       # 0: first half in, 1: second half in, 2: drain y2
        index = Signal(range(hb))
        last = index == hb - 1
        advance = ~self.y.valid | self.y.ready
        # the stages load only while a beat (or the drain) is in flight: none while idle
        active = Signal()
        so = pipeline.Stages(m, enable=advance & active)
        pair = Signal()                # second-half beat and its table beat both here
        drain = Signal()               # a y2 read issued
        m.d.comb += [
            pair.eq((phase == 1) & self.x.valid & self.table.valid & advance),
            self.x.ready.eq((phase == 0) | pair),
            self.table.ready.eq(pair),
            x1_write.addr.eq(index), x1_write.data.eq(self.x.payload),
            x1_write.en.eq((phase == 0) & self.x.valid),
            x1_read.addr.eq(index), x1_read.en.eq(advance),
            y2_read.addr.eq(index), y2_read.en.eq(advance),
        ]
        valids = [so("r1_valid", 1, pair)]
        index1 = so("r1_index", None, index, reset_less=True)
        x2 = so("r1_x2", _lanes(lanes), self.x.payload, reset_less=True)
        table = so("r1_table", rope_table_layout(lanes), self.table.payload, reset_less=True)
        y1s, y2s = [], []
        for i in range(lanes):
            x1 = x1_read.data[i]
            cos, sin = table.cos[i], table.sin[i]
            parts = {}
            for name, x in (("a", x1), ("b", x2[i])):
                lo, hi = x[:16], x[16:].as_signed()
                for t_name, t in (("c", cos), ("s", sin)):
                    parts[name + t_name] = (
                        so(f"rot{i}_{name}{t_name}_lo", None, lo * t, reset_less=True),
                        so(f"rot{i}_{name}{t_name}_hi", None, hi * t, reset_less=True))
            results = []
            # y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin, each as low + (high << 16)
            for out, (p, q, sub) in (("y1", ("ac", "bs", True)), ("y2", ("bc", "as", False))):
                sums = []
                for h in range(2):
                    a, b = parts[p][h], parts[q][h]
                    sums.append(pipeline.split_add(so, f"rot{i}_{out}_{h}", a,
                                                   ~b if sub else b, carry_in=int(sub)))
                low, high = sums
                # round(total / 2**16) = ((low + 2**15) >> 16) + high
                rounded = so(f"rot{i}_{out}_round", signed(len(low) - 15),
                             (low[15:].as_signed() + 1) >> 1, reset_less=True)
                high = so(f"rot{i}_{out}_high", None, high, reset_less=True)
                total = pipeline.split_add(so, f"rot{i}_{out}_sum", rounded, high)
                top = total[31:]
                results.append(so(f"rot{i}_{out}", signed(32), Mux(
                    (top == 0) | (top == (1 << len(top)) - 1), total[:32],
                    Mux(total[-1], fixed.INT32_MIN, fixed.INT32_MAX)), reset_less=True))
            y1s.append(results[0])
            y2s.append(results[1])
        for k in range(self.LATENCY - 2):
            valids.append(so(f"r{k + 2}_valid", 1, valids[-1]))
        index_out = so.delay("r_index", index1, self.LATENCY - 2, reset_less=True)
        drained = so("drain_valid", 1, drain)
        m.d.comb += active.eq(Cat(pair, drain, drained, *valids).any())
        m.d.comb += [y2_write.addr.eq(index_out), y2_write.en.eq(valids[-1] & advance)]
        for i in range(lanes):
            m.d.comb += y2_write.data[i].eq(y2s[i])
        with m.If(advance):
            m.d.sync += self.y.valid.eq(valids[-1] | drained)
            with m.If(drained):
                m.d.sync += self.y.payload.eq(y2_read.data)
            with m.Else():
                for i in range(lanes):
                    m.d.sync += self.y.payload[i].eq(y1s[i])
        # the y2 half drains once no y1 beat is left before the output register
        empty = ~Cat(*valids).any()
        step = Signal()
        with m.Switch(phase):
            with m.Case(0):
                m.d.comb += step.eq(self.x.valid)
            with m.Case(1):
                m.d.comb += step.eq(pair)
            with m.Case(2):
                m.d.comb += [drain.eq(empty & advance), step.eq(empty & advance)]
        with m.If(step):
            m.d.sync += index.eq(Mux(last, 0, index + 1))
            with m.If(last):
                m.d.sync += phase.eq(Mux(phase == 2, 0, phase + 1))
        return m


class PointwiseOp(enum.Enum, shape=2):
    """Operation of one ``Pointwise`` beat (``a``, ``b`` are its two operands)."""
    #: ``sat32(a + b)``: residual add
    ADD = 0
    #: ``relu(a)^2 * b``: ReLU² gate (a = gate, b = up)
    RELU2_GATE = 1
    #: ``silu(a) * b``: SiLU gate (a = gate, b = up)
    SILU_GATE = 2


def pointwise_layout(lanes: int) -> data.StructLayout:
    """One ``Pointwise`` input beat: ``op`` and ``lanes`` pairs of Q16 operands."""
    return data.StructLayout({"op": PointwiseOp, "a": _lanes(lanes), "b": _lanes(lanes)})


#: stages of ``_q16_product``
PRODUCT_STAGES = 7


def _signed(m, x, name):
    """``x`` as a signed value (one bit wider if it is unsigned)."""
    if x.shape().signed:
        return x
    return arith.wire(m, signed(len(x) + 1), x, name=name)


def _q16_product(st, name, x, y):
    """``sat32(round(x * y / 2^16))`` for ``x``, ``y`` of at most 33 bits, over
    ``PRODUCT_STAGES`` stages: four partial products of 16-bit halves; the low product's
    rounded high half and the two cross products (a split add); their sum (a split add); plus
    the high product (clamped to 20 bits first: beyond them the result saturates either way,
    with its sign); the saturation."""
    m = st.m
    x, y = _signed(m, x, f"{name}_xs"), _signed(m, y, f"{name}_ys")
    xl, xh = x[:16], x[16:].as_signed()
    yl, yh = y[:16], y[16:].as_signed()
    ll = st(f"{name}_ll", None, xl * yl, reset_less=True)
    lh = st(f"{name}_lh", None, xl * yh, reset_less=True)
    hl = st(f"{name}_hl", None, xh * yl, reset_less=True)
    hh = st(f"{name}_hh", None, xh * yh, reset_less=True)
    # (ll + 2**15) >> 16 as an increment of ll's top 17 bits
    low = st(f"{name}_low", 17, (ll[15:] + 1) >> 1, reset_less=True)
    cross = pipeline.split_add(st, f"{name}_cross", lh, hl)
    low = st(f"{name}_low2", 17, low, reset_less=True)
    top = hh[19:]
    hh = st(f"{name}_hh20", signed(20), Mux(
        (top == 0) | (top == (1 << len(top)) - 1), hh[:20].as_signed(),
        Mux(hh[-1], -(1 << 19), (1 << 19) - 1)), reset_less=True)
    hh = st.delay(f"{name}_hh20", hh, 3, reset_less=True)
    s1 = pipeline.split_add(st, f"{name}_s1", cross, low)
    upper = st(f"{name}_upper", signed(22), (s1 >> 16) + hh, reset_less=True)
    low16 = st(f"{name}_low16", 16, s1[:16], reset_less=True)
    top = upper[15:]
    return st(name, signed(32), Mux(
        (top == 0) | (top == (1 << len(top)) - 1), Cat(low16, upper[:16]).as_signed(),
        Mux(upper[-1], fixed.INT32_MIN, fixed.INT32_MAX)), reset_less=True)


#: ``exp_neg``'s ROMs (``EXP2_LUT`` and its steps) and log2(e) in two parts, as for attention
_EXP_BASE = [int(v) for v in fixed.EXP2_LUT[:256]]
_EXP_STEP = [int(fixed.EXP2_LUT[i + 1] - fixed.EXP2_LUT[i]) for i in range(256)]
#: ``exp_neg`` (Q16) is 0 from -12.0 down (the shift is at least 18): ``-|a|`` is clamped to
#: -16.0, 21 bits
_EXP_INPUT_BITS = 21
#: the sigmoid's quotient bits (at most 2**16)
_SIGMOID_BITS = 17


def _exp_neg16(st, name, x):
    """``golden.fixed.exp_neg(x)`` (Q16) of ``x`` in [-2**20, 0] over ``EXP_STAGES`` = 12
    stages: ``pipeline.log2e_times`` (5), the ROMs and a register after them, the step
    product, its rounding, the mantissa, the shift, the rounding."""
    m = st.m
    tq = pipeline.log2e_times(st, f"{name}_t", x)
    minus_whole = arith.wire(m, 8, -tq[16:].as_signed(), name=f"{name}_minus_whole")
    base = st(f"{name}_base", 17, Array(Const(v, 17) for v in _EXP_BASE)[tq[8:16]],
              reset_less=True)
    step = st(f"{name}_step", 9, Array(Const(v, 9) for v in _EXP_STEP)[tq[8:16]],
              reset_less=True)
    frac_lo = st(f"{name}_lo", 8, tq[:8], reset_less=True)
    amount = st(f"{name}_amount", range(19), Mux(minus_whole > 18, 18, minus_whole),
                reset_less=True)
    # a register after the ROMs: Yosys may put them in block RAM, whose output is slow
    base, step, frac_lo, amount = (st.delay(f"{name}_{n}_rom", v, 1, reset_less=True)
                                   for n, v in (("base", base), ("step", step),
                                                ("lo", frac_lo), ("amount", amount)))
    interp = st(f"{name}_interp", None, step * frac_lo, reset_less=True)
    base = st.delay(f"{name}_base_i", base, 1, reset_less=True)
    amount = st.delay(f"{name}_amount_i", amount, 1, reset_less=True)
    interp = st(f"{name}_interp_r", 10, (interp + 128) >> 8, reset_less=True)
    base = st.delay(f"{name}_base_r", base, 1, reset_less=True)
    amount = st.delay(f"{name}_amount_r", amount, 1, reset_less=True)
    mant = st(f"{name}_mant", 18, base + interp, reset_less=True)
    amount = st.delay(f"{name}_amount_m", amount, 1, reset_less=True)
    # round_shift(mant, amount) = (((mant << 1) >> amount) + 1) >> 1
    shifted = st(f"{name}_shifted", 19, Cat(Const(0, 1), mant) >> amount, reset_less=True)
    return st(name, 17, (shifted + 1) >> 1, reset_less=True)


EXP_STAGES = 12


class Pointwise(wiring.Component):
    """Fused stateless elementwise unit: residual add, ReLU² gate, SiLU gate.

    Pipelined (issue #12) so that no register-to-register path has more than one carry chain
    of about 32 bits or a small product; the pipeline stalls as a whole while its output
    waits, and every operation takes ``latency`` cycles (the longest built operation's; the
    others are delayed to it), so the op may change from beat to beat:

    - the input register;
    - ADD: the two halves of ``a + b``, the saturation;
    - ReLU² gate: ``relu(a)``, then two ``_q16_product`` (``relu^2``, ``* b``);
    - SiLU gate: ``x = -|a|`` clamped to -16.0, ``exp_neg`` (``EXP_STAGES``), the
      sigmoid's numerator and denominator, a restoring divider of one quotient bit a stage
      (``_SIGMOID_BITS`` stages, each a 20-bit compare/subtract), then two ``_q16_product``
      (``a * sigmoid``, ``* b``);
    - the output register (the op's result).

    Parameters
    ----------
    lanes : int
        Element pairs per beat.
    ops : iterable of PointwiseOp
        The operations built (default: all). A beat with an operation left out gives an
        unspecified result; a board build for one model keeps only the gate it uses (the SiLU
        gate's exponential and divider are most of this unit).

    Attributes
    ----------
    i : In(stream.Signature(pointwise_layout(lanes)))
        Operation and operands, one beat per ``lanes`` elements (the op may change per beat).
    o : Out(stream.Signature(ArrayLayout(signed(32), lanes)))
        Q16 results, ``latency`` cycles after their inputs (stall-free).
    """

    #: per operation, the stage of its result register (the input register is stage 0):
    #: ADD the two halves and the saturation; the ReLU² gate ``relu(a)`` and two products
    #: (``PRODUCT_STAGES`` each); the SiLU gate the clamp, ``EXP_STAGES``, the division's
    #: operands, ``_SIGMOID_BITS`` divider rows and two products
    RESULT_STAGE = {
        PointwiseOp.ADD: 4,
        PointwiseOp.RELU2_GATE: 2 + 2 * PRODUCT_STAGES,
        PointwiseOp.SILU_GATE: 2 + EXP_STAGES + 1 + _SIGMOID_BITS + 2 * PRODUCT_STAGES,
    }

    def __init__(self, *, lanes: int = 4, ops=tuple(PointwiseOp)):
        self.lanes = arith.check_positive("lanes", lanes)
        self.ops = frozenset(PointwiseOp(op) for op in ops)
        if not self.ops:
            raise ValueError("Pointwise needs at least one operation")
        super().__init__({
            "i": In(stream.Signature(pointwise_layout(lanes))),
            "o": Out(stream.Signature(_lanes(lanes))),
        })

    @property
    def latency(self) -> int:
        """Cycles from accepting a beat to its output beat: the longest built operation's
        result stage, then the output register."""
        return max(self.RESULT_STAGE[op] for op in self.ops) + 1

    def cycles(self, beats: int) -> int:
        """Stall-free cycles for ``beats`` consecutive beats: ``beats + latency``."""
        arith.check_positive("beats", beats)
        return beats + self.latency

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        # the stages load only while a beat is in flight (none while idle)
        active = Signal()
        st = pipeline.Stages(m, enable=advance & active)
        accept = self.i.valid & self.i.ready
        last = self.latency - 1                    # the stage of the results, before o
        valids = [accept]
        for k in range(last):
            valids.append(st(f"valid_d{k + 1}", 1, valids[-1]))
        valid = valids[-1]
        m.d.comb += active.eq(Cat(*valids).any())
        op = st.delay("op", self.i.payload.op, last, reset_less=True)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid)
        for i in range(self.lanes):
            a = st(f"a{i}", signed(32), self.i.payload.a[i], reset_less=True)
            b = st(f"b{i}", signed(32), self.i.payload.b[i], reset_less=True)
            results = {}                           # op: (result, its stage)
            if PointwiseOp.ADD in self.ops:
                total = pipeline.split_add(st, f"add{i}", a, b)
                high = total[31:]
                results[PointwiseOp.ADD] = (st(f"add{i}", signed(32), Mux(
                    (high == 0) | (high == 0b11), total[:32],
                    Mux(total[-1], fixed.INT32_MIN, fixed.INT32_MAX)), reset_less=True), 4)
            if PointwiseOp.RELU2_GATE in self.ops:
                relu = st(f"relu{i}", unsigned(31), Mux(a[31], 0, a[:31]), reset_less=True)
                relu2 = _q16_product(st, f"relu2_{i}", relu, relu)
                b_late = st.delay(f"relu2_b{i}", b, 1 + PRODUCT_STAGES, reset_less=True)
                results[PointwiseOp.RELU2_GATE] = (
                    _q16_product(st, f"relu2g{i}", relu2, b_late), 2 + 2 * PRODUCT_STAGES)
            if PointwiseOp.SILU_GATE in self.ops:
                # x = -|a| clamped to -2**20 (|a| >= 2**20 from the top bits alone)
                top = a[20:]
                big = Mux(a[31], (top != (1 << len(top)) - 1) | (a[:20] == 0), top != 0)
                x = st(f"silu{i}_x", signed(_EXP_INPUT_BITS), Mux(
                    big, -(1 << 20), Mux(a[31], a[:21].as_signed(), -a[:21].as_signed())),
                    reset_less=True)
                e = _exp_neg16(st, f"exp{i}", x)
                stage = 2 + EXP_STAGES
                negative = st.delay(f"silu{i}_neg", a[31], stage - 1, reset_less=True)
                # sigmoid = floor((2n + d) / (2d)), d = 2**16 + e, n = 2**32 (a >= 0) or
                # e << 16: N = 2n + d has no carries but e's increment when e = 2**16
                den = arith.wire(m, 18, e + (1 << 16), name=f"sig{i}_den")
                num = st(f"sig{i}_num", 34, Mux(
                    negative, Cat(den[:17], e + den[17]), Cat(den, Const(0, 15), Const(1, 1))),
                    reset_less=True)
                divisor = st(f"sig{i}_d", 19, den << 1, reset_less=True)
                stage += 1
                # long division: the remainder below the divisor, one numerator bit a row
                rest = num[_SIGMOID_BITS:]
                pending = num[:_SIGMOID_BITS]
                quotient = None
                for row in range(_SIGMOID_BITS):
                    bit = pending[-1]
                    trial = arith.wire(m, 20, Cat(bit, rest), name=f"sig{i}_r{row}_x")
                    diff = arith.wire(m, 21, trial - divisor, name=f"sig{i}_r{row}_diff")
                    take = ~diff[20]
                    q = take if quotient is None else Cat(take, quotient)
                    quotient = st(f"sig{i}_q{row}", len(q), q, reset_less=True)
                    rest = st(f"sig{i}_rest{row}", 19, Mux(take, diff[:19], trial[:19]),
                              reset_less=True)
                    if len(pending) > 1:
                        pending = st(f"sig{i}_n{row}", len(pending) - 1, pending[:-1],
                                     reset_less=True)
                    divisor = st(f"sig{i}_d{row}", 19, divisor, reset_less=True)
                stage += _SIGMOID_BITS
                a_late = st.delay(f"silu{i}_a", a, stage - 1, reset_less=True)
                silu = _q16_product(st, f"silu{i}", a_late, quotient)
                b_late = st.delay(f"silu{i}_b", b, stage + PRODUCT_STAGES - 1, reset_less=True)
                results[PointwiseOp.SILU_GATE] = (
                    _q16_product(st, f"silug{i}", silu, b_late), stage + 2 * PRODUCT_STAGES)
            assert {case: stage for case, (_, stage) in results.items()} == {
                op: self.RESULT_STAGE[op] for op in self.ops}
            results = {case: st.delay(f"{case.name.lower()}{i}_late", value, last - stage,
                                      reset_less=True)
                       for case, (value, stage) in results.items()}
            with m.If(advance):
                with m.Switch(op):
                    for case, value in results.items():
                        with m.Case(case):
                            m.d.sync += self.o.payload[i].eq(value)
        return m
