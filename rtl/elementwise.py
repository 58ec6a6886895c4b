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
    Stateless one-stage pipeline with a per-beat ``PointwiseOp``: residual add
    (``golden.ops.residual_add``), ReLU² gate (``relu2_gate``) and SiLU gate (``silu_gate``;
    the sigmoid is ``exp_neg`` from the 257-entry ROM and a 17-row array divider per lane).

All dataflow is ``lanes`` int32 Q16 elements per beat. Stall-free timing (``cycles``) counts the
cycles from the one accepting a job's first input beat to the one accepting its last output
beat, both included.
"""



from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed, ops
from . import arith
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


class Pointwise(wiring.Component):
    """Fused stateless elementwise unit: residual add, ReLU² gate, SiLU gate.

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
        Q16 results, one register stage after the inputs.
    """

    def __init__(self, *, lanes: int = 4, ops=tuple(PointwiseOp)):
        self.lanes = arith.check_positive("lanes", lanes)
        self.ops = frozenset(PointwiseOp(op) for op in ops)
        if not self.ops:
            raise ValueError("Pointwise needs at least one operation")
        super().__init__({
            "i": In(stream.Signature(pointwise_layout(lanes))),
            "o": Out(stream.Signature(_lanes(lanes))),
        })

    def cycles(self, beats: int) -> int:
        """Stall-free cycles for ``beats`` consecutive beats."""
        arith.check_positive("beats", beats)
        return beats + 1

    def elaborate(self, platform):
        m = Module()
        out_free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(out_free)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        accept = self.i.valid & self.i.ready
        with m.If(accept):
            m.d.sync += self.o.valid.eq(1)
        op = self.i.payload.op
        for i in range(self.lanes):
            a, b = self.i.payload.a[i], self.i.payload.b[i]
            results = {}
            if PointwiseOp.ADD in self.ops:
                results[PointwiseOp.ADD] = arith.sat32(m, a + b, name=f"add{i}")
            if PointwiseOp.RELU2_GATE in self.ops:
                relu = arith.wire(m, unsigned(31), Mux(a > 0, a, 0), name=f"relu{i}")
                relu2 = _product_q16(m, relu, relu, name=f"relu2_{i}")
                results[PointwiseOp.RELU2_GATE] = _product_q16(m, relu2, b, name=f"relu2g{i}")
            if PointwiseOp.SILU_GATE in self.ops:
                # sigmoid: e = exp(-|a|); a >= 0: 2^32 / (2^16 + e), else (e << 16) / (2^16 + e),
                # rounded half up as floor((2n + d) / 2d); the quotient is at most 2^16
                magnitude = arith.wire(m, signed(34), Mux(a < 0, a, -a), name=f"negabs{i}")
                e = arith.exp_neg(m, magnitude, name=f"exp{i}")
                den = arith.wire(m, 18, fixed.ONE + e, name=f"sden{i}")
                num = arith.wire(m, 33, Mux(a >= 0, 1 << 32, e << fixed.FRAC), name=f"snum{i}")
                sigmoid = arith.divide_unrolled(m, arith.wire(m, 35, (num << 1) + den),
                                                arith.wire(m, 19, den << 1), 17, name=f"sig{i}")
                silu = _product_q16(m, a, sigmoid, name=f"silu{i}")
                results[PointwiseOp.SILU_GATE] = _product_q16(m, silu, b, name=f"silug{i}")
            with m.If(accept):
                with m.Switch(op):
                    for case, value in results.items():
                        with m.Case(case):
                            m.d.sync += self.o.payload[i].eq(value)
        return m
