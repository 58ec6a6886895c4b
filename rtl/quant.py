# SPDX-License-Identifier: BSD-3-Clause
"""Per-token activation quantizer and the linear-layer dequantizer, bit-exact to golden.quant.

Both are pipelined so that no register-to-register path has more than one carry chain (or a
small multiplier) and a few LUTs (issue #12): every per-element step has its own register.

``Quantizer``
    Two passes over each token. Pass 1 stores the token's beats in one bank of a ping-pong
    buffer (read synchronously, so block RAM where it is deep enough) and finds ``amax = max
    |x|`` through a pipeline (the magnitudes, a tree of pairwise maxima with one level a stage,
    the running maximum), while pass 2 of the token before reads the other bank. Pass 2
    reads the beats back and emits ``q = sign(x) * floor((254 |x| + amax) / (2 amax))``
    (``golden.quant.quantize_activations``) through a per-lane pipelined restoring divider: one
    compare/subtract row a stage, seven rows (``|x| <= amax`` bounds the quotient by 127).
``Dequantizer``
    Per token, ``amax`` is normalized (five one-step leading-zero shifts), one sequential
    ``arith.Divider`` gives ``floor(2**e0 * 4 amax / 127)``, and its rounding picks the
    activation Scale ``(m_x, e_x)`` of ``amax / 127`` exactly as ``golden.fixed.ratio_scale``;
    then each accumulator goes ``acc * (m_x * m_w)`` (partial products of at most 18 x 18
    bits, two sums, the product) -> a rounding shift (coarse, fine, the rounding increment)
    -> int32 saturation, one step a stage (``golden.quant.dequantize``).

Both stream ``lanes`` elements per beat with a ``last`` flag on a token's final beat; a token
of K elements is ``ceil(K / lanes)`` beats, the lanes past K in the final beat being zero (a
zero lane changes neither ``amax`` nor any other lane and quantizes to 0). Their output
pipelines stall as a whole while the output beat waits (``ready`` low), so back-pressure never
reorders or drops a beat.

Stall-free timing (``cycles``) counts the cycles from the one accepting a job's first input
beat to the one accepting its last output beat, both included.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import fixed
from . import arith, pipeline

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


def _max(m, a, b, name):
    return arith.wire(m, len(a), Mux(a > b, a, b), name=name)


class Quantizer(wiring.Component):
    """Per-token absmax INT8 quantizer (two passes through a ping-pong token buffer).

    Parameters
    ----------
    lanes : int
        Q16 elements per beat (and INT8 results per output beat).
    max_k : int
        Longest token (elements). The buffer holds two tokens of ``ceil(max_k / lanes)`` beats
        of ``lanes * 32`` bits (ping-pong banks, tokens alternating): pass 1 of the next token
        fills one bank while pass 2 of this one reads the other.

    Attributes
    ----------
    x : In(stream.Signature(token_layout(signed(32), lanes, "x")))
        Q16 activations, ``last`` on each token's final beat. Taken while the bank the token
        goes into is free: the next token at once, the one after once this token's pass 2 has
        read its last beat.
    q : Out(stream.Signature(token_layout(signed(8), lanes, "q")))
        INT8 activations in [-127, 127], same beat structure as ``x``.
    amax : Out(stream.Signature(unsigned(32)))
        One beat per token: ``max |x|`` (Q16; 0 for an all-zero token), offered ``pass2_start``
        cycles after the token's last input beat, or once the previous token's pass 2 has read
        its last beat if that is later. The token's pass 2 starts in the cycle the beat is
        taken, so a consumer that takes the next token's amax only when it is ready for that
        token's results (the ``Dequantizer``) paces pass 2.
    """

    #: pass-2 stages from a buffer read to the output register: the read, ``|x|``, ``254 |x|``,
    #: ``+ amax``, seven divider rows, the sign
    DIVIDER_ROWS = 7

    def __init__(self, *, lanes: int = 4, max_k: int = 4096):
        self.lanes = arith.check_positive("lanes", lanes)
        self.max_k = arith.check_positive("max_k", max_k)
        self.depth = _ceil_div(max_k, lanes)
        super().__init__({
            "x": In(stream.Signature(token_layout(signed(32), lanes, "x"))),
            "q": Out(stream.Signature(token_layout(signed(8), lanes, "q"))),
            "amax": Out(stream.Signature(unsigned(32))),
        })

    @property
    def tree_stages(self) -> int:
        """Stages of the pass-1 tree of pairwise maxima over the lanes: ``ceil(log2(lanes))``,
        at least one."""
        return max(1, (self.lanes - 1).bit_length())

    @property
    def pass2_start(self) -> int:
        """Cycles from accepting a token's last input beat to the first cycle its ``amax``
        beat is offered (and, taken at once, its first buffer read): the magnitude register,
        the tree, the running-maximum stage."""
        return self.tree_stages + 2

    @property
    def latency(self) -> int:
        """Cycles from a pass-2 buffer read to its output beat (stall-free): the read
        register, ``|x|``, ``254 |x|`` and ``+ amax`` over three stages (no carry chain of
        more than 22 bits), the divider rows, the sign (the output register)."""
        return 5 + self.DIVIDER_ROWS + 1

    def cycles(self, tokens: int, k: int) -> int:
        """Stall-free cycles for ``tokens`` tokens of ``k`` elements each (``B = ceil(k /
        lanes)`` beats), from accepting the first input beat to accepting the last output
        beat, both included.

        With token i's first and last input beats in cycles ``f[i]`` and ``a[i] = f[i] + B -
        1`` and its first buffer read in ``p[i]`` (reads one a cycle)::

            f[0] = 0,  f[1] = B,  f[i] = max(a[i-1] + 1, p[i-2] + B)   (its bank free)
            p[0] = a[0] + pass2_start,  p[i] = max(a[i] + pass2_start, p[i-1] + B)
            cycles = p[tokens-1] + B + latency

        so a long stream of tokens takes about B cycles a token (the passes overlap)."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("k", k)
        if k > self.max_k:
            raise ValueError(f"k={k} exceeds this quantizer's max_k={self.max_k}")
        b = _ceil_div(k, self.lanes)
        last, reads = -1, []
        for i in range(tokens):
            first = last + 1 if i < 2 else max(last + 1, reads[i - 2] + b)
            last = first + b - 1
            reads.append(last + self.pass2_start if i == 0
                         else max(last + self.pass2_start, reads[i - 1] + b))
        return reads[-1] + b + self.latency

    def elaborate(self, platform):
        m = Module()
        lanes, depth = self.lanes, self.depth
        m.submodules.buffer = buffer = memory.Memory(
            shape=data.ArrayLayout(signed(32), lanes), depth=2 * depth, init=[])
        write = buffer.write_port()
        read = buffer.read_port()                  # synchronous: block RAM where deep enough

        # Tokens alternate between the two banks: pass 1 stores into ``wbank``, pass 2 reads
        # ``rbank``, and ``cbank`` is the bank of the token whose last beat is at the
        # running-maximum stage. Per bank: the token's beats, its amax, whether the bank holds
        # a token not yet read out (``busy``) and whether its amax is waiting to be taken.
        wbank, rbank, cbank = Signal(), Signal(), Signal()
        count = Signal(range(depth + 1))           # beats stored of the token in pass 1
        stored = Array(Signal(range(depth + 1), name=f"stored{b}") for b in range(2))
        busy = Array(Signal(name=f"busy{b}") for b in range(2))
        known = Array(Signal(name=f"known{b}") for b in range(2))
        amaxes = Array(Signal(32, name=f"amax{b}") for b in range(2))
        zeros = Array(Signal(name=f"amax{b}_zero") for b in range(2))
        index = Signal(range(depth + 1))           # next beat to read in pass 2
        emitting = Signal()                        # pass 2 is reading the buffer
        running = Signal(32)

        # ---- pass 1: store, and amax through magnitude / tree / running-max stages ----
        accept = self.x.valid & self.x.ready
        m.d.comb += [
            self.x.ready.eq(~busy[wbank]),
            write.addr.eq(Mux(wbank, count + depth, count)),
            write.data.eq(self.x.payload.x),
            write.en.eq(accept),
        ]
        with m.If(accept):
            m.d.sync += count.eq(count + 1)
            with m.If(self.x.payload.last):
                m.d.sync += [stored[wbank].eq(count + 1), count.eq(0), busy[wbank].eq(1),
                             wbank.eq(~wbank)]

        level = [Signal(32, name=f"abs{i}") for i in range(lanes)]
        valid, last = Signal(name="abs_valid"), Signal(name="abs_last")
        m.d.sync += [valid.eq(accept), last.eq(self.x.payload.last)]
        for i, mag in enumerate(level):
            x = self.x.payload.x[i]
            m.d.sync += mag.eq(Mux(x < 0, -x, x)[:32])
        for depth_ in range(self.tree_stages):
            pairs = [_max(m, level[j], level[j + 1], name=f"max{depth_}_{j}")
                     for j in range(0, len(level) - 1, 2)]
            nxt = [Signal(32, name=f"tree{depth_}_{j}")
                   for j in range(_ceil_div(len(level), 2))]
            nxt_valid = Signal(name=f"tree{depth_}_valid")
            nxt_last = Signal(name=f"tree{depth_}_last")
            m.d.sync += [nxt_valid.eq(valid), nxt_last.eq(last)]
            m.d.sync += [s.eq(v) for s, v in zip(nxt, pairs + level[len(pairs) * 2:],
                                                 strict=True)]
            level, valid, last = nxt, nxt_valid, nxt_last
        beat_max = level[0]
        new_max = _max(m, beat_max, running, name="new_max")
        with m.If(valid):
            with m.If(last):
                # the bank's previous token was read out and its amax taken before this
                # token's first beat could be stored there
                m.d.sync += [amaxes[cbank].eq(new_max),
                             zeros[cbank].eq((beat_max == 0) & (running == 0)),
                             known[cbank].eq(1), cbank.eq(~cbank), running.eq(0)]
            with m.Else():
                m.d.sync += running.eq(new_max)

        # ---- pass 2: read, |x|, 254 |x|, + amax, 7 divider rows, sign; stalls as a whole ----
        # A token's pass 2 starts in the cycle its amax beat is taken; each beat carries its
        # token's amax down to the stage that uses it, so the next token may follow at once.
        advance = ~self.q.valid | self.q.ready
        m.d.comb += [self.amax.valid.eq(known[rbank] & ~emitting),
                     self.amax.payload.eq(amaxes[rbank])]
        start = self.amax.valid & self.amax.ready
        issue = (emitting | start) & advance
        final = index == stored[rbank] - 1
        m.d.comb += [read.addr.eq(Mux(rbank, index + depth, index)), read.en.eq(advance)]
        with m.If(start):
            m.d.sync += [emitting.eq(1), known[rbank].eq(0)]
        with m.If(issue):
            m.d.sync += index.eq(index + 1)
            with m.If(final):
                m.d.sync += [emitting.eq(0), index.eq(0), busy[rbank].eq(0),
                             rbank.eq(~rbank)]

        # the stages load only while a beat is in flight (none while idle)
        active = Signal()
        stage_valids = []

        def stage(name, shape, value, *, reset_less=None):
            # data stages have no reset (a simulator then evaluates them only when enabled);
            # the valid bits do
            if reset_less is None:
                reset_less = not name.endswith("_valid")
            s = Signal(shape, name=name, reset_less=reset_less)
            with m.If(advance & active):
                m.d.sync += s.eq(value)
            return s

        # dividing an all-zero token by 1 instead of 0 gives its zeros
        token_amax = amaxes[rbank]
        read_amax = stage("read_amax", 32, Cat(token_amax[0] | zeros[rbank], token_amax[1:]))
        last_read = stage("read_last", 1, final)
        v_read, v_abs, v_mul, v_mul2 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += v_read.eq(Mux(advance, issue, v_read))
        with m.If(advance):
            m.d.sync += [v_abs.eq(v_read), v_mul.eq(v_abs), v_mul2.eq(v_mul)]
        last_abs = stage("mag_last", 1, last_read)
        mag_amax = stage("mag_amax", 32, read_amax)
        last_mul = stage("mul_last", 1, last_abs)
        mul_amax = stage("mul_amax", 32, mag_amax)
        last_mul2 = stage("mul2_last", 1, last_mul)
        mul2_amax = stage("mul2_amax", 32, mul_amax)
        v, lst = stage("num_valid", 1, v_mul2), stage("num_last", 1, last_mul2)
        stage_valids.append(v)
        divisor = stage("num_divisor", 32, mul2_amax, reset_less=False)

        lane_rest, lane_neg = [], []
        for i in range(lanes):
            x = read.data[i]
            mag = stage(f"mag{i}", 32, Mux(x < 0, -x, x)[:32])
            neg = stage(f"mag{i}_neg", 1, x < 0)
            # 254 |x| + amax < 2**39, as 2 (128 |x| - |x|) + amax in 20- and 19-bit halves:
            # mul: the low half of 127 |x| and its borrow; mul2: its high half, and the low
            # half of the sum with its carry; num: the sum's high half
            low = stage(f"mul{i}_lo", 21, Cat(Const(0, 7), mag[:13]) - mag[:20])
            high_a, high_b = stage(f"mul{i}_ha", 19, mag[13:]), stage(f"mul{i}_hb", 19, mag[20:])
            neg = stage(f"mul{i}_neg", 1, neg)
            high = stage(f"mul2{i}_hi", 19, pipeline.carry_add(high_a, ~high_b, ~low[20])[:19])
            sum_low = stage(f"mul2{i}_sum", 22, Cat(Const(0, 1), low[:20]) + mul_amax[:21])
            amax_high = stage(f"mul2{i}_amax", 11, mul_amax[21:])
            neg = stage(f"mul2{i}_neg", 1, neg)
            sum_high = pipeline.carry_add(high, amax_high, sum_low[21])[:18]
            lane_rest.append(stage(f"num{i}", 39, Cat(sum_low[:21], sum_high)))
            lane_neg.append(stage(f"num{i}_neg", 1, neg))
        quotients = [None] * lanes
        for row in reversed(range(self.DIVIDER_ROWS)):
            # the dividend is below (2 amax) << (row + 1): one compare/subtract of 2 amax << row
            for i in range(lanes):
                rest = lane_rest[i]
                # the shifted divisor's low row + 1 bits are 0: compare and subtract above
                # them only (the compare's own carry chain, no sign bit past the difference)
                above = rest[row + 1:]
                high = arith.wire(m, len(above), (above - divisor)[:len(above)],
                                  name=f"row{row}_{i}_diff")
                diff = Cat(rest[:row + 1], high)
                take = arith.wire(m, 1, above >= divisor, name=f"row{row}_{i}_take")
                bits = take if quotients[i] is None else Cat(take, quotients[i])
                quotients[i] = stage(f"row{row}_{i}_q", len(bits), bits)
                if row:
                    # (with a reset, as the divisor's: bits that pass a row unchanged would
                    # otherwise become SRL16Es in front of a later row's compare)
                    lane_rest[i] = stage(f"row{row}_{i}", 32 + row,
                                         Mux(take, diff, rest)[:32 + row], reset_less=False)
                lane_neg[i] = stage(f"row{row}_{i}_neg", 1, lane_neg[i])
            v, lst = stage(f"row{row}_valid", 1, v), stage(f"row{row}_last", 1, lst)
            stage_valids.append(v)
            if row:
                # (with a reset: a reset-less chain becomes SRL16Es, whose outputs would
                # start the next row's compare one logic level deeper)
                divisor = stage(f"row{row}_divisor", 32, divisor, reset_less=False)
        m.d.comb += active.eq(Cat(issue, v_read, v_abs, v_mul, v_mul2, *stage_valids).any())
        with m.If(advance):
            m.d.sync += [self.q.valid.eq(v), self.q.payload.last.eq(lst)]
            for i in range(lanes):
                m.d.sync += self.q.payload.q[i].eq(Mux(lane_neg[i], -quotients[i],
                                                       quotients[i]))
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
        ``(m, e)`` (``golden.quant.weight_scale``). Taken once the token before's accumulators
        have started, so a token's setup overlaps the token before.
    acc : In(stream.Signature(token_layout(signed(acc_width), lanes, "acc")))
        The token's accumulators, ``last`` on its final beat.
    y : Out(stream.Signature(token_layout(signed(32), lanes, "y")))
        Q16 results, same beat structure.
    """

    #: the leading-zero normalization of amax, one shift a stage
    NORMALIZE_STEPS = (16, 8, 4, 2, 1)
    #: quotient bits of ``floor(v / 127)`` for the normalized ``v`` in [2**24, 2**25)
    QUOTIENT_WIDTH = 19

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
        """Cycles from accepting a token's scale beat to accepting its first accumulator beat:
        the normalization, the divider (``QUOTIENT_WIDTH + 1``), the Scale's register and the
        product's."""
        return len(self.NORMALIZE_STEPS) + self.QUOTIENT_WIDTH + 1 + 2

    @property
    def latency(self) -> int:
        """Cycles from accepting an accumulator beat to its output beat (stall-free): the
        input register, partial products, their sums, the product's two halves, the coarse
        and fine shifts, the rounding increment, the saturation."""
        return 9

    #: cycles from a token's last accumulator beat to the next token's first: its element
    #: through the six stages that use the token's product and shift, then the switch
    TOKEN_GAP = 8

    def cycles(self, tokens: int, n: int) -> int:
        """Stall-free cycles, from the first scale beat to the last output, for ``tokens``
        tokens of ``n`` outputs each (B = ``ceil(n / lanes)`` beats): the next token's scale
        is taken in the cycle this token's accumulators start (its setup overlaps them), so
        token i + 1's first accumulator beat comes ``max(setup_cycles, B - 1 + TOKEN_GAP)``
        cycles after token i's: ``setup_cycles + (tokens - 1) * max(setup_cycles, B - 1 +
        TOKEN_GAP) + B + latency``."""
        arith.check_positive("tokens", tokens)
        arith.check_positive("n", n)
        b = _ceil_div(n, self.lanes)
        period = max(self.setup_cycles, b - 1 + self.TOKEN_GAP)
        return self.setup_cycles + (tokens - 1) * period + b + self.latency

    def elaborate(self, platform):
        m = Module()
        qw = self.QUOTIENT_WIDTH

        # ---- per token: amax / 127 as a Scale, times the weight's; the shift ----
        # With v = amax << lz normalized (bit 31 set), golden's e0 = 16 + 7 - bit_length(amax)
        # = lz - 9 and its quotient floor(amax * 2**(e0 + 2) / 127) is floor((v >> 7) / 127)
        # whichever sign e0 + 2 has (floor(floor(a / 2**j) / 127) = floor(a / (127 * 2**j))).
        m.submodules.divider = divider = arith.Divider(num_width=25, den_width=7,
                                                       quotient_width=qw)
        # the next token's scale may be taken once this token's accumulators stream: its setup
        # overlaps them, and it replaces this token's product and shift after its last one
        busy = Signal()                            # from the scale beat to the product
        streaming = Signal()
        w_m = Signal(16)                           # 0 for an all-zero token: its outputs are 0
        w_e = Signal(signed(8))
        take_scale = self.scale.valid & self.scale.ready
        m.d.comb += self.scale.ready.eq(~busy)
        with m.If(take_scale):
            m.d.sync += [busy.eq(1), w_e.eq(self.scale.payload.w_e),
                         w_m.eq(Mux(self.scale.payload.amax == 0, 0, self.scale.payload.w_m))]
        value, lz, valid = self.scale.payload.amax, 0, take_scale
        for step in self.NORMALIZE_STEPS:
            shifts = value[32 - step:] == 0
            nv = Signal(32, name=f"norm{step}")
            nlz = Signal(range(32), name=f"norm{step}_lz")
            nvalid = Signal(name=f"norm{step}_valid")
            m.d.sync += nvalid.eq(valid)
            with m.If(valid):                      # held until the divider's result is used
                m.d.sync += [nv.eq(Mux(shifts, value << step, value)),
                             nlz.eq(lz + Mux(shifts, step, 0))]
            value, lz, valid = nv, nlz, nvalid
        m.d.comb += [divider.i.valid.eq(valid), divider.i.payload.num.eq(value[7:]),
                     divider.i.payload.den.eq(127), divider.o.ready.eq(1)]
        # The shift s = e_x + e_w - 16 of the Q16 product, done as one right shift of
        # product << 34 by t = 33 + s clamped to [-33, 63] (where scale_sat32 clamps it). Each
        # of golden's three exponents e_x - 16 = lz - 9 - j has its t precomputed in three
        # registered steps while the divider runs (lz and w_e stay put until the next token).
        t_pre = []
        for j in range(3):
            s_j = Signal(signed(10), name=f"shift{j}")
            above, below = Signal(name=f"shift{j}_above"), Signal(name=f"shift{j}_below")
            biased = Signal(signed(11), name=f"shift{j}_biased")
            t_j = Signal(range(97), name=f"t{j}")
            m.d.sync += [s_j.eq(lz + w_e - (9 + j)), above.eq(s_j > 63), below.eq(s_j < -33),
                         biased.eq(33 + s_j),
                         t_j.eq(Mux(above, 96, Mux(below, 0, biased[:7])))]
            t_pre.append(t_j)
        # golden lowers e at most twice: the first j with a 16-bit rounded mantissa
        quotient = divider.o.payload.quotient
        m_x = Signal(16)
        t_x = Signal(range(97))
        have_scale = Signal()
        candidates = [arith.wire(m, 18, ((quotient >> (1 + j)) + 1) >> 1, name=f"m{j}")
                      for j in range(3)]
        with m.If(divider.o.valid):
            m.d.sync += have_scale.eq(1)
            with m.If(candidates[0] < (1 << 16)):
                m.d.sync += [m_x.eq(candidates[0]), t_x.eq(t_pre[0])]
            with m.Elif(candidates[1] < (1 << 16)):
                m.d.sync += [m_x.eq(candidates[1]), t_x.eq(t_pre[1])]
            with m.Else():
                m.d.sync += [m_x.eq(candidates[2]), t_x.eq(t_pre[2])]

        # ---- per element: product, rounding shift, saturation; stalls as a whole ----
        advance = ~self.y.valid | self.y.ready
        m.d.comb += self.acc.ready.eq(streaming & advance)
        accept = self.acc.valid & self.acc.ready
        product_m = Signal(32)                     # m_x * m_w
        t = Signal(range(97))
        valids = []
        # the stages load only while an element is in flight (none while idle)
        active = Signal()

        def stage(name, shape, value):
            # data stages have no reset (a simulator then evaluates them only when enabled);
            # the valid bits do
            s = Signal(shape, name=name, reset_less=not name.endswith("_valid"))
            with m.If(advance & active):
                m.d.sync += s.eq(value)
            return s

        # a token's product and shift may replace the previous token's once no element of
        # that one is still before the stages that use them
        idle = Signal()
        with m.If(have_scale & idle & ~streaming):
            m.d.sync += [have_scale.eq(0), busy.eq(0), streaming.eq(1),
                         product_m.eq(m_x * w_m), t.eq(t_x)]
        with m.If(accept & self.acc.payload.last):
            m.d.sync += streaming.eq(0)

        v = stage("acc_valid", 1, accept)
        lst = stage("acc_last", 1, self.acc.payload.last)
        valids.append(v)
        width = self.acc_width
        pieces = [(0, None)] if width <= 18 else [(0, 17), (17, None)]
        halves = (product_m[:16], product_m[16:])
        lanes_out = []
        for i in range(self.lanes):
            a = stage(f"acc{i}", signed(width), self.acc.payload.acc[i])
            lanes_out.append(a)
        names = ("pp", "sum", "prod_lo", "prod", "coarse", "fine", "round")
        results = []
        for i, a in enumerate(lanes_out):
            parts = []
            for lo, hi in pieces:
                piece = a[lo:hi] if hi is not None else (a[lo:].as_signed() if lo else a)
                parts.append([(stage(f"pp{i}_{lo}_{h}", signed(len(piece) + 18),
                                     piece * half), lo) for h, half in enumerate(halves)])
            sums = []
            for h in range(2):
                total = sum((p[h][0] << p[h][1] for p in parts), start=0)
                sums.append(stage(f"sum{i}_{h}", signed(width + 17), total))
            # product = sums[0] + (sums[1] << 16) as two carry chains of half its width, a
            # stage each: the low half's carry goes into the high half's sum as its LSB
            total = width + 17
            split = total // 2
            upper = arith.wire(m, signed(total), sums[0] >> 16, name=f"prod{i}_upper")
            low16 = stage(f"prod_lo{i}_16", 16, sums[0][:16])
            low = stage(f"prod_lo{i}", split + 1, upper[:split] + sums[1][:split])
            upper_hi = stage(f"prod_lo{i}_a", signed(total - split), upper[split:].as_signed())
            sums_hi = stage(f"prod_lo{i}_b", signed(total - split),
                            sums[1][split:].as_signed())
            high_sum = (Cat(Const(1, 1), upper_hi).as_signed()
                        + Cat(low[split], sums_hi).as_signed()) >> 1
            product = stage(f"prod{i}", signed(width + 33),
                            Cat(low16, low[:split], high_sum)[:width + 33].as_signed())
            # z = (product << 34) >> t; only its low 34 bits are kept (the coarse shift by
            # 8 * t[3:] keeps the 41 the fine one needs). z fits 34 bits signed iff 2 * product
            # is in [-2**t, 2**t), that is iff bit_length(2 * product ^ its sign) <= t: a
            # priority encoder beside the coarse shift, a compare beside the fine one
            wide = product << 34
            sign = product[-1]
            coarse = stage(f"coarse{i}", signed(41), (wide >> Cat(Const(0, 3), t[3:]))[:41])
            magnitude = Cat(sign, product[:-1] ^ sign.replicate(len(product) - 1))
            length = stage(f"coarse{i}_length", range(len(product) + 1),
                           arith.bit_length(m, magnitude, name=f"dequant{i}_length"))
            coarse_neg = stage(f"coarse{i}_neg", 1, sign)
            z = stage(f"fine{i}", signed(34), coarse >> t[:3])
            fine_in_range = stage(f"fine{i}_in_range", 1, length <= t)
            fine_neg = stage(f"fine{i}_neg", 1, coarse_neg)
            in_range = stage(f"round{i}_in_range", 1, fine_in_range)
            negative = stage(f"round{i}_neg", 1, fine_neg)
            rounded = stage(f"round{i}", signed(34), (z + 1) >> 1)
            # int32 iff bits 31..33 agree: one LUT instead of two 34-bit compares; out of
            # range either way, the sign is z's
            fits = (rounded[31:] == 0) | (rounded[31:] == 0b111)
            results.append(arith.wire(m, signed(32), Mux(
                in_range & fits, rounded[:32],
                Mux(negative, fixed.INT32_MIN, fixed.INT32_MAX)), name=f"sat{i}"))
        for name in names:
            v = stage(f"{name}_valid", 1, v)
            lst = stage(f"{name}_last", 1, lst)
            valids.append(v)
        m.d.comb += active.eq(Cat(accept, *valids).any())
        # product_m feeds the partial products, t the coarse and fine shifts
        m.d.comb += idle.eq(~(valids[0] | valids[1] | valids[2] | valids[3] | valids[4]
                              | valids[5]))
        with m.If(advance):
            m.d.sync += [self.y.valid.eq(v), self.y.payload.last.eq(lst)]
            for i, out in enumerate(results):
                m.d.sync += self.y.payload.y[i].eq(out)
        return m
