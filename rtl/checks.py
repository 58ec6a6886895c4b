# SPDX-License-Identifier: BSD-3-Clause
"""The checks of a decoded instruction, pipelined: is the op known, are its lengths
consistent, and does everything it will read or write lie in the DDR window.

``InstructionCheck`` takes the 16 words of an instruction (``golden.isa``'s layout) and, a
fixed ``LATENCY`` cycles after they settle, holds three verdicts: ``known_op``,
``lengths_ok`` and ``range_ok``. It is a feed-forward pipeline of registers (its only state
the turn of the range check's stream, below): the sequencer and the weight streamer hold an
instruction's words while they wait ``LATENCY`` cycles, then read the verdicts. No path
between its registers has more than a product (a DSP), a 24-bit chunk of an add
(``rtl.pipeline.chunk_add``) or half of a compare, so the checks cost cycles (``LATENCY`` an
instruction), not logic levels.

The range check covers the instruction's whole extent at once, before its first command:
every read and write it will issue lies in the window if, for each of its (at most four)
streams, the first address is beat-aligned and at least ``window_lo``, its strides are
beat-aligned, and the end of the last command, ``base + extra + (T-1) * stride_t +
(H-1) * stride_h + tail * 16``, is at most ``window_hi`` (sums taken without wrap-around).
The four streams take turns, one a cycle, through one pipeline of these products, sums and
compares (the words are held, so any four consecutive verdicts are all four streams'): four
cycles more than four pipelines side by side, a quarter of their multipliers and adders.
The streams, per op (T tokens, H heads, ``b`` a source's beats):

- ``NORM``: source 0 (T, H segments, b0); gamma (1, 1, b1); destination (T, 1, bd);
- ``LINEAR``: source 0 (T, 1, b0); the weight region (``golden.isa.weight_region_bytes``:
  P parts ``weight_part_stride`` apart, ``b1 / P`` beats each); the epilogue operand (words
  9 and 10: T, 1, bd); destination (T, H, bd);
- ``ROPE``: source 0 (T, H, b0); source 1 (T, 1, b1); destination (T, H, bd);
- ``ATTENTION``: the queries (T, H, b0: a tile's queries are contiguous, ``stride_t = 16 *
  b0``, which the length check requires of source 0 and the destination when ``tile > 1``);
  the keys (``keys0 + T - 1`` keys of ``16 * b1`` bytes, KV heads ``(H - 1) >> group_shift``
  apart by ``stride_h``) and the values (the same at ``v_offset``); destination (T, H, bd);
- ``POINTWISE``: sources 0 and 1 and the destination (T, 1, b).
"""

from types import SimpleNamespace

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa
from . import arith
from .pipeline import Stages, chunk_add

__all__ = ["instruction_fields", "InstructionCheck", "WeightCheck"]

#: cycles from the first cycle the words hold to the first the verdicts do: the longest
#: chain of registers, the range check's (the fields, each stream's fields, the stream in
#: turn, its partial products, the products and the two sums of its end over 24-bit chunks,
#: the two-stage compare, the stream's verdict, the three streams' verdicts after it, all
#: four together). The inputs are held, so the shorter chains before the turn need no delay
#: registers to keep step (after it, they are delayed to meet); ``elaborate`` asserts the
#: count.
LATENCY = 20


def instruction_fields(words) -> SimpleNamespace:
    """The fields of an instruction's 16 words (``golden.isa``'s layout) as slices: ``op``,
    ``pw_op``, ``epilogue``, ``tokens``, ``heads``, ``k_steps``, ``n_blocks``, ``w_m``, ``w_e``
    (LINEAR), ``keys0``, ``group_shift``, ``tile``, ``v_offset`` (ATTENTION), and ``src0``,
    ``src1``, ``dst``: each its four words (addr, stride_t, stride_h, beats)."""
    w = words
    return SimpleNamespace(
        op=w[0][:8], pw_op=w[0][8:10], epilogue=w[0][10],
        tokens=w[1][:16], heads=w[1][16:],
        k_steps=w[2][:16], n_blocks=w[2][16:], w_m=w[3][:16], w_e=w[3][16:24],
        keys0=w[2][:16], group_shift=w[2][16:24], tile=w[2][24:32], v_offset=w[3],
        src0=[w[4 + i] for i in range(4)], src1=[w[8 + i] for i in range(4)],
        dst=[w[12 + i] for i in range(4)])


def _add(st, name, x, y):
    """``x + y`` of two (value, stage) pairs, 24 bits a stage."""
    total, stages = chunk_add(st, name, x[0], y[0], chunk=24)
    return total, max(x[1], y[1]) + stages


def _at_most(st, name, x, y):
    """``x <= y`` of two (value, stage) pairs: each half compared in one stage, the halves
    joined in the next."""
    width = max(len(x[0]), len(y[0]))
    xw, yw = arith.wire(st.m, width, x[0]), arith.wire(st.m, width, y[0])
    half = (width + 1) // 2
    lt_hi = st(f"{name}_lt_hi", 1, xw[half:] < yw[half:], reset_less=True)
    eq_hi = st(f"{name}_eq_hi", 1, xw[half:] == yw[half:], reset_less=True)
    le_lo = st(f"{name}_le_lo", 1, xw[:half] <= yw[:half], reset_less=True)
    return st(name, 1, lt_hi | (eq_hi & le_lo), reset_less=True), max(x[1], y[1]) + 2


def _registers(st):
    """``reg(name, shape, value)``: a reset-less register of the stages ``st``."""
    return lambda name, shape, value: st(name, shape, value, reset_less=True)


def _stream_rows(reg, cfg, blocks):
    """The rows (P beats each) of the weight stream of ``blocks`` K-step x N-block entries
    groups (``golden.isa.weight_stream_beats / P``), two registers after ``blocks``."""
    pitch = cfg.cols_per_cycle * isa.entry_pitch(cfg.entry_bits)
    row_bits = cfg.fill_entries_per_cycle * isa.BEAT_BITS
    stream_bits = reg("stream_bits", len(blocks) + pitch.bit_length(), blocks * pitch)
    return reg("stream_rows", len(stream_bits),
               (stream_bits + (row_bits - 1)) >> (row_bits.bit_length() - 1))


def _part_stride_bytes(part_rows):
    """Bytes from one part of a weight stream of ``part_rows`` rows to the next
    (``golden.isa.weight_part_stride``): the rows rounded up to whole pages."""
    page = isa.WEIGHT_PART_ALIGN // isa.BEAT_BYTES
    return (((part_rows + (page - 1)) >> (page.bit_length() - 1))
            << (page.bit_length() - 1 + 4))


class InstructionCheck(wiring.Component):
    """Pipelined checks of one instruction (see the module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
        The engine's geometry (K-step beats, result beats, the weight stream's entries).
    max_tokens, max_k_steps, max_n_blocks : int
        The engine's limits of a LINEAR.
    row_beats, head_beats : int
        Beats of the widest row and of one head.
    max_context, attention_tile : int
        The attention unit's KV-cache length and queries per tile.
    pointwise_ops : tuple of PointwiseOp
        The operations the Pointwise unit has.

    Attributes
    ----------
    words : In(ArrayLayout(32, 16))
        The instruction, held for ``LATENCY`` enabled cycles.
    enable : In(1)
        The pipeline's registers load only while it is high (its data registers have no reset:
        a simulator skips them between instructions).
    window_lo, window_hi : In(32), In(33)
        The DDR window ``[window_lo, window_hi)``.
    known_op, lengths_ok, range_ok : Out(1)
        The verdicts on the words of ``LATENCY`` enabled cycles before (registered).
    """

    LATENCY = LATENCY

    def __init__(self, *, config, max_tokens: int, max_k_steps: int, max_n_blocks: int,
                 row_beats: int, head_beats: int, max_context: int, attention_tile: int,
                 pointwise_ops: tuple):
        self.config = config
        self.max_tokens, self.max_k_steps, self.max_n_blocks = (max_tokens, max_k_steps,
                                                                max_n_blocks)
        self.row_beats, self.head_beats = row_beats, head_beats
        self.max_context, self.attention_tile = max_context, attention_tile
        self.pointwise_ops = tuple(pointwise_ops)
        super().__init__({
            "words": In(data.ArrayLayout(32, isa.WORDS)), "enable": In(1),
            "window_lo": In(32), "window_hi": In(33),
            "known_op": Out(1), "lengths_ok": Out(1), "range_ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.config, self.words
        lanes = isa.LANES
        steps_per_k = cfg.k_per_step // lanes
        parts = cfg.cols_per_cycle // lanes
        ports = cfg.fill_entries_per_cycle

        st = Stages(m, enable=self.enable)
        reg = _registers(st)
        ins = instruction_fields(w)
        op, pw_op, epilogue, tokens, heads = ins.op, ins.pw_op, ins.epilogue, ins.tokens, ins.heads
        k_steps, n_blocks = ins.k_steps, ins.n_blocks
        keys0, group_shift, tile, v_offset = ins.keys0, ins.group_shift, ins.tile, ins.v_offset
        src0, src1, dst = ins.src0, ins.src1, ins.dst       # addr, stride_t, stride_h, beats
        beats0, beats1, beatsd = src0[3], src1[3], dst[3]

        # ---- stage 1: the op, shallow compares, the products of the length checks ----
        ops = {o: reg(f"is_{o.name.lower()}", 1, op == int(o)) for o in isa.Op}
        uses_pointwise = ((op == int(isa.Op.POINTWISE))
                          | ((op == int(isa.Op.LINEAR)) & epilogue))
        pointwise_built = Cat(pw_op == o.value for o in self.pointwise_ops).any()
        known = reg("known", 1, (op >= int(min(isa.Op))) & (op <= int(max(isa.Op)))
                    & (~uses_pointwise | pointwise_built))
        nonzero = reg("nonzero", 1, (tokens != 0) & (heads != 0) & (beats0 != 0))
        k_bits = self.max_k_steps.bit_length()
        n_bits = self.max_n_blocks.bit_length()
        linear_limits = reg("linear_limits", 1,
                            (tokens <= self.max_tokens) & (k_steps != 0)
                            & (k_steps <= self.max_k_steps) & (n_blocks != 0)
                            & (n_blocks <= self.max_n_blocks) & (beats0 <= self.row_beats)
                            & (~epilogue | ((heads == 1) & (pw_op != 3))))
        blocks = reg("blocks", k_bits + n_bits, k_steps[:k_bits] * n_blocks[:n_bits])
        k_beats = reg("k_beats", range(steps_per_k * (1 << k_bits)),
                      k_steps[:k_bits] * steps_per_k)
        heads_beats0 = reg("heads_beats0", 36, heads * beats0)
        heads_beatsd = reg("heads_beatsd", 36, heads * beatsd)
        blocks_parts = reg("blocks_parts", 16 + parts.bit_length(), n_blocks * parts)
        keys_end = reg("keys_end", 18, keys0 + tokens - 1)
        head_rows = reg("head_rows", 1, (beats0 == self.head_beats) & (beats1 == self.head_beats)
                        & (beatsd == self.head_beats))
        attention_fields = reg("attention_fields", 1,
                               (keys0 != 0) & (group_shift < 16) & (tile != 0)
                               & (tile <= self.attention_tile)
                               & ((tile == 1) | ((src0[1] == beats0 << 4)
                                                 & (dst[1] == beatsd << 4))))
        pointwise_rows = reg("pointwise_rows", 1, (heads == 1) & (beats1 == beats0)
                             & (beatsd == beats0) & (pw_op != 3))
        norm_rows = reg("norm_rows", 1, beatsd == beats1)
        beats0_q, beats1_q = reg("beats0_q", 20, beats0), reg("beats1_q", 32, beats1)
        beats0_step = reg("beats0_step", 21, beats0 + steps_per_k)

        # ---- stages 2-4: the LINEAR and NORM length checks ----
        stream_rows = _stream_rows(reg, cfg, blocks)
        linear_ok = reg("linear_ok", 1,
                        linear_limits & (beats0_q <= k_beats)
                        & (beats0_step > k_beats)
                        & (heads_beatsd == blocks_parts))
        stream_ok = reg("stream_ok", 1,
                        beats1_q == stream_rows << (ports.bit_length() - 1))
        norm_ok = reg("norm_ok", 1, (heads_beats0 <= self.row_beats)
                      & (beats1_q == heads_beats0) & norm_rows)
        attention_ok = reg("attention_ok", 1, attention_fields & head_rows
                           & (keys_end <= self.max_context))
        lengths = Mux(ops[isa.Op.NORM], norm_ok,
                      Mux(ops[isa.Op.LINEAR], linear_ok & stream_ok,
                          Mux(ops[isa.Op.ROPE], head_rows,
                              Mux(ops[isa.Op.ATTENTION], attention_ok, pointwise_rows))))
        lengths_ok = reg("lengths", 1, nonzero & lengths)

        # ---- the streams' extents ----
        part_rows = beats1 >> (ports.bit_length() - 1)
        part_stride = reg("part_stride", 32, _part_stride_bytes(part_rows))
        # stage 1: per stream (base, extra, tokens - 1, stride_t, heads - 1, stride_h, tail)
        raw = {name: reg(f"{name}_q", shape, value) for name, shape, value in (
            ("tm1", 16, tokens - 1), ("hm1", 16, heads - 1), ("kv_hm1", 16,
                                                               (heads - 1) >> group_shift[:4]),
            ("s0a", 32, src0[0]), ("s0t", 32, src0[1]), ("s0h", 32, src0[2]),
            ("s0b", 20, beats0),
            ("s1a", 32, src1[0]), ("s1t", 32, src1[1]), ("s1h", 32, src1[2]),
            ("s1b", 20, beats1), ("s1k", 32, beats1 << 4), ("wrows", 20, part_rows),
            ("da", 32, dst[0]), ("dt", 32, dst[1]), ("dh", 32, dst[2]), ("db", 20, beatsd),
            ("voff", 32, v_offset), ("epi", 1, epilogue))}
        r = raw
        zero = 0

        def stream(o_norm, o_linear, o_rope, o_attention, o_pointwise):
            """Mux the (base, extra, t, stride_t, h, stride_h, tail, used) of each op."""
            choice = [(ops[isa.Op.NORM], o_norm), (ops[isa.Op.LINEAR], o_linear),
                      (ops[isa.Op.ROPE], o_rope), (ops[isa.Op.ATTENTION], o_attention)]
            out = list(o_pointwise)
            for flag, fields in reversed(choice):
                out = [Mux(flag, a, b) for a, b in zip(fields, out, strict=True)]
            return out

        one = 1
        streams = [
            # source 0 (the queries of ATTENTION)
            stream((r["s0a"], zero, r["tm1"], r["s0t"], r["hm1"], r["s0h"], r["s0b"], one),
                   (r["s0a"], zero, r["tm1"], r["s0t"], zero, zero, r["s0b"], one),
                   (r["s0a"], zero, r["tm1"], r["s0t"], r["hm1"], r["s0h"], r["s0b"], one),
                   (r["s0a"], zero, r["tm1"], r["s0t"], r["hm1"], r["s0h"], r["s0b"], one),
                   (r["s0a"], zero, r["tm1"], r["s0t"], zero, zero, r["s0b"], one)),
            # source 1: gamma, the weight region, the RoPE table, the keys, b
            stream((r["s1a"], zero, zero, zero, zero, zero, r["s1b"], one),
                   (r["s1a"], zero, ports - 1, part_stride, zero, zero, r["wrows"], one),
                   (r["s1a"], zero, r["tm1"], r["s1t"], zero, zero, r["s1b"], one),
                   (r["s1a"], zero, keys_end, r["s1k"], r["kv_hm1"], r["s1h"], zero, one),
                   (r["s1a"], zero, r["tm1"], r["s1t"], zero, zero, r["s1b"], one)),
            # the values of ATTENTION, the LINEAR epilogue's operand
            stream((zero,) * 7 + (zero,),
                   (r["s1t"], zero, r["tm1"], r["s1h"], zero, zero, r["db"], r["epi"]),
                   (zero,) * 7 + (zero,),
                   (r["s1a"], r["voff"], keys_end, r["s1k"], r["kv_hm1"], r["s1h"], zero, one),
                   (zero,) * 7 + (zero,)),
            # the destination
            stream((r["da"], zero, r["tm1"], r["dt"], zero, zero, r["db"], one),
                   (r["da"], zero, r["tm1"], r["dt"], r["hm1"], r["dh"], r["db"], one),
                   (r["da"], zero, r["tm1"], r["dt"], r["hm1"], r["dh"], r["db"], one),
                   (r["da"], zero, r["tm1"], r["dt"], r["hm1"], r["dh"], r["db"], one),
                   (r["da"], zero, r["tm1"], r["dt"], zero, zero, r["db"], one)),
        ]

        # stage 2: each stream's fields
        names = (("base", 32), ("extra", 32), ("t", 18), ("st", 32), ("h", 16), ("sh", 32),
                 ("tail", 20), ("used", 1))
        fields = [{name: reg(f"x{i}_{name}", shape, value)
                   for (name, shape), value in zip(names, values, strict=True)}
                  for i, values in enumerate(streams)]
        # stage 3: one stream in turn (``turn``, counting while enabled) into the one range
        # pipeline below; the words are held, so any four consecutive verdicts cover all four
        # streams
        turn = Signal(2, reset_less=True)
        with m.If(self.enable):
            m.d.sync += turn.eq(turn + 1)
        f = {name: reg(f"x_{name}", shape,
                       Mux(turn[1], Mux(turn[0], fields[3][name], fields[2][name]),
                           Mux(turn[0], fields[1][name], fields[0][name])))
             for name, shape in names}
        aligned = reg("x_aligned", 1,
                      (f["base"][:4] == 0) & (f["extra"][:4] == 0)
                      & ((f["t"] == 0) | (f["st"][:4] == 0))
                      & ((f["h"] == 0) | (f["sh"][:4] == 0)))
        # stage 4: the four 16 x 16 partial products (a DSP each)
        products = [(reg(f"x_p{j}", 34, x * y), 4) for j, (x, y) in enumerate((
            (f["t"], f["st"][:16]), (f["t"], f["st"][16:]),
            (f["h"], f["sh"][:16]), (f["h"], f["sh"][16:])))]

        def shifted(value):
            """A partial product of a high half: its value times 2**16."""
            return Cat(C(0, 16), value[0]), value[1]

        def at(x, stage, name):
            """The (value, stage) pair ``x`` delayed to ``stage``: unlike the held words, the
            stream in turn changes every cycle, so what meets must have come equally far."""
            return st.delay(name, x[0], stage - x[1], reset_less=True), stage

        def add(name, x, y):
            stage = max(x[1], y[1])
            return _add(st, name, at(x, stage, f"{name}_x"), at(y, stage, f"{name}_y"))

        pt = add("x_pt", products[0], shifted(products[1]))
        ph = add("x_ph", products[2], shifted(products[3]))
        bx = add("x_bx", (f["base"], 3), (f["extra"], 3))
        bt = add("x_bt", bx, (f["tail"] << 4, 3))
        end = add("x_end", add("x_pth", pt, ph), bt)
        low = _at_most(st, "x_low", (self.window_lo, 0), (f["base"], 3))    # (a held bound)
        high = _at_most(st, "x_high", end, (self.window_hi, 0))
        used, aligned, low = (at(x, high[1], f"x_{name}_at") for name, x in (
            ("used", (f["used"], 3)), ("aligned", (aligned, 4)), ("low", low)))
        ok = reg("x_ok", 1, ~used[0] | (aligned[0] & low[0] & high[0]))
        latency = high[1] + 1
        # the last four streams' verdicts together (the length checks are ready long before)
        verdicts = [ok]
        for i in range(3):
            verdicts.append(reg(f"x_ok_d{i + 1}", 1, verdicts[-1]))
        assert latency + 3 + 1 == LATENCY, (latency + 3 + 1, LATENCY)
        m.d.sync += [self.range_ok.eq(Cat(verdicts).all()), self.lengths_ok.eq(lengths_ok),
                     self.known_op.eq(known)]
        return m


class WeightCheck(wiring.Component):
    """The weight streamer's check of a LINEAR, pipelined: may its weights be streamed?

    It holds (``ok``) when the words are a LINEAR whose job fits the engine (``tokens``,
    ``k_steps`` and ``n_blocks`` from 1 to their limits), whose weight length is its stream's
    (``golden.isa.weight_stream_beats``) and whose weight region (``golden.isa.
    weight_region_bytes``: P parts ``weight_part_stride`` apart) is beat-aligned and lies in
    the DDR window. These are ``InstructionCheck``'s verdicts on the weight stream alone; the
    rest of a LINEAR (its activations, its destination, its epilogue) is the sequencer's to
    check, and a LINEAR that fails there faults when the sequencer reaches it, which drains
    the streamer's reads. So the streamer never reads outside the window nor offers the engine
    a job it cannot hold, for a fraction of a whole check's logic (a product and a few 24-bit
    adds instead of the streams' partial products and sums). ``LATENCY`` is at most
    ``InstructionCheck.LATENCY``, so the streamer waits as the sequencer does.

    Attributes
    ----------
    words : In(ArrayLayout(32, 16))
        The instruction, held for ``LATENCY`` enabled cycles.
    enable : In(1)
        The pipeline's registers load only while it is high.
    window_lo, window_hi : In(32), In(33)
        The DDR window ``[window_lo, window_hi)``.
    ok : Out(1)
        The verdict on the words of ``LATENCY`` enabled cycles before (registered).
    """

    #: cycles from the first cycle the words hold to the first the verdict does: the words'
    #: registers, the other parts' offset, the region's end over two 24-bit-chunk sums, the
    #: two-stage compare, the verdict (``elaborate`` asserts it)
    LATENCY = 9

    def __init__(self, *, config, max_tokens: int, max_k_steps: int, max_n_blocks: int):
        self.config = config
        self.max_tokens, self.max_k_steps, self.max_n_blocks = (max_tokens, max_k_steps,
                                                                max_n_blocks)
        super().__init__({
            "words": In(data.ArrayLayout(32, isa.WORDS)), "enable": In(1),
            "window_lo": In(32), "window_hi": In(33), "ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.config, self.words
        ports = cfg.fill_entries_per_cycle
        st = Stages(m, enable=self.enable)
        reg = _registers(st)
        ins = instruction_fields(w)
        tokens, k_steps, n_blocks = ins.tokens, ins.k_steps, ins.n_blocks
        base, beats = ins.src1[0], ins.src1[3]
        k_bits = self.max_k_steps.bit_length()
        n_bits = self.max_n_blocks.bit_length()
        rows = beats >> (ports.bit_length() - 1)
        # stage 1: the words
        linear = reg("linear", 1, (ins.op == int(isa.Op.LINEAR))
                     & (tokens != 0) & (tokens <= self.max_tokens)
                     & (k_steps != 0) & (k_steps <= self.max_k_steps)
                     & (n_blocks != 0) & (n_blocks <= self.max_n_blocks))
        blocks = reg("blocks", k_bits + n_bits, k_steps[:k_bits] * n_blocks[:n_bits])
        beats_q = reg("beats_q", 32, beats)
        base_q = reg("base_q", 32, base)
        tail = reg("tail", 36, rows << 4)               # bytes of one part
        part_stride = reg("part_stride", 32, _part_stride_bytes(rows))
        # stages 2-4: the weight length is the stream's
        stream_rows = _stream_rows(reg, cfg, blocks)
        stream_ok = reg("stream_ok", 1, beats_q == stream_rows << (ports.bit_length() - 1))
        # stages 2-8: the region, base + (P - 1) * part_stride + tail, in the window
        aligned = reg("aligned", 1, base_q[:4] == 0)
        others = reg("others", 34, part_stride * (ports - 1))
        start_of_last = _add(st, "last", (base_q, 1), (others, 2))
        end = _add(st, "end", start_of_last, (tail, 1))
        low = _at_most(st, "low", (self.window_lo, 0), (base_q, 1))
        high = _at_most(st, "high", end, (self.window_hi, 0))
        latency = max(low[1], high[1], 4)
        assert latency + 1 == self.LATENCY, (latency + 1, self.LATENCY)
        m.d.sync += self.ok.eq(linear & stream_ok & aligned & low[0] & high[0])
        return m
