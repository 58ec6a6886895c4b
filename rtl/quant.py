# SPDX-License-Identifier: BSD-3-Clause
"""Per-token activation quantizer and the linear-layer dequantizer, bit-exact to golden.quant.

``Quantizer``
    Two passes over one token: pass 1 stores the token's beats in a buffer and tracks
    ``amax = max |x|``; pass 2 reads them back and emits
    ``q = sign(x) * floor((254 |x| + amax) / (2 amax))`` (``golden.quant.quantize_activations``)
    with one 7-row array divider per lane: ``|x| <= amax`` bounds the quotient by 127.
``Dequantizer``
    Per token, one ``RatioScale`` (a leading-zero count and a 19-bit sequential division) turns
    ``amax`` into the activation Scale ``(m_x, e_x)`` of ``amax / 127`` (``e_x`` += 16: Q16); then
    each accumulator is ``sat32(round(acc * m_x * m_w * 2**-(e_x + e_w - 16)))``
    (``golden.quant.dequantize``).

Both stream ``lanes`` elements per beat with a ``last`` flag on a token's final beat; a token
of K elements is ``ceil(K / lanes)`` beats, the lanes past K in the final beat being zero (a
zero lane changes neither ``amax`` nor any other lane and quantizes to 0).

Stall-free timing (``cycles``) counts the cycles from the one accepting a job's first input
beat to the one accepting its last output beat, both included.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import arith

__all__ = ["token_layout", "token_scale_layout", "Quantizer", "Dequantizer"]


def _ceil_div(a, b):
    return -(-a // b)


def token_layout(element_shape, lanes: int, field: str) -> data.StructLayout:
    """One beat of a token: ``field`` (``lanes`` elements) and ``last`` (the token's final beat)."""
    return data.StructLayout({field: data.ArrayLayout(element_shape, lanes), "last": 1})


def token_scale_layout() -> data.StructLayout:
    """The Dequantizer's per-token beat: ``amax`` (Q16, unsigned) and the weight Scale
    ``w_m`` (16-bit mantissa), ``w_e`` (signed exponent)."""
    return data.StructLayout({"amax": unsigned(32), "w_m": unsigned(16), "w_e": signed(8)})


class Quantizer(wiring.Component):
    """Per-token absmax INT8 quantizer (two passes through a token buffer).

    Parameters
    ----------
    lanes : int
        Q16 elements per beat (and INT8 results per output beat).
    max_k : int
        Longest token (elements). The token buffer holds ``ceil(max_k / lanes)`` beats of
        ``lanes * 32`` bits: one token, so pass 1 of the next token starts when pass 2 of this
        one has issued its last beat (no ping-pong; double the buffer to overlap them).

    Attributes
    ----------
    x : In(stream.Signature(token_layout(signed(32), lanes, "x")))
        Q16 activations, ``last`` on each token's final beat.
    q : Out(stream.Signature(token_layout(signed(8), lanes, "q")))
        INT8 activations in [-127, 127], same beat structure as ``x``.
    amax : Out(stream.Signature(unsigned(32)))
        One beat per token: ``max |x|`` (Q16; 0 for an all-zero token), presented when the
        token's last input beat has been accepted.
    """

    def __init__(self, *, lanes: int = 4, max_k: int = 4096):
        self.lanes = arith.check_positive("lanes", lanes)
        self.max_k = arith.check_positive("max_k", max_k)
        self.depth = _ceil_div(max_k, lanes)
        super().__init__({
            "x": In(stream.Signature(token_layout(signed(32), lanes, "x"))),
            "q": Out(stream.Signature(token_layout(signed(8), lanes, "q"))),
            "amax": Out(stream.Signature(unsigned(32))),
        })

    def cycles(self, tokens: int, k: int) -> int:
        """Stall-free cycles for ``tokens`` tokens of ``k`` elements each:
        ``2 * tokens * ceil(k / lanes) + 1`` (one beat per cycle into the buffer, one out)."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("k", k)
        if k > self.max_k:
            raise ValueError(f"k={k} exceeds this quantizer's max_k={self.max_k}")
        return 2 * tokens * _ceil_div(k, self.lanes) + 1

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        m.submodules.buffer = buffer = memory.Memory(
            shape=data.ArrayLayout(signed(32), lanes), depth=self.depth, init=[])
        write = buffer.write_port()
        read = buffer.read_port(domain="comb")

        count = Signal(range(self.depth + 1))      # beats stored in pass 1
        index = Signal(range(self.depth + 1))      # next beat to read in pass 2
        running = Signal(32)
        amax = Signal(32)
        emitting = Signal()                        # 0: pass 1 (load), 1: pass 2 (emit)

        magnitudes = [Signal(32, name=f"abs{i}") for i in range(lanes)]
        for i, mag in enumerate(magnitudes):
            x = self.x.payload.x[i]
            m.d.comb += mag.eq(Mux(x < 0, -x, x)[:32])
        beat_max = magnitudes[0]
        for i, mag in enumerate(magnitudes[1:], 1):
            beat_max = arith.wire(m, 32, Mux(mag > beat_max, mag, beat_max), name=f"bmax{i}")
        new_max = arith.wire(m, 32, Mux(beat_max > running, beat_max, running), name="new_max")

        # pass 1: a new token waits until the previous token's amax has been taken
        m.d.comb += [
            self.x.ready.eq(~emitting & ~self.amax.valid),
            write.addr.eq(count),
            write.data.eq(self.x.payload.x),
            write.en.eq(self.x.valid & self.x.ready),
            self.amax.payload.eq(amax),
        ]
        with m.If(self.amax.valid & self.amax.ready):
            m.d.sync += self.amax.valid.eq(0)
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [count.eq(count + 1), running.eq(new_max)]
            with m.If(self.x.payload.last):
                m.d.sync += [amax.eq(new_max), self.amax.valid.eq(1), running.eq(0),
                             emitting.eq(1), index.eq(0)]

        # pass 2: divisor 2*amax, dividend 254|x| + amax < 256 amax, so 7 quotient bits
        safe = Signal(32)
        m.d.comb += [safe.eq(Mux(amax == 0, 1, amax)), read.addr.eq(index)]
        out_free = ~self.q.valid | self.q.ready
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += self.q.valid.eq(0)
        with m.If(emitting & out_free):
            m.d.sync += [self.q.valid.eq(1), self.q.payload.last.eq(index == count - 1),
                         index.eq(index + 1)]
            with m.If(index == count - 1):
                m.d.sync += [emitting.eq(0), count.eq(0)]
        for i in range(lanes):
            x = read.data[i]
            mag = arith.wire(m, 32, Mux(x < 0, -x, x)[:32], name=f"rabs{i}")
            quotient = arith.divide_unrolled(m, arith.wire(m, 41, 254 * mag + safe),
                                             arith.wire(m, 33, safe << 1), 7, name=f"q{i}")
            with m.If(emitting & out_free):
                m.d.sync += self.q.payload.q[i].eq(Mux(x < 0, -quotient, quotient))
        return m


class Dequantizer(wiring.Component):
    """Q16 outputs of a ternary linear layer from its integer accumulators.

    Parameters
    ----------
    lanes : int
        Accumulators per beat.
    acc_width : int
        Accumulator width (signed), e.g. the TLMM engine's ``config.acc_width``.

    Attributes
    ----------
    scale : In(stream.Signature(token_scale_layout()))
        One beat per token: its ``amax`` (from ``Quantizer.amax``) and the layer's weight Scale
        ``(m, e)`` (``golden.quant.weight_scale``).
    acc : In(stream.Signature(token_layout(signed(acc_width), lanes, "acc")))
        The token's accumulators, ``last`` on its final beat.
    y : Out(stream.Signature(token_layout(signed(32), lanes, "y")))
        Q16 results, same beat structure.
    """

    def __init__(self, *, lanes: int = 4, acc_width: int = 24):
        self.lanes = arith.check_positive("lanes", lanes)
        self.acc_width = arith.check_positive("acc_width", acc_width)
        if acc_width > 32:
            raise ValueError(f"acc_width must be at most 32 (the product stays below 2**64), "
                             f"got {acc_width}")
        super().__init__({
            "scale": In(stream.Signature(token_scale_layout())),
            "acc": In(stream.Signature(token_layout(signed(acc_width), lanes, "acc"))),
            "y": Out(stream.Signature(token_layout(signed(32), lanes, "y"))),
        })

    @property
    def setup_cycles(self) -> int:
        """Cycles from accepting a token's scale beat to accepting its first accumulator beat."""
        return arith.RatioScale.QUOTIENT_WIDTH + 2

    def cycles(self, tokens: int, n: int) -> int:
        """Stall-free cycles, from the first scale beat to the last output, for ``tokens``
        tokens of ``n`` outputs each: ``tokens * (21 + ceil(n / lanes)) + 1`` (the next
        token's scale beat is accepted right after the previous token's last accumulator)."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("n", n)
        return tokens * (self.setup_cycles + _ceil_div(n, self.lanes)) + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.ratio = ratio = arith.RatioScale(num_width=32, den_width=7)
        zero = Signal()
        w_m = Signal(16)
        w_e = Signal(signed(8))
        product_m = Signal(32)                     # m_x * m_w
        shift = Signal(signed(9))                  # e_x + e_w - 16 = e + e_w
        streaming = Signal()
        amax = self.scale.payload.amax
        m.d.comb += [
            ratio.i.valid.eq(self.scale.valid & ~streaming),
            self.scale.ready.eq(ratio.i.ready & ~streaming),
            ratio.i.payload.num.eq(Mux(amax == 0, 1, amax)),
            ratio.i.payload.den.eq(127),
            ratio.o.ready.eq(1),
        ]
        with m.If(self.scale.valid & self.scale.ready):
            m.d.sync += [zero.eq(amax == 0), w_m.eq(self.scale.payload.w_m),
                         w_e.eq(self.scale.payload.w_e)]
        with m.If(ratio.o.valid):
            m.d.sync += [product_m.eq(Mux(zero, 0, ratio.o.payload.m) * w_m),
                         shift.eq(ratio.o.payload.e + w_e), streaming.eq(1)]

        out_free = ~self.y.valid | self.y.ready
        m.d.comb += self.acc.ready.eq(streaming & out_free)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        with m.If(self.acc.valid & self.acc.ready):
            m.d.sync += [self.y.valid.eq(1), self.y.payload.last.eq(self.acc.payload.last)]
            with m.If(self.acc.payload.last):
                m.d.sync += streaming.eq(0)
        for i in range(self.lanes):
            product = arith.wire(m, signed(self.acc_width + 32),
                                 self.acc.payload.acc[i] * product_m, name=f"prod{i}")
            value = arith.scale_sat32(m, product, shift, name=f"y{i}")
            with m.If(self.acc.valid & self.acc.ready):
                m.d.sync += self.y.payload.y[i].eq(value)
        return m
