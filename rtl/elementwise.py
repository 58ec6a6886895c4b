# SPDX-License-Identifier: BSD-3-Clause
"""Elementwise stage of the streaming dataflow, bit-exact to ``golden.ops``.

``RMSNorm``
    Two passes over a token (``golden.ops.rmsnorm``): pass 1 buffers the token and sums the
    exact squares; then, once per token, an even normalizing shift (a leading-one detector),
    a sequential ``Divider`` (floor mean over H), ``Isqrt`` and ``RatioScale`` (the Scale of
    1/rms); pass 2 reads the buffer back with one ``gamma`` beat per beat and emits
    ``sat32(round(sat40(round(x*gamma/2^8)) * inv / 2^8))``.
``RoPE``
    Rotates one head after another (``golden.ops.rope``, HF ``rotate_half`` pairing: element i
    with i + head_dim/2). Input arrives in natural order, so the first half is buffered;
    while the second half streams in, each beat meets its partner and its ``table`` beat
    (cos/sin of the position), ``y1`` goes out and ``y2`` replaces ``x1`` in the buffer, then
    the buffered ``y2`` half drains.
``Pointwise``
    Stateless pipeline with a per-beat ``PointwiseOp``: residual add
    (``golden.ops.residual_add``), ReLU² gate (``relu2_gate``) and SiLU gate (``silu_gate``;
    the sigmoid is ``exp_neg`` from the ROMs and a 17-row divider per lane, one row a stage),
    every operation ``Pointwise.LATENCY`` cycles long (issue #12).

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

    MEAN_WIDTH = 47    # quotient bits of the mean division (the shifted sum is below 2**45)
    SQUARE_WIDTH = 63  # an exact square of an int32 is at most 2**62

    def __init__(self, *, lanes: int = 4, max_h: int = 4096, eps: int = 1):
        self.lanes = arith.check_positive("lanes", lanes)
        self.max_h = arith.check_positive("max_h", max_h)
        if max_h % lanes:
            raise ValueError(f"max_h={max_h} must be a multiple of lanes={lanes}")
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
    def setup_cycles(self) -> int:
        """Cycles between a token's last input beat and its first ``gamma`` beat, plus one:
        the mean division, the square root and the reciprocal, one after the other."""
        return (1 + (self.MEAN_WIDTH + 1) + (32 + 1)
                + (arith.RatioScale.QUOTIENT_WIDTH + 1))

    def cycles(self, tokens: int, h: int) -> int:
        """Stall-free cycles for ``tokens`` tokens of ``h`` elements each:
        ``tokens * (2 * h / lanes + 102) + 1``, 102 being ``setup_cycles`` (1 + 48 + 33 + 20)."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("h", h)
        if h > self.max_h or h % self.lanes:
            raise ValueError(f"h={h} must be a multiple of lanes={self.lanes} and at most "
                             f"max_h={self.max_h}")
        return tokens * (2 * (h // self.lanes) + self.setup_cycles) + 1

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        m.submodules.buffer = buffer = memory.Memory(shape=_lanes(lanes), depth=self.depth,
                                                     init=[])
        write = buffer.write_port()
        read = buffer.read_port(domain="comb")
        m.submodules.mean = mean = arith.Divider(num_width=ops.MEAN_SQUARE_BITS,
                                                 den_width=self.max_h.bit_length(),
                                                 quotient_width=self.MEAN_WIDTH)
        m.submodules.sqrt = sqrt = arith.Isqrt(width=64)
        m.submodules.recip = recip = arith.RatioScale(num_width=17, den_width=32)

        count = Signal(range(self.depth + 1))
        index = Signal(range(self.depth + 1))
        total = Signal(self.sum_width)
        start = Signal()                           # the mean division has yet to accept
        reducing = Signal()                        # between pass 1 and pass 2
        emitting = Signal()
        inv_m = Signal(16)
        inv_e = Signal(signed(8))
        shift = Signal(range(self.sum_width + 2))   # even normalizing shift of the sum
        held_shift = Signal(range(self.sum_width + 2))

        # pass 1
        squares = []
        for i in range(lanes):
            x = self.x.payload.x[i]
            product = arith.wire(m, unsigned(63), x * x, name=f"sq{i}")
            squares.append(product)
        m.d.comb += [
            self.x.ready.eq(~emitting & ~reducing),
            write.addr.eq(count),
            write.data.eq(self.x.payload.x),
            write.en.eq(self.x.valid & self.x.ready),
        ]
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [count.eq(count + 1), total.eq(total + sum(squares))]
            with m.If(self.x.payload.last):
                m.d.sync += [start.eq(1), reducing.eq(1)]

        # once per token: s = even shift bringing the sum below 2**45, floor mean of the
        # shifted sum, isqrt((ms + (eps >> s)) << 16), Scale of 2**16 / rms, exponent + s/2 - 8
        length = arith.bit_length(m, total, name="sum_length")
        over = arith.wire(m, range(self.sum_width + 1),
                          Mux(length > ops.MEAN_SQUARE_BITS, length - ops.MEAN_SQUARE_BITS, 0),
                          name="sum_over")
        m.d.comb += shift.eq(((over + 1) >> 1) << 1)
        eps = Const(self.eps, 33)
        m.d.comb += [
            mean.i.valid.eq(start),
            mean.i.payload.num.eq(total >> shift),
            mean.i.payload.den.eq(count * lanes),
            sqrt.i.valid.eq(mean.o.valid),
            mean.o.ready.eq(sqrt.i.ready),
            sqrt.i.payload.eq((mean.o.payload.quotient + (eps >> held_shift)) << fixed.FRAC),
            recip.i.valid.eq(sqrt.o.valid),
            sqrt.o.ready.eq(recip.i.ready),
            recip.i.payload.num.eq(fixed.ONE),
            recip.i.payload.den.eq(sqrt.o.payload),
            recip.o.ready.eq(1),
        ]
        with m.If(mean.i.valid & mean.i.ready):
            m.d.sync += [start.eq(0), total.eq(0), held_shift.eq(shift)]
        with m.If(recip.o.valid):
            m.d.sync += [inv_m.eq(recip.o.payload.m),
                         inv_e.eq(recip.o.payload.e + (held_shift >> 1) - 8),
                         reducing.eq(0), emitting.eq(1), index.eq(0)]

        # pass 2
        out_free = ~self.y.valid | self.y.ready
        m.d.comb += [read.addr.eq(index), self.gamma.ready.eq(emitting & out_free)]
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        with m.If(self.gamma.valid & self.gamma.ready):
            m.d.sync += [self.y.valid.eq(1), self.y.payload.last.eq(index == count - 1),
                         index.eq(index + 1)]
            with m.If(index == count - 1):
                m.d.sync += [emitting.eq(0), count.eq(0)]
        extra = ops.NORM_PRODUCT_FRAC - fixed.FRAC
        limit = 1 << (31 + extra)
        for i in range(lanes):
            # p = sat40(round(x * gamma / 2^8)), Q24 (golden.ops.NORM_PRODUCT_FRAC)
            product = arith.wire(m, signed(64), read.data[i] * self.gamma.payload[i],
                                 name=f"xg{i}")
            rounded = arith.round_shift(m, product, fixed.FRAC - extra, name=f"xg_r{i}")
            scaled = Signal(signed(40), name=f"p{i}")
            with m.If(rounded > limit - 1):
                m.d.comb += scaled.eq(limit - 1)
            with m.Elif(rounded < -limit):
                m.d.comb += scaled.eq(-limit)
            with m.Else():
                m.d.comb += scaled.eq(rounded)
            value = arith.scale_sat32(m, arith.wire(m, signed(57), scaled * inv_m),
                                      inv_e + extra, name=f"y{i}")
            with m.If(self.gamma.valid & self.gamma.ready):
                m.d.sync += self.y.payload.y[i].eq(value)
        return m


def rope_table_layout(lanes: int) -> data.StructLayout:
    """One beat of RoPE table: ``lanes`` Q16 cos and sin values (``golden.ops.rope_tables``)."""
    return data.StructLayout({"cos": data.ArrayLayout(signed(18), lanes),
                              "sin": data.ArrayLayout(signed(18), lanes)})


class RoPE(wiring.Component):
    """Rotary position embedding, one head (``head_dim`` elements) after another.

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

    def cycles(self, heads: int) -> int:
        """Stall-free cycles for ``heads`` consecutive heads: ``3 * heads * head_dim / (2 *
        lanes) + 1`` (three half-head phases each: first half in, second half in, drain)."""
        arith.check_positive("heads", heads)
        return heads * 3 * self.half_beats + 1

    def elaborate(self, platform):
        m = Module()
        lanes, hb = self.lanes, self.half_beats
        m.submodules.buffer = buffer = memory.Memory(shape=_lanes(lanes), depth=hb, init=[])
        write = buffer.write_port()
        read = buffer.read_port(domain="comb")
        phase = Signal(range(3))       # 0: first half in, 1: second half in, 2: drain y2
        index = Signal(range(hb))
        last = index == hb - 1
        out_free = ~self.y.valid | self.y.ready
        pair = Signal()                # second-half beat and its table beat both here
        m.d.comb += [
            read.addr.eq(index),
            write.addr.eq(index),
            pair.eq((phase == 1) & self.x.valid & self.table.valid & out_free),
            self.x.ready.eq((phase == 0) | pair),
            self.table.ready.eq(pair),
        ]
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        advance = Signal()
        with m.Switch(phase):
            with m.Case(0):
                m.d.comb += [advance.eq(self.x.valid), write.data.eq(self.x.payload),
                             write.en.eq(self.x.valid)]
            with m.Case(1):
                m.d.comb += [advance.eq(pair), write.en.eq(pair)]
                with m.If(pair):
                    m.d.sync += self.y.valid.eq(1)
                for i in range(lanes):
                    x1, x2 = read.data[i], self.x.payload[i]
                    cos, sin = self.table.payload.cos[i], self.table.payload.sin[i]
                    y1 = arith.wire(m, signed(52), x1 * cos - x2 * sin, name=f"y1_{i}")
                    y2 = arith.wire(m, signed(52), x2 * cos + x1 * sin, name=f"y2_{i}")
                    y1 = arith.sat32(m, arith.round_shift(m, y1, fixed.FRAC, name=f"r1_{i}"),
                                     name=f"s1_{i}")
                    y2 = arith.sat32(m, arith.round_shift(m, y2, fixed.FRAC, name=f"r2_{i}"),
                                     name=f"s2_{i}")
                    m.d.comb += write.data[i].eq(y2)
                    with m.If(pair):
                        m.d.sync += self.y.payload[i].eq(y1)
            with m.Case(2):
                m.d.comb += advance.eq(out_free)
                with m.If(out_free):
                    m.d.sync += [self.y.valid.eq(1), self.y.payload.eq(read.data)]
        with m.If(advance):
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
_LOG2E_LO = fixed.LOG2E_Q30 & 0x1FFFF
_LOG2E_HI = fixed.LOG2E_Q30 >> 17
#: ``exp_neg`` (Q16) is 0 from -12.0 down (the shift is at least 18): ``-|a|`` is clamped to
#: -16.0, 21 bits
_EXP_INPUT_BITS = 21
#: the sigmoid's quotient bits (at most 2**16)
_SIGMOID_BITS = 17


def _exp_neg16(st, name, x):
    """``golden.fixed.exp_neg(x)`` (Q16) of ``x`` in [-2**20, 0] over ``EXP_STAGES`` = 10
    stages: the two products with log2(e), the rounding constant, the two halves of their
    sum, the ROMs, the step product, its rounding, the mantissa, the shift, the rounding."""
    m = st.m
    e_lo = st(f"{name}_plo", None, x * _LOG2E_LO, reset_less=True)
    e_hi = st(f"{name}_phi", None, x * _LOG2E_HI, reset_less=True)
    e_lo = st(f"{name}_round", None, e_lo + (1 << 29), reset_less=True)
    e_hi = st(f"{name}_phi2", None, e_hi, reset_less=True)
    # t = (x * log2e + 2**29) >> 30 = ((A >> 17) + x * hi) >> 13, A = x * lo + 2**29
    tq = pipeline.split_add(st, f"{name}_t", e_lo >> 17, e_hi) >> 13
    minus_whole = arith.wire(m, 8, -tq[16:].as_signed(), name=f"{name}_minus_whole")
    base = st(f"{name}_base", 17, Array(Const(v, 17) for v in _EXP_BASE)[tq[8:16]],
              reset_less=True)
    step = st(f"{name}_step", 9, Array(Const(v, 9) for v in _EXP_STEP)[tq[8:16]],
              reset_less=True)
    frac_lo = st(f"{name}_lo", 8, tq[:8], reset_less=True)
    amount = st(f"{name}_amount", range(19), Mux(minus_whole > 18, 18, minus_whole),
                reset_less=True)
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


EXP_STAGES = 10


class Pointwise(wiring.Component):
    """Fused stateless elementwise unit: residual add, ReLU² gate, SiLU gate.

    Pipelined (issue #12) so that no register-to-register path has more than one carry chain
    of about 32 bits or a small product; the pipeline stalls as a whole while its output
    waits, and every operation takes ``latency`` cycles (the SiLU gate's; the others are
    delayed to it), so the op may change from beat to beat:

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

    #: cycles from accepting a beat to its output beat: the input register, the clamp,
    #: ``EXP_STAGES``, the division's operands, ``_SIGMOID_BITS`` divider rows, two products
    #: (``PRODUCT_STAGES`` each), the output register
    LATENCY = 1 + 1 + EXP_STAGES + 1 + _SIGMOID_BITS + 2 * PRODUCT_STAGES + 1

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
        return self.LATENCY

    def cycles(self, beats: int) -> int:
        """Stall-free cycles for ``beats`` consecutive beats: ``beats + latency``."""
        arith.check_positive("beats", beats)
        return beats + self.LATENCY

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        st = pipeline.Stages(m, enable=advance)
        accept = self.i.valid & self.i.ready
        last = self.LATENCY - 1                    # the stage of the results, before o
        valid = st.delay("valid", accept, last)
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
            results = {case: st.delay(f"{case.name.lower()}{i}_late", value, last - stage,
                                      reset_less=True)
                       for case, (value, stage) in results.items()}
            with m.If(advance):
                with m.Switch(op):
                    for case, value in results.items():
                        with m.Case(case):
                            m.d.sync += self.o.payload[i].eq(value)
        return m
