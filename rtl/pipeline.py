# SPDX-License-Identifier: BSD-3-Clause
"""Building blocks for pipelined datapaths (issue #12): register stages, adders split over two
stages, and a reciprocal Scale whose divider compares no more bits than its denominator has.

The bound they serve: at most about ten levels of logic between registers on the KV260 as
``boards/logic_levels.py`` counts them, where a carry chain costs one level per four bits
(Yosys maps carries to ``CARRY4``). A 32-bit add is then nine levels (a LUT and eight
``CARRY4``), so anything wider is split: ``split_add`` adds the low half in one stage and the
high half, with the low half's carry, in the next.

``Stages``       register-stage builder for one pipeline (free-running, or all stages enabled
                 together by an ``advance`` signal when the pipeline stalls as a whole).
``carry_add``    ``a + b + carry`` as one carry chain (the carry into its first bit).
``split_add``    ``a + b + carry_in`` over two stages.
``chunk_add``    ``a + b`` over as many stages as it has chunks (24 bits, or a set count).
``log2e_times``  ``round_shift(x * LOG2E_Q30, 30)`` (``exp_neg``'s first step) with no
                 product wider than 17 x 17 bits.
``Reciprocal``   ``golden.fixed.ratio_scale(2**num_log2, den)`` through a normalized
                 denominator and a sequential divider of two cycles a quotient bit.
``LongDivider``  floor division, one quotient bit a cycle, the remainder below the divisor.
``Isqrt``        floor square root, two cycles a root bit.

Products are kept to at most 18 x 18 bits because that is one ECP5 MULT18X18D (and fits a
DSP48E2): Yosys splits a wider one over several and adds their outputs in LUTs after them,
on the same path.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed
from . import arith

__all__ = ["Stages", "carry_add", "split_add", "chunk_add", "log2e_times", "LOG2E_STAGES",
           "Reciprocal", "LongDivider", "Isqrt"]


class Stages:
    """Registers of one pipeline, all updated in the same cycles.

    Parameters
    ----------
    m : Module
    enable : Value or None
        None: every stage is loaded every cycle (a pipeline that never stalls; ``valid`` bits
        travel with the data). Otherwise stages load only while ``enable`` is high (a pipeline
        that stalls as a whole while its output waits).
    """

    def __init__(self, m, enable=None):
        self.m = m
        self.enable = enable

    def __call__(self, name, shape, value, *, reset_less=False):
        """A register ``name`` loaded with ``value`` (``shape`` None: the value's shape).
        ``reset_less`` data registers cost no reset logic (and let Yosys use SRLs for delay
        lines)."""
        if shape is None:
            shape = value.shape()
        s = Signal(shape, name=name, reset_less=reset_less)
        if self.enable is None:
            self.m.d.sync += s.eq(value)
        else:
            with self.m.If(self.enable):
                self.m.d.sync += s.eq(value)
        return s

    def delay(self, name, value, cycles, *, reset_less=False):
        """``value`` delayed by ``cycles`` stages (``cycles`` 0: ``value`` itself)."""
        for i in range(cycles):
            value = self(f"{name}_d{i + 1}", None, value, reset_less=reset_less)
        return value


def carry_add(a, b, carry):
    """``a + b + carry`` (``carry`` one bit) as one adder: ``(2a + 1 + 2b + carry) >> 1``, so
    the carry enters the chain's first bit instead of a second adder."""
    return (Cat(Const(1, 1), a).as_signed() + Cat(carry, b).as_signed()) >> 1 \
        if (a.shape().signed or b.shape().signed) else \
        (Cat(Const(1, 1), a) + Cat(carry, b)) >> 1


def split_add(st, name, a, b, *, carry_in=0, split=None, reset_less=True):
    """``a + b + carry_in`` over two stages of ``st``: the low ``split`` bits (half the width
    by default) and their carry in the first, the high bits in the second. ``carry_in`` is
    0, 1 or a one-bit Value.

    Returns the sum, valid two stages after ``a`` and ``b``: signed if either operand is,
    one bit wider than the wider operand.
    """
    m = st.m
    is_signed = a.shape().signed or b.shape().signed
    width = max(len(a), len(b)) + 1
    shape = signed(width) if is_signed else unsigned(width)
    if split is None:
        split = width // 2
    aw = arith.wire(m, shape, a, name=f"{name}_a")
    bw = arith.wire(m, shape, b, name=f"{name}_b")
    hi_shape = signed(width - split) if is_signed else unsigned(width - split)
    low = st(f"{name}_lo", split + 1,
             carry_add(aw[:split], bw[:split],
                        Const(carry_in, 1) if isinstance(carry_in, int) else carry_in),
             reset_less=reset_less)
    a_hi = st(f"{name}_ah", hi_shape, aw[split:], reset_less=reset_less)
    b_hi = st(f"{name}_bh", hi_shape, bw[split:], reset_less=reset_less)
    low_bits = st(f"{name}_lo2", split, low[:split], reset_less=reset_less)
    a_hi = a_hi.as_signed() if is_signed else a_hi
    b_hi = b_hi.as_signed() if is_signed else b_hi
    high = st(f"{name}_hi", hi_shape, carry_add(a_hi, b_hi, low[split]), reset_less=reset_less)
    total = Cat(low_bits, high)
    return total.as_signed() if is_signed else total


class Reciprocal(wiring.Component):
    """``golden.fixed.ratio_scale(2**num_log2, den)`` for ``0 < den < 2**den_width``.

    With ``bl = bit_length(den)``, golden's ``e0 = 16 + bl - (num_log2 + 1)`` and its quotient
    ``floor(2**num_log2 * 2**(e0 + 2) / den) = floor(2**(bl + 17) / den)``, which for the
    normalized ``d = den << (den_width - bl)`` is ``Q = floor(2**(den_width + 17) / d)``. The
    normalization is one shift a stage (by 32, 16, ..., 1, so ``latency`` is the same for
    every width); the
    19-bit quotient comes from a restoring divider whose remainder stays below ``d``, so each
    step compares ``den_width + 1`` bits, split over two cycles (``split_add``'s halves);
    golden's rounding then picks ``m`` among ``((Q >> (1 + j)) + 1) >> 1`` (j = 0..2) as
    ``arith.RatioScale`` does.

    Parameters
    ----------
    num_log2 : int
        The numerator's exponent (the numerator is a power of two).
    den_width : int
        Denominator width, at most 44 (golden ``ratio_scale``).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(den_width)))
        The denominator (non-zero), accepted when idle.
    o : Out(stream.Signature(arith.scale_layout()))
    latency : int
        Cycles from the accepting cycle to the result's: the normalization, two a quotient
        bit, the selection.
    """

    QUOTIENT_WIDTH = 19

    def __init__(self, *, num_log2: int, den_width: int):
        if not isinstance(num_log2, int) or num_log2 < 0:
            raise ValueError(f"num_log2 must be a non-negative integer, got {num_log2!r}")
        arith.check_positive("den_width", den_width)
        if den_width > 44:
            raise ValueError(f"den_width must be at most 44 (golden ratio_scale), got {den_width}")
        self.num_log2 = num_log2
        self.den_width = den_width
        super().__init__({
            "i": In(stream.Signature(unsigned(den_width))),
            "o": Out(stream.Signature(arith.scale_layout())),
        })

    #: the normalization's shifts, one a stage, largest first: a fixed count (whatever the
    #: width, up to golden's 44 bits), so that the latency does not depend on ``den_width``
    NORMALIZE_STEPS = (32, 16, 8, 4, 2, 1)
    #: the normalization, two cycles a quotient bit, the selection
    LATENCY = len(NORMALIZE_STEPS) + 2 * QUOTIENT_WIDTH + 2

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        w, qw = self.den_width, self.QUOTIENT_WIDTH
        busy = Signal()                          # from the accepting cycle to the result's
        done = Signal()
        m.d.comb += [self.i.ready.eq(~busy & ~done), self.o.valid.eq(done)]
        start = self.i.valid & self.i.ready
        with m.If(start):
            m.d.sync += busy.eq(1)

        value, lz, valid = self.i.payload, Const(0, range(w)), start
        for step in self.NORMALIZE_STEPS:
            # a shift by at least the width never applies (den > 0): the stage only delays
            shifts = value[w - step:] == 0 if step < w else Const(0, 1)
            nv = Signal(w, name=f"norm{step}")
            nlz = Signal(range(w), name=f"norm{step}_lz")
            nvalid = Signal(name=f"norm{step}_valid")
            m.d.sync += nvalid.eq(valid)
            with m.If(valid):                    # a clock enable: idle stages hold
                m.d.sync += [nv.eq(Mux(shifts, value << step, value)),
                             nlz.eq(lz + Mux(shifts, step, 0))]
            value, lz, valid = nv, nlz, nvalid

        d = Signal(w)
        e0 = Signal(signed(8))
        rest = Signal(w)                         # the partial remainder, below d
        quotient = Signal(qw)
        count = Signal(range(qw + 1))
        phase = Signal()                         # 0: low half of 2 rest - d, 1: high half
        running = Signal()
        selecting = Signal()
        s = (w + 2) // 2
        doubled = Cat(Const(0, 1), rest, Const(0, 1))       # 2 rest, w + 2 bits
        minus_d = arith.wire(m, w + 2, ~Cat(d, Const(0, 2)), name="minus_d")
        low = Signal(s + 1)
        with m.If(valid):
            # Q = floor(2**(w + 17) / d): the remainder starts at 2**(w + 17) >> 19
            m.d.sync += [d.eq(value), rest.eq(1 << (w - 2)), quotient.eq(0), count.eq(qw),
                         running.eq(1), phase.eq(0), e0.eq(15 + w - self.num_log2 - lz)]
        with m.Elif(running):
            m.d.sync += phase.eq(~phase)
            with m.If(~phase):
                m.d.sync += low.eq(carry_add(doubled[:s], minus_d[:s], Const(1, 1)))
            with m.Else():
                high = arith.wire(m, w + 2 - s, carry_add(doubled[s:], minus_d[s:], low[s]),
                                  name="div_high")
                take = ~high[-1]                 # 2 rest - d >= 0
                m.d.sync += [rest.eq(Mux(take, Cat(low[:s], high)[:w], doubled[:w])),
                             quotient.eq(Cat(take, quotient[:-1])), count.eq(count - 1)]
                with m.If(count == 1):
                    m.d.sync += [running.eq(0), selecting.eq(1)]
        # golden lowers e at most twice: the first j with a 16-bit rounded mantissa
        candidates = [arith.wire(m, 18, ((quotient >> (1 + j)) + 1) >> 1, name=f"m{j}")
                      for j in range(3)]
        with m.If(selecting):
            m.d.sync += [selecting.eq(0), done.eq(1)]
            with m.If(candidates[0] < (1 << 16)):
                m.d.sync += [self.o.payload.m.eq(candidates[0]), self.o.payload.e.eq(e0)]
            with m.Elif(candidates[1] < (1 << 16)):
                m.d.sync += [self.o.payload.m.eq(candidates[1]), self.o.payload.e.eq(e0 - 1)]
            with m.Else():
                m.d.sync += [self.o.payload.m.eq(candidates[2]), self.o.payload.e.eq(e0 - 2)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [done.eq(0), busy.eq(0)]
        return m


def chunk_add(st, name, a, b, *, chunk=24, stages=None, reset_less=True):
    """``a + b`` over ``ceil(width / chunk)`` stages of ``st``, ``chunk`` bits a stage (the
    carry of each chunk registered into the next; the chunks below delayed to line up), or
    over exactly ``stages`` stages of ``ceil(width / stages)`` bits.

    Returns ``(sum, stages)``: the sum (one bit wider than the wider operand, signed if
    either is) valid ``stages`` stages after ``a`` and ``b``.
    """
    m = st.m
    is_signed = a.shape().signed or b.shape().signed
    width = max(len(a), len(b)) + 1
    shape = signed(width) if is_signed else unsigned(width)
    aw = arith.wire(m, shape, a, name=f"{name}_a")
    bw = arith.wire(m, shape, b, name=f"{name}_b")
    if stages is not None:
        chunk = -(-width // stages)
    bounds = [(lo, min(lo + chunk, width)) for lo in range(0, width, chunk)]
    done, carry = [], Const(0, 1)
    for c, (lo, hi) in enumerate(bounds):
        top = c == len(bounds) - 1
        a_c = st.delay(f"{name}_a{c}", aw[lo:hi], c, reset_less=reset_less)
        b_c = st.delay(f"{name}_b{c}", bw[lo:hi], c, reset_less=reset_less)
        if top and is_signed:
            a_c, b_c = a_c.as_signed(), b_c.as_signed()
        total = arith.wire(m, hi - lo + 1, carry_add(a_c, b_c, carry), name=f"{name}_s{c}")
        done = [st(f"{name}_r{c}_{j}", len(piece), piece, reset_less=reset_less)
                for j, piece in enumerate(done)]
        done.append(st(f"{name}_r{c}", hi - lo, total[:hi - lo], reset_less=reset_less))
        carry = st(f"{name}_k{c}", 1, total[-1], reset_less=reset_less)
    result = Cat(*done)
    return (result.as_signed() if is_signed else result), len(bounds)


class LongDivider(wiring.Component):
    """``floor(num / den)`` for ``den > 0``, one quotient bit a cycle, the remainder kept
    below ``den`` (so each step compares ``den_width + 1`` bits, however wide ``num`` is).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"num": unsigned(num_width), "den": unsigned(den_width)})))
    o : Out(stream.Signature(unsigned(num_width)))
    latency : int
        ``num_width + 1``.
    """

    def __init__(self, *, num_width: int, den_width: int):
        self.num_width = arith.check_positive("num_width", num_width)
        self.den_width = arith.check_positive("den_width", den_width)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "num": unsigned(num_width), "den": unsigned(den_width)}))),
            "o": Out(stream.Signature(unsigned(num_width))),
        })

    @property
    def latency(self) -> int:
        return self.num_width + 1

    def elaborate(self, platform):
        m = Module()
        nw, dw = self.num_width, self.den_width
        pending = Signal(nw)                     # numerator bits still to bring down, MSB first
        quotient = Signal(nw)
        rest = Signal(dw)
        den = Signal(dw)
        count = Signal(range(nw + 1))
        busy = Signal()
        done = Signal()
        m.d.comb += [self.i.ready.eq(~busy & ~done), self.o.valid.eq(done),
                     self.o.payload.eq(quotient)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [pending.eq(self.i.payload.num), den.eq(self.i.payload.den),
                         rest.eq(0), count.eq(nw), busy.eq(1)]
        with m.If(busy):
            trial = arith.wire(m, dw + 1, Cat(pending[-1], rest), name="trial")
            diff = arith.wire(m, dw + 2, trial - den, name="diff")
            take = ~diff[-1]
            m.d.sync += [rest.eq(Mux(take, diff[:dw], trial[:dw])),
                         quotient.eq(Cat(take, quotient[:-1])), pending.eq(pending << 1),
                         count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m


class Isqrt(wiring.Component):
    """Floor square root, digit by digit (two radicand bits a step), each step's compare and
    subtract split over two cycles (``split_add``'s halves), as ``arith.Isqrt`` otherwise.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(width)))
    o : Out(stream.Signature(unsigned(width // 2)))
    latency : int
        ``width + 1`` (two cycles for each of the ``width / 2`` steps).
    """

    def __init__(self, *, width: int):
        arith.check_positive("width", width)
        if width % 2:
            raise ValueError(f"width must be even, got {width}")
        self.width = width
        super().__init__({
            "i": In(stream.Signature(unsigned(width))),
            "o": Out(stream.Signature(unsigned(width // 2))),
        })

    @property
    def latency(self) -> int:
        return self.width + 1

    def elaborate(self, platform):
        m = Module()
        n = self.width // 2
        radicand = Signal(self.width)
        rest = Signal(n + 2)
        root = Signal(n)
        count = Signal(range(n + 1))
        phase = Signal()
        busy = Signal()
        done = Signal()
        w = n + 5                                 # partial - trial with its sign
        s = w // 2
        partial = arith.wire(m, w, Cat(radicand[-2:], rest), name="partial")
        minus_trial = arith.wire(m, w, ~Cat(Const(1, 2), root, Const(0, w - n - 2)),
                                 name="minus_trial")
        low = Signal(s + 1)
        m.d.comb += [self.i.ready.eq(~busy & ~done), self.o.valid.eq(done),
                     self.o.payload.eq(root)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [radicand.eq(self.i.payload), rest.eq(0), root.eq(0),
                         count.eq(n), busy.eq(1), phase.eq(0)]
        with m.If(busy):
            m.d.sync += phase.eq(~phase)
            with m.If(~phase):
                m.d.sync += low.eq(carry_add(partial[:s], minus_trial[:s], Const(1, 1)))
            with m.Else():
                high = arith.wire(m, w - s, carry_add(partial[s:], minus_trial[s:], low[s]),
                                  name="high")
                take = ~high[-1]
                m.d.sync += [
                    radicand.eq(radicand << 2),
                    rest.eq(Mux(take, Cat(low[:s], high)[:n + 2], partial[:n + 2])),
                    root.eq(Cat(take, root[:-1])),
                    count.eq(count - 1),
                ]
                with m.If(count == 1):
                    m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m


#: log2(e) in Q30 (``golden.fixed.LOG2E_Q30``) in a 17-bit low and a 14-bit high part
_LOG2E_LO = fixed.LOG2E_Q30 & 0x1FFFF
_LOG2E_HI = fixed.LOG2E_Q30 >> 17
#: stages of ``log2e_times``
LOG2E_STAGES = 5


def log2e_times(st, name, x):
    """``t = round_shift(x * LOG2E_Q30, 30)`` (``golden.fixed.exp_neg``'s first step) for a
    signed ``x`` of at most 34 bits, over ``LOG2E_STAGES`` stages, every product at most
    17 x 17 bits (one MULT18X18D, one DSP48E2): ``x = xh * 2**17 + xl``; the four partial
    products; ``A = xl * lo + 2**29`` (an increment of its top bits) and the cross sum
    ``M = xh * lo + xl * hi``; ``T = (A >> 17) + M`` in two halves; ``t = (T + (xh * hi <<
    17)) >> 13`` (only the high part adds)."""
    xl, xh = x[:17], x[17:].as_signed()
    ll = st(f"{name}_ll", None, xl * _LOG2E_LO, reset_less=True)
    hl = st(f"{name}_hl", None, xh * _LOG2E_LO, reset_less=True)
    lh = st(f"{name}_lh", None, xl * _LOG2E_HI, reset_less=True)
    hh = st(f"{name}_hh", None, xh * _LOG2E_HI, reset_less=True)
    a = st(f"{name}_a", len(ll) + 1, Cat(ll[:29], ll[29:] + 1), reset_less=True)
    cross = st(f"{name}_m", None, hl + lh, reset_less=True)
    hh = st.delay(f"{name}_hh", hh, 1, reset_less=True)
    t = split_add(st, f"{name}_t", a.shift_right(17), cross)
    hh = st.delay(f"{name}_hh2", hh, 2, reset_less=True)
    upper = st(f"{name}_upper", None, t.shift_right(17) + hh, reset_less=True)
    low = st(f"{name}_low", 4, t[13:17], reset_less=True)
    return Cat(low, upper).as_signed()
