# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixed-point arithmetic for the streaming units, bit-exact to ``golden.fixed``.

Combinational helpers (functions that add logic to a :class:`~amaranth.hdl.Module` and return
a :class:`~amaranth.hdl.Signal`):

``bit_length``           priority encoder, ``int.bit_length`` of an unsigned value.
``round_shift``          ``x * 2**-s`` rounded half up for an unsigned shift ``s`` (one adder:
                         ``((2x >> s) + 1) >> 1``).
``scale_sat32``          ``sat32(round_shift(x, shift))`` for a signed shift (<= 0 is a
                         saturating left shift): ``golden.fixed.apply_scale`` after the product.
``sat32``                clamp to the int32 range.
``divide_unrolled``      restoring array divider (one compare/subtract row per quotient bit)
                         for the few-bit per-element quotients (INT8 quantization, sigmoid).
``exp_neg``              ``golden.fixed.exp_neg``: a Q30 multiply by log2(e), a 257-entry ROM
                         (``EXP2_LUT``) with linear interpolation and a rounding right shift.

Sequential components (one bit per cycle, ``lib.stream`` in and out, used once per token or
per head, never per element):

``Divider``      exact floor division with a bounded quotient width.
``Isqrt``        floor square root, two radicand bits per cycle.
``RatioScale``   ``golden.fixed.ratio_scale``: two leading-zero counts, one ``Divider``.

Each sequential component accepts a job when idle and presents its result ``latency`` cycles
after the accepting cycle (that is, the result's handshake happens ``latency`` edges after the
input's handshake when the consumer is ready).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed

__all__ = ["wire", "bit_length", "round_shift", "sat32", "scale_sat32", "divide_unrolled",
           "exp_neg", "scale_layout", "Divider", "Isqrt", "RatioScale", "check_positive"]


def check_positive(name, value):
    """Validate a positive ``int`` parameter; return it."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def wire(m, shape, value, name=None):
    """A named combinational signal of ``shape`` driven by ``value`` (materializing shared
    subexpressions keeps the netlist and the simulator's expression trees small)."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(value)
    return s


def bit_length(m, x, *, name="bit_length"):
    """``int.bit_length`` of the unsigned value ``x`` (0 for 0): a priority-encoder tree, so
    its depth grows with the log of ``len(x)`` (a chain of ``If``s would be one mux a bit)."""
    def highest(bits):
        # (any bit set, index of the highest set bit) of a power-of-two run of bits
        if len(bits) == 1:
            return bits[0], Const(0, 0)
        half = len(bits) // 2
        any_lo, at_lo = highest(bits[:half])
        any_hi, at_hi = highest(bits[half:])
        return any_lo | any_hi, Cat(Mux(any_hi, at_hi, at_lo), any_hi)

    padded = Cat(x, Const(0, (1 << (len(x) - 1).bit_length()) - len(x)))
    any_set, index = highest(padded)
    return wire(m, range(len(x) + 1), Mux(any_set, index + 1, 0), name=name)


def round_shift(m, x, shift, *, name="round_shift"):
    """``x * 2**-shift`` rounded half up, for an unsigned shift amount (a Value or an int).

    ``floor((floor(2x / 2**s) + 1) / 2) == floor(x / 2**s + 1/2)``, so one shift and one
    increment round half up, and ``s = 0`` is exact.
    """
    shape = signed(len(x) + 2) if x.shape().signed else unsigned(len(x) + 1)
    doubled = wire(m, shape, x << 1, name=f"{name}_x2")
    shifted = wire(m, shape, doubled >> shift, name=f"{name}_sh")
    return wire(m, shape, (shifted + 1) >> 1, name=name)


def sat32(m, x, *, name="sat32"):
    """Clamp a signed value to the int32 range."""
    out = Signal(signed(32), name=name)
    with m.If(x > fixed.INT32_MAX):
        m.d.comb += out.eq(fixed.INT32_MAX)
    with m.Elif(x < fixed.INT32_MIN):
        m.d.comb += out.eq(fixed.INT32_MIN)
    with m.Else():
        m.d.comb += out.eq(x)
    return out


def scale_sat32(m, x, shift, *, max_right=63, name="scale"):
    """``sat32(round_shift(x, shift))`` for a signed ``shift``; ``shift <= 0`` shifts left.

    Right shifts are clamped at ``max_right`` (golden's int64 arithmetic is undefined beyond
    63); left shifts at 33, where any non-zero value already saturates.
    """
    right = Signal(range(max_right + 1), name=f"{name}_right")
    left = Signal(range(34), name=f"{name}_left")
    with m.If(shift > max_right):
        m.d.comb += right.eq(max_right)
    with m.Elif(shift > 0):
        m.d.comb += right.eq(shift)
    with m.If(shift < -33):
        m.d.comb += left.eq(33)
    with m.Elif(shift < 0):
        m.d.comb += left.eq(-shift)
    shifted_right = round_shift(m, x, right, name=f"{name}_rs")
    shifted_left = wire(m, signed(len(x) + 35), x << left, name=f"{name}_ls")
    return sat32(m, Mux(shift > 0, shifted_right, shifted_left), name=name)


def divide_unrolled(m, num, den, quotient_width, *, name="div"):
    """``floor(num / den)`` for unsigned ``num < den * 2**quotient_width``, ``den > 0``.

    A restoring array: one compare/subtract row per quotient bit, all combinational.
    """
    rest = num
    bits = []
    for i in reversed(range(quotient_width)):
        shifted = den << i
        take = wire(m, 1, rest >= shifted, name=f"{name}_b{i}")
        rest = wire(m, unsigned(len(num)), Mux(take, rest - shifted, rest), name=f"{name}_r{i}")
        bits.append(take)
    return wire(m, unsigned(quotient_width), Cat(*reversed(bits)), name=name)


def exp_neg(m, x, *, frac=fixed.FRAC, name="exp"):
    """``golden.fixed.exp_neg(x, frac)`` of a signed Q16 value ``x <= 0``; result
    unsigned(frac + 1) in Q``frac``."""
    limit = -(256 << fixed.FRAC)
    clamped = wire(m, signed(26), Mux(x < limit, limit, x), name=f"{name}_x")
    product = wire(m, signed(60), clamped * fixed.LOG2E_Q30, name=f"{name}_p")
    t = wire(m, signed(30), (product + (1 << 29)) >> 30, name=f"{name}_t")
    whole = wire(m, signed(14), t >> fixed.FRAC, name=f"{name}_whole")
    hi = t[8:16]
    lo = t[0:8]
    lut = Array(Const(int(v), 18) for v in fixed.EXP2_LUT)
    base = wire(m, 18, lut[hi], name=f"{name}_base")
    upper = wire(m, 18, lut[hi + 1], name=f"{name}_upper")
    step = wire(m, 18, ((upper - base) * lo + 128) >> 8, name=f"{name}_step")
    mant = wire(m, 18, base + step, name=f"{name}_mant")
    amount = Signal(range(63), name=f"{name}_amount")
    with m.If(whole < -62):
        m.d.comb += amount.eq(62)
    with m.Else():
        m.d.comb += amount.eq(-whole)
    widened = wire(m, 18 + frac - fixed.FRAC, mant << (frac - fixed.FRAC), name=f"{name}_w")
    return wire(m, frac + 1, round_shift(m, widened, amount, name=f"{name}_rs"), name=name)


class Divider(wiring.Component):
    """Sequential restoring divider: ``quotient = floor(num / den)``, one bit per cycle.

    Parameters
    ----------
    num_width, den_width : int
        Operand widths (unsigned).
    quotient_width : int
        Quotient bits; the caller guarantees ``num < den * 2**quotient_width`` and ``den > 0``.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"num": unsigned(num_width), "den": unsigned(den_width)})))
    o : Out(stream.Signature(StructLayout({"quotient": unsigned(quotient_width)})))
    latency : int
        ``quotient_width + 1`` cycles from the accepting cycle to the result's cycle.
    """

    def __init__(self, *, num_width: int, den_width: int, quotient_width: int):
        self.num_width = check_positive("num_width", num_width)
        self.den_width = check_positive("den_width", den_width)
        self.quotient_width = check_positive("quotient_width", quotient_width)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "num": unsigned(num_width), "den": unsigned(den_width)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "quotient": unsigned(quotient_width)}))),
        })

    @property
    def latency(self) -> int:
        return self.quotient_width + 1

    def elaborate(self, platform):
        m = Module()
        qw = self.quotient_width
        rest = Signal(self.num_width)
        divisor = Signal(self.den_width + qw - 1)    # den << bit, shifted right each step
        quotient = Signal(qw)
        count = Signal(range(qw + 1))
        busy = Signal()
        done = Signal()
        m.d.comb += [
            self.i.ready.eq(~busy & ~done),
            self.o.valid.eq(done),
            self.o.payload.quotient.eq(quotient),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                rest.eq(self.i.payload.num),
                divisor.eq(self.i.payload.den << (qw - 1)),
                count.eq(qw),
                busy.eq(1),
            ]
        with m.If(busy):
            take = rest >= divisor
            m.d.sync += [
                rest.eq(Mux(take, rest - divisor, rest)),
                quotient.eq(Cat(take, quotient[:-1])),
                divisor.eq(divisor >> 1),
                count.eq(count - 1),
            ]
            with m.If(count == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m


class Isqrt(wiring.Component):
    """Sequential floor square root (digit by digit, two radicand bits per cycle).

    Parameters
    ----------
    width : int
        Radicand width (even); the root has ``width // 2`` bits.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(width)))
    o : Out(stream.Signature(unsigned(width // 2)))
    latency : int
        ``width // 2 + 1``.
    """

    def __init__(self, *, width: int):
        check_positive("width", width)
        if width % 2:
            raise ValueError(f"width must be even, got {width}")
        self.width = width
        super().__init__({
            "i": In(stream.Signature(unsigned(width))),
            "o": Out(stream.Signature(unsigned(width // 2))),
        })

    @property
    def latency(self) -> int:
        return self.width // 2 + 1

    def elaborate(self, platform):
        m = Module()
        n = self.width // 2
        radicand = Signal(self.width)
        rest = Signal(n + 2)
        root = Signal(n)
        count = Signal(range(n + 1))
        busy = Signal()
        done = Signal()
        m.d.comb += [
            self.i.ready.eq(~busy & ~done),
            self.o.valid.eq(done),
            self.o.payload.eq(root),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [radicand.eq(self.i.payload), rest.eq(0), root.eq(0),
                         count.eq(n), busy.eq(1)]
        with m.If(busy):
            # the remainder stays below 2 * root + 1 < 2**(n+1); shifted in, it needs n + 3 bits
            partial = wire(m, n + 4, Cat(radicand[-2:], rest), name="isqrt_partial")
            trial = wire(m, n + 2, Cat(Const(1, 2), root), name="isqrt_trial")
            take = partial >= trial
            m.d.sync += [
                radicand.eq(radicand << 2),
                rest.eq(Mux(take, partial - trial, partial)),
                root.eq(Cat(take, root[:-1])),
                count.eq(count - 1),
            ]
            with m.If(count == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m


def scale_layout() -> data.StructLayout:
    """A Scale ``(m, e)``: 16-bit mantissa, signed exponent (``v = m * 2**-e``)."""
    return data.StructLayout({"m": unsigned(16), "e": signed(8)})


class RatioScale(wiring.Component):
    """``golden.fixed.ratio_scale(num, den)`` for positive operands: one division per job.

    With ``e0 = 16 + bit_length(den) - bit_length(num)`` the exact quotient
    ``num * 2**e0 / den`` lies in ``(2**15, 2**17)``, so ``Q = floor(num * 2**(e0+2) / den)``
    has 19 bits, and ``m`` for ``e = e0 - j`` is ``((Q >> (1 + j)) + 1) >> 1`` (rounding half
    up from one extra quotient bit). golden lowers ``e`` at most twice; the first ``j`` in
    0..2 with ``m < 2**16`` is its answer.

    Parameters
    ----------
    num_width, den_width : int
        Operand widths (unsigned, at most 44 bits as golden requires).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"num": unsigned(num_width), "den": unsigned(den_width)})))
    o : Out(stream.Signature(scale_layout()))
    latency : int
        20 cycles (a 19-bit ``Divider``).
    """

    QUOTIENT_WIDTH = 19

    def __init__(self, *, num_width: int, den_width: int):
        for name, value in (("num_width", num_width), ("den_width", den_width)):
            check_positive(name, value)
            if value > 44:
                raise ValueError(f"{name} must be at most 44 (golden ratio_scale), got {value}")
        self.num_width = num_width
        self.den_width = den_width
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "num": unsigned(num_width), "den": unsigned(den_width)}))),
            "o": Out(stream.Signature(scale_layout())),
        })

    @property
    def latency(self) -> int:
        return self.QUOTIENT_WIDTH + 1

    def elaborate(self, platform):
        m = Module()
        qw = self.QUOTIENT_WIDTH
        nw, dw = self.num_width, self.den_width
        # num << (e0+2) has bit_length(den) + 18 bits; den << -(e0+2) has bit_length(num) - 18
        m.submodules.divider = divider = Divider(num_width=max(nw, dw + qw),
                                                 den_width=max(dw, nw),
                                                 quotient_width=qw)
        num, den = self.i.payload.num, self.i.payload.den
        e0 = wire(m, signed(8), 16 + bit_length(m, den, name="bl_den")
                  - bit_length(m, num, name="bl_num"), name="e0")
        up = wire(m, signed(8), e0 + 2, name="up")
        up_amount = Signal(range(dw + 19))
        down_amount = Signal(range(nw + 1))
        with m.If(up >= 0):
            m.d.comb += up_amount.eq(up)
        with m.Else():
            m.d.comb += down_amount.eq(-up)
        e0_reg = Signal(signed(8))
        m.d.comb += [
            divider.i.valid.eq(self.i.valid),
            self.i.ready.eq(divider.i.ready),
            divider.i.payload.num.eq(num << up_amount),
            divider.i.payload.den.eq(den << down_amount),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += e0_reg.eq(e0)
        q = divider.o.payload.quotient
        candidates = [wire(m, 18, ((q >> (1 + j)) + 1) >> 1, name=f"m{j}") for j in range(3)]
        with m.If(candidates[0] < (1 << 16)):
            m.d.comb += [self.o.payload.m.eq(candidates[0]), self.o.payload.e.eq(e0_reg)]
        with m.Elif(candidates[1] < (1 << 16)):
            m.d.comb += [self.o.payload.m.eq(candidates[1]), self.o.payload.e.eq(e0_reg - 1)]
        with m.Else():
            m.d.comb += [self.o.payload.m.eq(candidates[2]), self.o.payload.e.eq(e0_reg - 2)]
        m.d.comb += [self.o.valid.eq(divider.o.valid), divider.o.ready.eq(self.o.ready)]
        return m
