# SPDX-License-Identifier: BSD-3-Clause
"""Bessel output filters on one shared multiplier: ``CausalFilter`` (bit-exact to
``golden.bessel.CausalFilter``), ``BlockFilter`` (the literal sliding filtfilt, bit-exact to
``golden.bessel.BlockFilter.push``) and ``AmortizedBlockFilter`` (block-bidirectional with the
forward state carried across blocks, bit-exact to ``golden.bessel.AmortizedBlockFilter``).

Per section three multiply-accumulates, ``g*(x + 2*x1 + x2)``, ``- a1*y1``, ``- a2*y2``, then
the write-back ``y = sat36((acc + 2**19) >> 20)`` that shifts the taps; axes and sections are
unrolled into FSM states, so every tap is a plain register (no indexed register file). The
first sample after reset loads every tap with itself (the exact steady state, see
``golden.bessel``). A sample costs ``cycles_per_sample = 2 + 6 * sections * channels`` cycles:
accept, 6 per section per axis (three multiplies through a two-stage pipeline, write-back),
emit.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden import bessel as golden

__all__ = ["CausalFilter", "BlockFilter", "AmortizedBlockFilter", "SAMPLE_WIDTH", "causal_cycles",
           "block_cycles", "amortized_cycles"]

SAMPLE_WIDTH = 32


#: cycles per biquad: three multiplies through a two-register pipeline, then the write-back
SECTION_CYCLES = 6


def _saturate(m, value, lo, hi, name):
    """``value`` clamped to ``[lo, hi]``, as a state-width (or sample-width) signal."""
    out = Signal(signed(max(golden.STATE_WIDTH, SAMPLE_WIDTH)), name=name)
    with m.If(value < lo):
        m.d.comb += out.eq(lo)
    with m.Elif(value > hi):
        m.d.comb += out.eq(hi)
    with m.Else():
        m.d.comb += out.eq(value)
    return out


def _write_back(m, acc):
    """A section's accumulator rounded and saturated to a state (``y``), and that state
    rounded and saturated to an output sample (``y_out``), as ``golden.bessel`` does."""
    sw, dw, frac = golden.STATE_WIDTH, golden.DATA_WIDTH, golden.COEF_FRAC
    y = _saturate(m, (acc + (1 << (frac - 1))) >> frac, -(1 << (sw - 1)), (1 << (sw - 1)) - 1,
                  "y")
    y_out = _saturate(m, (y + (1 << (golden.GUARD - 1))) >> golden.GUARD, -(1 << (dw - 1)),
                      (1 << (dw - 1)) - 1, "y_out")
    return y, y_out


def _multiplier(m, a, b):
    """``a * b`` with registered operands and a registered product (two cycles): keeps the
    iCE40 SB_MAC16 cascade out of the accumulator's path."""
    a_r = Signal.like(a, name="mul_a_r")
    b_r = Signal.like(b, name="mul_b_r")
    product = Signal(signed(62), name="product_r")
    m.d.sync += [a_r.eq(a), b_r.eq(b), product.eq(a_r * b_r)]
    return product


def _section_states(m, name, cur, taps, coefs, mul_a, mul_b, acc, product):
    """FSM states ``{name}M0``..``{name}M4`` of one biquad section on the shared multiplier:
    ``acc = g*(x + 2 x1 + x2) - a1*y1 - a2*y2``, then on to ``{name}WB`` (the caller's
    write-back). Operands and product are registered: a result lands two states after issue."""
    x1, x2, y1, y2 = taps
    g, a1, a2 = coefs
    with m.State(f"{name}M0"):
        m.d.comb += [mul_a.eq(cur + (x1 << 1) + x2), mul_b.eq(g)]
        m.next = f"{name}M1"
    with m.State(f"{name}M1"):
        m.d.comb += [mul_a.eq(y1), mul_b.eq(a1)]
        m.next = f"{name}M2"
    with m.State(f"{name}M2"):
        m.d.comb += [mul_a.eq(y2), mul_b.eq(a2)]
        m.d.sync += acc.eq(product)
        m.next = f"{name}M3"
    with m.State(f"{name}M3"):
        m.d.sync += acc.eq(acc - product)
        m.next = f"{name}M4"
    with m.State(f"{name}M4"):
        m.d.sync += acc.eq(acc - product)
        m.next = f"{name}WB"


def causal_cycles(*, sections: int = 2, channels: int = 2) -> int:
    """``CausalFilter.cycles_per_sample`` without building the component."""
    return 2 + SECTION_CYCLES * sections * channels


def block_cycles(*, tap: str = "middle", channels: int = 2, first: bool = False,
                 emits: bool = True) -> int:
    """``BlockFilter.cycles_per_sample`` without building the component (two sections)."""
    window, padlen = golden.WINDOW, golden.PADLEN
    index = window - 1 - (window // 2 if tap == "middle" else 0)
    store = window * channels if first else channels
    if not emits:
        return 2 + store
    per_sample = 2 + 2 * SECTION_CYCLES
    per_channel = 2 + per_sample * (window + 2 * padlen) + per_sample * (window + padlen - index)
    return 3 + store + channels * per_channel


class CausalFilter(wiring.Component):
    """Streaming causal filter over ``channels`` Q16 samples per beat.

    Parameters
    ----------
    coefficients : golden.bessel.FilterCoefficients, optional
        Quantized sections (default: Bessel order 4, fc = 0.05 of Nyquist).
    channels : int
        Samples per beat (2: x and y velocity).
    """

    def __init__(self, *, coefficients=None, channels: int = 2):
        if not isinstance(channels, int) or not 1 <= channels <= 8:
            raise ValueError(f"channels must be an int in [1, 8], got {channels!r}")
        self.coefficients = golden.quantize() if coefficients is None else coefficients
        if not isinstance(self.coefficients, golden.FilterCoefficients):
            raise TypeError("coefficients must be golden.bessel.FilterCoefficients")
        self.channels = channels
        layout = data.ArrayLayout(signed(SAMPLE_WIDTH), channels)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    @property
    def cycles_per_sample(self) -> int:
        """Cycles between successive input transfers with no stalls."""
        return causal_cycles(sections=self.coefficients.sections, channels=self.channels)

    @property
    def latency(self) -> int:
        """Cycles from the input transfer to ``o.valid``."""
        return self.cycles_per_sample - 1

    def elaborate(self, platform):
        m = Module()
        coefs = self.coefficients
        sw, frac = golden.STATE_WIDTH, golden.COEF_FRAC
        data_lo, data_hi = -(1 << (golden.DATA_WIDTH - 1)), (1 << (golden.DATA_WIDTH - 1)) - 1

        primed = Signal()
        xin = [Signal(signed(sw), name=f"xin{a}") for a in range(self.channels)]
        out = [Signal(signed(SAMPLE_WIDTH), name=f"out{a}") for a in range(self.channels)]
        taps = [[[Signal(signed(sw), name=f"{n}_{a}_{s}") for n in ("x1", "x2", "y1", "y2")]
                 for s in range(coefs.sections)] for a in range(self.channels)]
        cur = Signal(signed(sw))
        acc = Signal(signed(63))          # < 64 bits: Icarus mis-evaluates wider arithmetic
        mul_a = Signal(signed(sw + 2))
        mul_b = Signal(signed(frac + 3))
        product = _multiplier(m, mul_a, mul_b)
        for a in range(self.channels):
            m.d.comb += self.o.payload[a].eq(out[a])
        # shared write-back rounding and saturation (one copy, not one per state)
        y, y_out = _write_back(m, acc)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for a in range(self.channels):
                        x_q24 = _saturate(m, self.i.payload[a], data_lo, data_hi, f"in_sat{a}") \
                            << golden.GUARD
                        m.d.sync += xin[a].eq(x_q24)
                        with m.If(~primed):
                            m.d.sync += [t.eq(x_q24) for sec in taps[a] for t in sec]
                        if a == 0:
                            m.d.sync += cur.eq(x_q24)
                    m.d.sync += primed.eq(1)
                    m.next = "A0S0M0"
            for a in range(self.channels):
                for s in range(coefs.sections):
                    x1, x2, y1, y2 = taps[a][s]
                    g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
                    name = f"A{a}S{s}"
                    _section_states(m, name, cur, taps[a][s], (g, a1, a2), mul_a, mul_b, acc,
                                    product)
                    with m.State(f"{name}WB"):
                        m.d.sync += [x2.eq(x1), x1.eq(cur), y2.eq(y1), y1.eq(y)]
                        if s + 1 < coefs.sections:
                            m.d.sync += cur.eq(y)
                            m.next = f"A{a}S{s + 1}M0"
                        else:
                            m.d.sync += out[a].eq(y_out)
                            if a + 1 < self.channels:
                                m.d.sync += cur.eq(xin[a + 1])
                                m.next = f"A{a + 1}S0M0"
                            else:
                                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m


class BlockFilter(wiring.Component):
    """Block-bidirectional Bessel filter (scipy ``filtfilt`` of the last ``window`` samples per
    push, odd padding, steady-state initial conditions), bit-exact to
    ``golden.bessel.BlockFilter.push``.

    The history is a RAM ring per channel; a push writes one entry per channel and, once the
    tap's look-ahead is filled, runs per channel a forward pass over the ``window + 2*PADLEN``
    padded samples (odd padding computed on the fly from the oldest and newest entries, results
    to a scratch RAM) and a backward pass that stops at the tapped sample. The two biquads
    share one multiplier as in ``CausalFilter``. The end-of-stream tail of a middle tap
    (``golden.bessel.BlockFilter.flush``) is left to the host.

    Parameters
    ----------
    tap : str
        ``"last"`` (no added delay) or ``"middle"`` (``window//2`` samples of look-ahead).
    coefficients, channels
        As ``CausalFilter``.
    """

    def __init__(self, *, tap: str = "middle", coefficients=None, channels: int = 2):
        if tap not in ("last", "middle"):
            raise ValueError(f"tap must be 'last' or 'middle', got {tap!r}")
        if not isinstance(channels, int) or not 1 <= channels <= 8:
            raise ValueError(f"channels must be an int in [1, 8], got {channels!r}")
        self.coefficients = golden.quantize() if coefficients is None else coefficients
        if not isinstance(self.coefficients, golden.FilterCoefficients) \
                or self.coefficients.sections != 2:
            raise TypeError("coefficients must be two-section golden.bessel.FilterCoefficients")
        self.tap, self.channels = tap, channels
        self.window, self.padlen = golden.WINDOW, golden.PADLEN
        self.delay = self.window // 2 if tap == "middle" else 0
        self.index = self.window - 1 - self.delay
        layout = data.ArrayLayout(signed(SAMPLE_WIDTH), channels)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    @property
    def backward_steps(self) -> int:
        return self.window + self.padlen - self.index

    def cycles_per_sample(self, *, first: bool = False, emits: bool = True) -> int:
        """Cycles between successive input transfers with no stalls: the first push fills the
        history; pushes inside the look-ahead only store their sample."""
        return block_cycles(tap=self.tap, channels=self.channels, first=first, emits=emits)

    def elaborate(self, platform):
        m = Module()
        coefs = self.coefficients
        sw, frac = golden.STATE_WIDTH, golden.COEF_FRAC
        w, p, ch = self.window, self.padlen, self.channels
        ext_len = w + 2 * p
        state_lo, state_hi = -(1 << (sw - 1)), (1 << (sw - 1)) - 1
        data_lo, data_hi = -(1 << (golden.DATA_WIDTH - 1)), (1 << (golden.DATA_WIDTH - 1)) - 1

        m.submodules.hist = hist = Memory(shape=signed(sw), depth=w * ch, init=[])
        m.submodules.scratch = scratch = Memory(shape=signed(sw), depth=ext_len, init=[])
        h_rd, h_wr = hist.read_port(), hist.write_port()
        s_rd, s_wr = scratch.read_port(), scratch.write_port()

        ptr_bits = (w - 1).bit_length()
        primed = Signal()
        pushed = Signal(range(self.delay + 2))
        ptr = Signal(ptr_bits)
        fill = Signal(range(w * ch + 1))
        c = Signal(range(ch + 1))
        n = Signal(range(ext_len + 1))
        backward = Signal()
        xin = [Signal(signed(sw), name=f"xin{a}") for a in range(ch)]
        out = [Signal(signed(SAMPLE_WIDTH), name=f"out{a}") for a in range(ch)]
        w_old = Signal(signed(sw))
        w_new = Signal(signed(sw))
        taps = [[Signal(signed(sw), name=f"{t}_{s}") for t in ("x1", "x2", "y1", "y2")]
                for s in range(coefs.sections)]
        cur = Signal(signed(sw))
        acc = Signal(signed(63))
        mul_a = Signal(signed(sw + 2))
        mul_b = Signal(signed(frac + 3))
        product = _multiplier(m, mul_a, mul_b)
        for a in range(ch):
            m.d.comb += self.o.payload[a].eq(out[a])
        with m.Switch(c):
            for a in range(ch):
                with m.Case(a):
                    m.d.comb += w_new.eq(xin[a])
        y, y_out = _write_back(m, acc)
        ext_pre = _saturate(m, (w_old << 1) - h_rd.data, state_lo, state_hi, "ext_pre")
        ext_post = _saturate(m, (w_new << 1) - h_rd.data, state_lo, state_hi, "ext_post")
        # logical history index read for padded position n (odd padding, both ends)
        j = Signal(range(2 * w + p))
        with m.If(n < p):
            m.d.comb += j.eq(p - n)
        with m.Elif(n < p + w):
            m.d.comb += j.eq(n - p)
        with m.Else():
            m.d.comb += j.eq(2 * w + p - 2 - n)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for a in range(ch):
                        m.d.sync += xin[a].eq(_saturate(m, self.i.payload[a], data_lo, data_hi,
                                                  f"in_sat{a}") << golden.GUARD)
                    m.d.sync += [fill.eq(0), c.eq(0)]
                    with m.If(primed):
                        m.next = "STORE"
                    with m.Else():
                        m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += [h_wr.addr.eq(fill), h_wr.en.eq(1)]
                with m.Switch(fill >> ptr_bits):
                    for a in range(ch):
                        with m.Case(a):
                            m.d.comb += h_wr.data.eq(xin[a])
                m.d.sync += fill.eq(fill + 1)
                with m.If(fill == w * ch - 1):
                    m.d.sync += [primed.eq(1), ptr.eq(0)]
                    m.next = "DECIDE"
            with m.State("STORE"):
                m.d.comb += [h_wr.addr.eq(Cat(ptr, c)), h_wr.data.eq(w_new), h_wr.en.eq(1)]
                with m.If(c == ch - 1):
                    m.d.sync += [c.eq(0), ptr.eq(ptr + 1)]
                    m.next = "DECIDE"
                with m.Else():
                    m.d.sync += c.eq(c + 1)
            with m.State("DECIDE"):
                with m.If(pushed < self.delay + 1):
                    m.d.sync += pushed.eq(pushed + 1)
                m.d.sync += c.eq(0)
                with m.If(pushed >= self.delay):
                    m.next = "START"
                with m.Else():
                    m.next = "IDLE"
            with m.State("START"):
                m.d.comb += h_rd.addr.eq(Cat(ptr, c))
                m.d.sync += [n.eq(0), backward.eq(0)]
                m.next = "OLDEST"
            with m.State("OLDEST"):
                m.d.sync += w_old.eq(h_rd.data)
                m.next = "FREAD"
            with m.State("FREAD"):
                m.d.comb += h_rd.addr.eq(Cat((ptr + j)[:ptr_bits], c))
                m.next = "FEXT"
            with m.State("FEXT"):
                e = Signal(signed(sw))
                with m.If(n < p):
                    m.d.comb += e.eq(ext_pre)
                with m.Elif(n < p + w):
                    m.d.comb += e.eq(h_rd.data)
                with m.Else():
                    m.d.comb += e.eq(ext_post)
                m.d.sync += cur.eq(e)
                with m.If(n == 0):
                    m.d.sync += [t.eq(e) for sec in taps for t in sec]
                m.next = "S0M0"
            with m.State("BREAD"):
                m.d.comb += s_rd.addr.eq(n)
                m.next = "BGET"
            with m.State("BGET"):
                m.d.sync += cur.eq(s_rd.data)
                with m.If(n == ext_len - 1):
                    m.d.sync += [t.eq(s_rd.data) for sec in taps for t in sec]
                m.next = "S0M0"
            for s in range(coefs.sections):
                x1, x2, y1, y2 = taps[s]
                g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
                _section_states(m, f"S{s}", cur, taps[s], (g, a1, a2), mul_a, mul_b, acc,
                                product)
                with m.State(f"S{s}WB"):
                    m.d.sync += [x2.eq(x1), x1.eq(cur), y2.eq(y1), y1.eq(y)]
                    if s + 1 < coefs.sections:
                        m.d.sync += cur.eq(y)
                        m.next = f"S{s + 1}M0"
                    else:
                        with m.If(~backward):
                            m.d.comb += [s_wr.addr.eq(n), s_wr.data.eq(y), s_wr.en.eq(1)]
                            with m.If(n == ext_len - 1):
                                m.d.sync += backward.eq(1)
                                m.next = "BREAD"
                            with m.Else():
                                m.d.sync += n.eq(n + 1)
                                m.next = "FREAD"
                        with m.Elif(n == p + self.index):
                            with m.Switch(c):
                                for a in range(ch):
                                    with m.Case(a):
                                        m.d.sync += out[a].eq(y_out)
                            with m.If(c == ch - 1):
                                m.next = "EMIT"
                            with m.Else():
                                m.d.sync += c.eq(c + 1)
                                m.next = "START"
                        with m.Else():
                            m.d.sync += n.eq(n - 1)
                            m.next = "BREAD"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m


def amortized_cycles(*, channels: int = 2, first: bool = False, emits: bool = False) -> int:
    """``AmortizedBlockFilter.cycles_per_sample`` without building the component (two
    sections, window 32, hop 16, padlen 15)."""
    window, padlen, hop = golden.WINDOW, golden.PADLEN, golden.WINDOW // 2
    per_sample = 2 + 2 * SECTION_CYCLES
    cycles = 1 + channels * 2 * SECTION_CYCLES + (window * channels if first else 0)
    if emits:
        cycles += channels * (1 + per_sample * padlen + per_sample * (padlen + window)) + 2 * hop
    return cycles


class AmortizedBlockFilter(wiring.Component):
    """Block-bidirectional Bessel filter with the forward state carried across blocks
    (``golden.bessel.AmortizedBlockFilter``, mode ``block-amortized``; window 32, hop 16,
    padlen 15), bit-exact to its ``push``.

    Every push runs the causal cascade per channel (taps in registers, as ``CausalFilter``)
    and writes the input and the forward output to a history RAM ring (``window`` entries per
    channel). After push ``window``, ``window + hop``, ... it runs per channel: a copy of the
    channel's forward taps into the backward taps, the forward cascade over the ``padlen``
    odd-padding samples ``2*x[t] - x[t-k]`` (outputs to a scratch RAM), and the backward cascade
    from the steady state of the last padded output down over the padding and the ``window``
    forward outputs, the oldest ``hop`` results going to one output RAM per channel; then it
    emits those ``hop`` beats, oldest first. The end-of-stream tail
    (``golden.bessel.AmortizedBlockFilter.flush``) is left to the host.

    Parameters
    ----------
    coefficients, channels
        As ``CausalFilter`` (two sections).
    """

    def __init__(self, *, coefficients=None, channels: int = 2):
        if not isinstance(channels, int) or not 1 <= channels <= 8:
            raise ValueError(f"channels must be an int in [1, 8], got {channels!r}")
        self.coefficients = golden.quantize() if coefficients is None else coefficients
        if not isinstance(self.coefficients, golden.FilterCoefficients) \
                or self.coefficients.sections != 2:
            raise TypeError("coefficients must be two-section golden.bessel.FilterCoefficients")
        self.channels = channels
        self.window, self.padlen, self.hop = golden.WINDOW, golden.PADLEN, golden.WINDOW // 2
        layout = data.ArrayLayout(signed(SAMPLE_WIDTH), channels)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def cycles_per_sample(self, *, first: bool = False, emits: bool = False) -> int:
        """Cycles between successive input transfers with no stalls: ``emits`` for a push
        that ends a block (backward passes and ``hop`` output beats), ``first`` for the push
        that fills the history."""
        return amortized_cycles(channels=self.channels, first=first, emits=emits)

    def elaborate(self, platform):
        m = Module()
        coefs = self.coefficients
        sw, frac = golden.STATE_WIDTH, golden.COEF_FRAC
        w, p, h, ch = self.window, self.padlen, self.hop, self.channels
        state_lo, state_hi = -(1 << (sw - 1)), (1 << (sw - 1)) - 1
        data_lo, data_hi = -(1 << (golden.DATA_WIDTH - 1)), (1 << (golden.DATA_WIDTH - 1)) - 1

        entry = data.StructLayout({"x": signed(sw), "f": signed(sw)})
        m.submodules.hist = hist = Memory(shape=entry, depth=w * ch, init=[])
        m.submodules.scratch = scratch = Memory(shape=signed(sw), depth=p, init=[])
        h_rd, h_wr = hist.read_port(), hist.write_port()
        s_rd, s_wr = scratch.read_port(), scratch.write_port()
        o_rd, o_wr = [], []
        for a in range(ch):
            mem = Memory(shape=signed(golden.DATA_WIDTH), depth=h, init=[])
            m.submodules[f"out{a}"] = mem
            o_rd.append(mem.read_port())
            o_wr.append(mem.write_port())

        ptr_bits = (w - 1).bit_length()
        hop_bits = (h - 1).bit_length()
        primed = Signal()
        ptr = Signal(ptr_bits)               # next history entry to write
        until = Signal(range(w + 1), init=w)  # pushes left until the next backward pass
        fill = Signal(range(w * ch + 1))
        c = Signal(range(ch + 1))
        n = Signal(range(p + w + 1))
        e = Signal(range(h + 1))
        xin = [Signal(signed(sw), name=f"xin{a}") for a in range(ch)]
        x_c = Signal(signed(sw))
        ftaps = [[[Signal(signed(sw), name=f"f{t}_{a}_{s}") for t in ("x1", "x2", "y1", "y2")]
                  for s in range(coefs.sections)] for a in range(ch)]
        btaps = [[Signal(signed(sw), name=f"b{t}_{s}") for t in ("x1", "x2", "y1", "y2")]
                 for s in range(coefs.sections)]
        cur = Signal(signed(sw))
        acc = Signal(signed(63))
        mul_a = Signal(signed(sw + 2))
        mul_b = Signal(signed(frac + 3))
        product = _multiplier(m, mul_a, mul_b)
        for a in range(ch):
            m.d.comb += [self.o.payload[a].eq(o_rd[a].data), o_rd[a].addr.eq(e)]
        with m.Switch(c):
            for a in range(ch):
                with m.Case(a):
                    m.d.comb += x_c.eq(xin[a])
        y, y_out = _write_back(m, acc)
        pad = _saturate(m, (x_c << 1) - h_rd.data.x, state_lo, state_hi, "pad")
        back_in = Signal(signed(sw))
        m.d.comb += back_in.eq(Mux(n < p, s_rd.data, h_rd.data.f))
        backward = Signal()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for a in range(ch):
                        x_q24 = _saturate(m, self.i.payload[a], data_lo, data_hi, f"in_sat{a}") \
                            << golden.GUARD
                        m.d.sync += xin[a].eq(x_q24)
                        with m.If(~primed):
                            m.d.sync += [t.eq(x_q24) for sec in ftaps[a] for t in sec]
                        if a == 0:
                            m.d.sync += cur.eq(x_q24)
                    m.d.sync += [fill.eq(0), c.eq(0)]
                    with m.If(primed):
                        m.next = "F0S0M0"
                    with m.Else():
                        m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += [h_wr.addr.eq(fill), h_wr.en.eq(1)]
                with m.Switch(fill >> ptr_bits):
                    for a in range(ch):
                        with m.Case(a):
                            m.d.comb += [h_wr.data.x.eq(xin[a]), h_wr.data.f.eq(xin[a])]
                m.d.sync += fill.eq(fill + 1)
                with m.If(fill == w * ch - 1):
                    m.d.sync += [primed.eq(1), ptr.eq(0)]
                    m.next = "F0S0M0"
            # forward cascade per channel, taps carried
            for a in range(ch):
                for s in range(coefs.sections):
                    x1, x2, y1, y2 = ftaps[a][s]
                    g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
                    name = f"F{a}S{s}"
                    _section_states(m, name, cur, ftaps[a][s], (g, a1, a2), mul_a, mul_b, acc,
                                    product)
                    with m.State(f"{name}WB"):
                        m.d.sync += [x2.eq(x1), x1.eq(cur), y2.eq(y1), y1.eq(y)]
                        if s + 1 < coefs.sections:
                            m.d.sync += cur.eq(y)
                            m.next = f"F{a}S{s + 1}M0"
                            continue
                        m.d.comb += [h_wr.addr.eq(Cat(ptr, Const(a, range(ch + 1)))),
                                     h_wr.data.x.eq(xin[a]), h_wr.data.f.eq(y), h_wr.en.eq(1)]
                        if a + 1 < ch:
                            m.d.sync += cur.eq(xin[a + 1])
                            m.next = f"F{a + 1}S0M0"
                            continue
                        m.d.sync += [ptr.eq(ptr + 1), c.eq(0)]
                        with m.If(until == 1):
                            m.d.sync += until.eq(h)
                            m.next = "COPY"
                        with m.Else():
                            m.d.sync += until.eq(until - 1)
                            m.next = "IDLE"
            # per channel c: the forward cascade over the odd padding from a copy of its taps
            with m.State("COPY"):
                with m.Switch(c):
                    for a in range(ch):
                        with m.Case(a):
                            m.d.sync += [bt.eq(ft) for bsec, fsec in zip(btaps, ftaps[a],
                                                                         strict=True)
                                         for bt, ft in zip(bsec, fsec, strict=True)]
                m.d.sync += [n.eq(0), backward.eq(0)]
                m.next = "PREAD"
            with m.State("PREAD"):                        # x[t - 1 - n]; ptr - 1 is t
                m.d.comb += h_rd.addr.eq(Cat((ptr - 2 - n)[:ptr_bits], c))
                m.next = "PGET"
            with m.State("PGET"):
                m.d.sync += cur.eq(pad)
                m.next = "BS0M0"
            # the backward cascade over the padded outputs (newest first), then the history
            with m.State("BREAD"):
                m.d.comb += [s_rd.addr.eq(p - 1 - n),
                             h_rd.addr.eq(Cat((ptr - 1 - (n - p))[:ptr_bits], c))]
                m.next = "BGET"
            with m.State("BGET"):
                m.d.sync += cur.eq(back_in)
                with m.If(n == 0):
                    m.d.sync += [t.eq(back_in) for sec in btaps for t in sec]
                m.next = "BS0M0"
            for s in range(coefs.sections):
                x1, x2, y1, y2 = btaps[s]
                g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
                _section_states(m, f"BS{s}", cur, btaps[s], (g, a1, a2), mul_a, mul_b, acc,
                                product)
                with m.State(f"BS{s}WB"):
                    m.d.sync += [x2.eq(x1), x1.eq(cur), y2.eq(y1), y1.eq(y)]
                    if s + 1 < coefs.sections:
                        m.d.sync += cur.eq(y)
                        m.next = f"BS{s + 1}M0"
                        continue
                    with m.If(~backward):
                        m.d.comb += [s_wr.addr.eq(n), s_wr.data.eq(y), s_wr.en.eq(1)]
                        with m.If(n == p - 1):
                            m.d.sync += [backward.eq(1), n.eq(0)]
                            m.next = "BREAD"
                        with m.Else():
                            m.d.sync += n.eq(n + 1)
                            m.next = "PREAD"
                    with m.Else():
                        # window index of this sample: w - 1 - (n - p); keep the oldest hop
                        with m.If(n >= p + w - h):
                            with m.Switch(c):
                                for a in range(ch):
                                    with m.Case(a):
                                        m.d.comb += [
                                            o_wr[a].addr.eq((p + w - 1 - n)[:hop_bits]),
                                            o_wr[a].data.eq(y_out), o_wr[a].en.eq(1)]
                        with m.If(n == p + w - 1):
                            with m.If(c == ch - 1):
                                m.d.sync += e.eq(0)
                                m.next = "ERD"
                            with m.Else():
                                m.d.sync += c.eq(c + 1)
                                m.next = "COPY"
                        with m.Else():
                            m.d.sync += n.eq(n + 1)
                            m.next = "BREAD"
            with m.State("ERD"):                          # output RAMs read beat e
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    with m.If(e == h - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += e.eq(e + 1)
                        m.next = "ERD"
        return m
