# SPDX-License-Identifier: BSD-3-Clause
"""Cycle models of the streaming rtl/ units, one per unit, exact against their RTL.

Each class takes the RTL unit's constructor parameters as plain values (keyword-only, the same
names and defaults) and exposes the same timing members (``cycles(...)``, ``latency``,
``cycles_per_sample``, ``cycles_per_bin``) with the same job-shape arguments. The formulas are
re-derived here from the units' microarchitecture (documented per class) rather than imported:
sim/ never imports rtl/. ``tests/test_sim_units_vs_rtl.py`` asserts equality with the RTL's
``cycles(...)`` on random shapes and with measured Amaranth-simulator runs.

All counts are stall-free (every input ``valid``, every output ``ready``), counted as in the
RTL docstrings: from the cycle that accepts a job's first beat to the cycle that accepts its
last output beat, both included.

=================  ==================================  ========================================
model              RTL unit                            formula
=================  ==================================  ========================================
``Divider``        ``rtl.arith.Divider``               ``latency = quotient_width + 1``
``Isqrt``          ``rtl.arith.Isqrt``                 ``latency = width / 2 + 1``
``RatioScale``     ``rtl.arith.RatioScale``            ``latency = 19 + 1``
``Quantizer``      ``rtl.quant.Quantizer``             ``(M+1) B + 3 ((M-1) // 2) + 15`` (4 l.)
``Dequantizer``    ``rtl.quant.Dequantizer``           ``27 + (M-1) max(27, B+7) + B + 9``
``RMSNorm``        ``rtl.elementwise.RMSNorm``         ``M * (2 * H / lanes + 181) + 17``
``RoPE``           ``rtl.elementwise.RoPE``            ``heads (3 head_dim / (2 lanes) + 8) + 2``
``Pointwise``      ``rtl.elementwise.Pointwise``       ``beats + 47`` (SiLU; 17 without)
``Reciprocal``     ``rtl.pipeline.Reciprocal``         ``latency = 6 + 2 * 19 + 2``
``DecodeUnit``     ``rtl.attention.DecodeUnit``        ``2 B + 2 S B + tail`` (tail 92 at 4 lanes)
``PrefillUnit``    ``rtl.attention.PrefillUnit``       ``2 n B + 2 S B + tail``
``Decoder``        ``rtl.snn.Decoder``                 ``2 + sum_l N_l (k_l + 3)`` per bin
``CausalFilter``   ``rtl.bessel.CausalFilter``         ``2 + 6 * sections * channels``
``BlockFilter``    ``rtl.bessel.BlockFilter``          see ``BlockFilter.cycles_per_sample``
=================  ==================================  ========================================

``AmortizedBlockFilter`` models ``rtl.bessel.AmortizedBlockFilter`` (see its
``cycles_per_sample``).
"""

import numpy as np

from ..golden import bessel as gbessel

__all__ = ["Divider", "Isqrt", "RatioScale", "Reciprocal", "Quantizer", "Dequantizer",
           "RMSNorm", "RoPE", "Pointwise", "POINTWISE_GATES", "DecodeUnit", "PrefillUnit",
           "Decoder", "CausalFilter",
           "BlockFilter",
           "AmortizedBlockFilter", "amortized_cycles", "filter_cycles",
           "RATIO_SCALE_QUOTIENT_WIDTH", "RMS_MEAN_WIDTH", "RMS_ISQRT_WIDTH", "SECTION_CYCLES",
           "causal_cycles", "block_cycles"]

#: quotient bits of ``RatioScale``'s divider: ``floor(num * 2**(e0+2) / den)`` lies in
#: ``(2**17, 2**19)`` (rtl/arith.py, ``RatioScale.QUOTIENT_WIDTH``)
RATIO_SCALE_QUOTIENT_WIDTH = 19
#: quotient bits of RMSNorm's mean division (the exact sum of squares is shifted below 2**45
#: first, ``golden.ops.MEAN_SQUARE_BITS``; ``rtl.pipeline.LongDivider``, one bit a cycle)
RMS_MEAN_WIDTH = 45
#: radicand width of RMSNorm's square root (the mean square, below 2**46, times 2**16, rounded
#: up to an even width; ``rtl.pipeline.Isqrt``, two cycles a root bit)
RMS_ISQRT_WIDTH = 64
#: cycles per Bessel biquad and axis: three multiplies through the shared multiplier's
#: two-register pipeline, then the write-back (rtl/bessel.py)
SECTION_CYCLES = 6


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# -- sequential arithmetic (rtl/arith.py) ----------------------------------------------------

class Divider:
    """Sequential restoring divider, one quotient bit per cycle (``rtl.arith.Divider``).

    Parameters
    ----------
    num_width, den_width, quotient_width : int
        As the RTL unit.

    Attributes
    ----------
    latency : int
        ``quotient_width + 1``: the accepting cycle loads the operands, then one
        compare/subtract per quotient bit; the result is presented the cycle after the last.
    """

    def __init__(self, *, num_width: int, den_width: int, quotient_width: int):
        self.num_width = _check_positive("num_width", num_width)
        self.den_width = _check_positive("den_width", den_width)
        self.quotient_width = _check_positive("quotient_width", quotient_width)

    @property
    def latency(self) -> int:
        return self.quotient_width + 1


class Isqrt:
    """Sequential floor square root, two radicand bits per cycle (``rtl.arith.Isqrt``).

    Parameters
    ----------
    width : int
        Radicand width (even).

    Attributes
    ----------
    latency : int
        ``width // 2 + 1``: one root bit per cycle after the accepting cycle.
    """

    def __init__(self, *, width: int):
        _check_positive("width", width)
        if width % 2:
            raise ValueError(f"width must be even, got {width}")
        self.width = width

    @property
    def latency(self) -> int:
        return self.width // 2 + 1


class RatioScale:
    """``golden.fixed.ratio_scale`` as one ``Divider`` of ``RATIO_SCALE_QUOTIENT_WIDTH`` bits
    (``rtl.arith.RatioScale``; the leading-zero counts and the rounding are combinational).

    Parameters
    ----------
    num_width, den_width : int
        Operand widths, at most 44 bits.

    Attributes
    ----------
    latency : int
        ``RATIO_SCALE_QUOTIENT_WIDTH + 1`` = 20.
    """

    def __init__(self, *, num_width: int, den_width: int):
        for name, value in (("num_width", num_width), ("den_width", den_width)):
            _check_positive(name, value)
            if value > 44:
                raise ValueError(f"{name} must be at most 44 (golden ratio_scale), got {value}")
        self.num_width, self.den_width = num_width, den_width

    @property
    def latency(self) -> int:
        return Divider(num_width=self.num_width, den_width=self.den_width,
                       quotient_width=RATIO_SCALE_QUOTIENT_WIDTH).latency


class Reciprocal:
    """``ratio_scale(2**num_log2, den)`` through a normalized denominator
    (``rtl.pipeline.Reciprocal``): six normalization stages (shifts 32 .. 1, whatever the
    width), two cycles a quotient bit for 19 bits, the selection."""

    LATENCY = 6 + 2 * RATIO_SCALE_QUOTIENT_WIDTH + 2

    @property
    def latency(self) -> int:
        return self.LATENCY


# -- quantization (rtl/quant.py) -------------------------------------------------------------

class Quantizer:
    """Per-token absmax INT8 quantizer through a ping-pong buffer of two tokens
    (``rtl.quant.Quantizer``).

    Parameters
    ----------
    lanes : int
        Elements per beat.
    max_k : int
        Longest token.
    """

    #: pass-2 divider rows (seven quotient bits: ``|q| <= 127``), one a stage
    DIVIDER_ROWS = 7

    def __init__(self, *, lanes: int = 4, max_k: int = 4096):
        self.lanes = _check_positive("lanes", lanes)
        self.max_k = _check_positive("max_k", max_k)

    @property
    def tree_stages(self) -> int:
        """Pass-1 stages of pairwise maxima over the lanes, one level each:
        ``ceil(log2(lanes))``, at least one."""
        return max(1, (self.lanes - 1).bit_length())

    @property
    def pass2_start(self) -> int:
        """A token's last input beat to its first buffer read (and its ``amax`` beat): the
        magnitude register, the tree, the running-maximum stage."""
        return self.tree_stages + 2

    @property
    def latency(self) -> int:
        """A buffer read to its output beat: the read register, ``|x|``, ``254 |x| + amax``
        over three stages, the divider rows, the sign (the output register)."""
        return 5 + self.DIVIDER_ROWS + 1

    def cycles(self, tokens: int, k: int) -> int:
        """Stall-free, with ``B = ceil(k / lanes)``: token i's beats go into its bank one a
        cycle from ``f[i]`` to ``a[i] = f[i] + B - 1`` and are read back one a cycle from
        ``p[i]``; the banks alternate, so a token is stored while the one before is read::

            f[0] = 0,  f[1] = B,  f[i] = max(a[i-1] + 1, p[i-2] + B)   (its bank free)
            p[0] = a[0] + pass2_start,  p[i] = max(a[i] + pass2_start, p[i-1] + B)
            cycles = p[tokens-1] + B + latency

        (one token: ``2 B + pass2_start - 1 + latency``; a long stream about B a token)."""
        _check_positive("tokens", tokens)
        _check_positive("k", k)
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


class Dequantizer:
    """Q16 outputs of a ternary linear from its accumulators (``rtl.quant.Dequantizer``).

    Parameters
    ----------
    lanes : int
        Accumulators per beat.
    acc_width : int
        Accumulator width (at most 32).
    """

    def __init__(self, *, lanes: int = 4, acc_width: int = 24):
        self.lanes = _check_positive("lanes", lanes)
        self.acc_width = _check_positive("acc_width", acc_width)
        if acc_width > 32:
            raise ValueError(f"acc_width must be at most 32 (the product stays below 2**64), "
                             f"got {acc_width}")

    #: amax's leading-zero normalization, one shift a stage (16, 8, 4, 2, 1)
    NORMALIZE_STAGES = 5

    @property
    def setup_cycles(self) -> int:
        """Scale beat to first accumulator beat: the normalization of amax, the 19-bit
        division by 127 (``Divider(num_width=25, den_width=7, quotient_width=19).latency``),
        the Scale's register and the product's."""
        divider = Divider(num_width=25, den_width=7, quotient_width=RATIO_SCALE_QUOTIENT_WIDTH)
        return self.NORMALIZE_STAGES + divider.latency + 2

    @property
    def latency(self) -> int:
        """Accumulator beat to its output beat: the input register, partial products, their
        sums, the product's two halves, the coarse and fine shifts, the rounding, the
        saturation."""
        return 9

    #: a token's last accumulator beat to the next token's first: the six stages that use the
    #: token's product and shift drained, then the switch
    TOKEN_GAP = 8

    def cycles(self, tokens: int, n: int) -> int:
        """``27 + (tokens - 1) * max(27, B + 7) + B + 9`` with ``B = ceil(n / lanes)``: the
        next token's scale is taken when this token's accumulators start, its setup (27)
        overlaps them, and its first accumulator follows this token's last one
        ``TOKEN_GAP`` cycles later at the earliest."""
        _check_positive("tokens", tokens)
        _check_positive("n", n)
        b = _ceil_div(n, self.lanes)
        period = max(self.setup_cycles, b - 1 + self.TOKEN_GAP)
        return self.setup_cycles + (tokens - 1) * period + b + self.latency


# -- elementwise (rtl/elementwise.py) --------------------------------------------------------

class RMSNorm:
    """Two-pass RMSNorm through a one-token buffer (``rtl.elementwise.RMSNorm``), pipelined:
    pass 1 one beat a cycle into the buffer and the chunked sums of squares; a setup chain per
    token; pass 2 one ``gamma`` beat a cycle, each output ``LATENCY`` cycles later.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    max_h : int
        Longest token (a multiple of ``lanes``, below 65536).
    eps : int
        Q32 epsilon in ``[1, 2**32]`` (``golden.ops.rms_eps``; no effect on timing).
    """

    #: pass 2, gamma beat to output beat
    LATENCY = 17
    #: the two chunked adds of the sum of squares (3 and 4 stages at every ``max_h``)
    SUM_STAGES = (3, 4)
    #: the leading-zero normalization of the sum of squares (shifts 64 .. 1)
    NORMALIZE_STAGES = 7

    def __init__(self, *, lanes: int = 4, max_h: int = 4096, eps: int = 1):
        self.lanes = _check_positive("lanes", lanes)
        self.max_h = _check_positive("max_h", max_h)
        if max_h % lanes:
            raise ValueError(f"max_h={max_h} must be a multiple of lanes={lanes}")
        if max_h >= 1 << 16:
            raise ValueError(f"max_h={max_h} must be below 65536")
        _check_positive("eps", eps)
        if eps > 1 << 32:
            raise ValueError(f"eps must be at most 2**32 (1.0 in Q32), got {eps}")
        self.eps = eps

    @property
    def setup_cycles(self) -> int:
        """A token's last input beat to its first gamma beat: the input register, the squares'
        partial products, the lane tree (``ceil(log2 lanes)``, at least 1), the accumulators'
        two chunks, the adds of S, the normalization, the shift, the mean ``LongDivider``
        (``MEAN_SQUARE_BITS + 1`` = 46) and its register, the epsilon's add (2), the square
        root (``Isqrt(64)``: 65), ``Reciprocal`` (46), the step into pass 2."""
        tree = max(1, (self.lanes - 1).bit_length())
        return (1 + 1 + tree + 2 + sum(self.SUM_STAGES) + self.NORMALIZE_STAGES + 1
                + (RMS_MEAN_WIDTH + 1) + 1 + 2 + (RMS_ISQRT_WIDTH + 1) + Reciprocal.LATENCY + 1)

    @property
    def latency(self) -> int:
        return self.LATENCY

    def cycles(self, tokens: int, h: int) -> int:
        """``tokens * (2 * h / lanes + setup_cycles - 1) + LATENCY``: pass 1, the setup, pass
        2 (the next token's first beat follows the last gamma beat), the last output."""
        _check_positive("tokens", tokens)
        _check_positive("h", h)
        if h > self.max_h or h % self.lanes:
            raise ValueError(f"h={h} must be a multiple of lanes={self.lanes} and at most "
                             f"max_h={self.max_h}")
        return tokens * (2 * (h // self.lanes) + self.setup_cycles - 1) + self.LATENCY


class RoPE:
    """Rotary position embedding, head after head (``rtl.elementwise.RoPE``): the first half
    into a buffer, the second half paired with its table beats through the rotation pipeline
    (``LATENCY``), the buffered ``y2`` half once the pipeline is empty.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    head_dim : int
        Head dimension, a multiple of ``2 * lanes``.
    """

    #: a second-half beat to its y1 beat: the buffer read, the products, the sums' two
    #: halves, the rounding, the total's two halves, the saturation, the output register
    LATENCY = 9

    def __init__(self, *, lanes: int = 4, head_dim: int = 64):
        self.lanes = _check_positive("lanes", lanes)
        _check_positive("head_dim", head_dim)
        if head_dim % (2 * lanes):
            raise ValueError(f"head_dim={head_dim} must be a multiple of 2*lanes={2 * lanes}")
        self.head_dim = head_dim
        self.half_beats = head_dim // 2 // lanes

    @property
    def latency(self) -> int:
        return self.LATENCY

    def cycles(self, heads: int) -> int:
        """``heads * (3 * head_dim / (2 * lanes) + LATENCY - 1) + 2``: per head the first
        half in, the second half paired, the pipeline's drain, the y2 half out (its read and
        output register after the last)."""
        _check_positive("heads", heads)
        return heads * (3 * self.half_beats + self.LATENCY - 1) + 2


#: the MLP gates a ``Pointwise`` unit can have (``hidden_act`` names), all of which
#: ``rtl.accelerator.Accelerator`` builds by default
POINTWISE_GATES = ("relu2", "silu")


class Pointwise:
    """Stateless fused elementwise unit (``rtl.elementwise.Pointwise``), one pipeline that
    stalls as a whole; every operation takes the longest built operation's ``latency``.

    Parameters
    ----------
    lanes : int
        Element pairs per beat (no effect on timing).
    gates : iterable of str
        The MLP gates built beside the residual add (``hidden_act`` names: "relu2", "silu";
        default ``POINTWISE_GATES``, as ``rtl.accelerator.Accelerator`` builds them).
    """

    #: per operation ("add" and the gates), the stage of its result register after the input
    #: register: the add's halves and saturation; ``relu(a)`` and two Q16 products (7 stages
    #: each); the clamp of ``-|a|``, ``exp_neg`` (12 stages: the product with log2(e) in
    #: 17-bit pieces, its ROMs followed by a register), the sigmoid's operands, 17 divider
    #: rows and two products
    RESULT_STAGE = {"add": 4, "relu2": 2 + 2 * 7, "silu": 2 + 12 + 1 + 17 + 2 * 7}

    def __init__(self, *, lanes: int = 4, gates=POINTWISE_GATES):
        self.lanes = _check_positive("lanes", lanes)
        self.gates = tuple(gates)
        if not self.gates or not set(self.gates) <= set(POINTWISE_GATES):
            raise ValueError(f"gates must name some of relu2, silu, got {gates!r}")

    @property
    def latency(self) -> int:
        """The longest built operation's result stage, then the output register."""
        return max(self.RESULT_STAGE[op] for op in ("add", *self.gates)) + 1

    def cycles(self, beats: int) -> int:
        """``beats + latency``: one beat a cycle in, each out ``latency`` cycles later."""
        _check_positive("beats", beats)
        return beats + self.latency


# -- attention (rtl/attention.py) ------------------------------------------------------------

class _TwoPassAttention:
    """The pipelined two-pass unit (rtl/attention.py): a key beat's score is written
    ``score_write`` cycles after the beat (input register, clip, the partial products, the
    lane tree of ``ceil(log2(2 lanes))`` levels, the dot-product accumulators, then
    ``SCORE_STAGES``); a value beat waits in a delay line and reads its score as many cycles
    after its own arrival (so the first value beat may follow the last key beat at once),
    then ``WEIGHT_STAGES`` to its weight ``p`` and two to ``sum p``; the reciprocal
    (``Reciprocal.LATENCY``), one cycle into the output pass and ``OUTPUT_STAGES`` to the
    first output beat. The inputs are taken one beat a cycle with no back-pressure."""

    SCORE_STAGES = 9
    WEIGHT_STAGES = 16
    OUTPUT_STAGES = 11

    def __init__(self, *, queries, lanes, head_dim, max_keys):
        self.queries = _check_positive("queries", queries)
        self.lanes = _check_positive("lanes", lanes)
        _check_positive("head_dim", head_dim)
        if head_dim % lanes:
            raise ValueError(f"head_dim={head_dim} must be a multiple of lanes={lanes}")
        self.head_dim = head_dim
        self.max_keys = _check_positive("max_keys", max_keys)
        if max_keys < queries:
            raise ValueError(f"max_keys={max_keys} must be at least queries={queries}")
        self.beats = head_dim // lanes

    @property
    def tree_stages(self) -> int:
        return (2 * self.lanes - 1).bit_length()

    @property
    def score_write(self) -> int:
        return 4 + self.tree_stages + self.SCORE_STAGES

    @property
    def tail(self) -> int:
        """Cycles from accepting the last value beat to accepting the first output beat."""
        reciprocal_start = self.score_write + self.WEIGHT_STAGES + 2
        return reciprocal_start + Reciprocal.LATENCY + 1 + self.OUTPUT_STAGES

    def _cycles(self, queries, keys):
        _check_positive("keys", keys)
        if keys > self.max_keys:
            raise ValueError(f"keys={keys} exceeds this unit's max_keys={self.max_keys}")
        _check_positive("queries", queries)
        if queries > min(self.queries, keys):
            raise ValueError(f"queries={queries} must be at most the tile size "
                             f"{self.queries} and at most keys={keys}")
        b = self.beats
        # job, queries in, keys then values, the tail, the output beats
        return 1 + queries * b + 2 * keys * b + self.tail + queries * b - 1


class DecodeUnit(_TwoPassAttention):
    """Two-pass streaming attention of one query (``rtl.attention.DecodeUnit``).

    Parameters
    ----------
    lanes, head_dim, max_keys : int
        As the RTL unit.
    """

    def __init__(self, *, lanes: int = 4, head_dim: int = 64, max_keys: int = 1024):
        _check_positive("max_keys", max_keys)
        super().__init__(queries=1, lanes=lanes, head_dim=head_dim, max_keys=max_keys)

    def cycles(self, keys: int) -> int:
        """``2*B + 2*S*B + tail`` for S = ``keys``, ``B = head_dim / lanes``: the job beat
        (1), the query (B), keys and values (2*S*B), ``tail`` to the first output beat, the
        other output beats (B - 1)."""
        return self._cycles(1, keys)


class PrefillUnit(_TwoPassAttention):
    """Two-pass streaming attention of a tile of causal queries (``rtl.attention.PrefillUnit``).

    Parameters
    ----------
    queries, lanes, head_dim, max_keys : int
        As the RTL unit (``queries`` is the tile size).
    """

    def __init__(self, *, queries: int = 8, lanes: int = 4, head_dim: int = 64,
                 max_keys: int = 1024):
        _check_positive("queries", queries)
        _check_positive("max_keys", max_keys)
        super().__init__(queries=queries, lanes=lanes, head_dim=head_dim, max_keys=max_keys)

    def cycles(self, queries: int, keys: int) -> int:
        """``2*n*B + 2*S*B + tail`` for n = ``queries``, S = ``keys`` (see
        ``DecodeUnit.cycles``): one K and one V pass serve the whole tile."""
        return self._cycles(queries, keys)


# -- SNN decoder (rtl/snn.py) ----------------------------------------------------------------

class Decoder:
    """Event-driven LIF decoder core, one synaptic add per cycle (``rtl.snn.Decoder``).

    The RTL takes a ``golden.snn.Network``; timing depends only on its layer sizes, so this
    model takes them as plain ints (``from_network`` reads them off a network).

    Parameters
    ----------
    neurons : sequence of int
        ``N_l``, neurons per layer.
    inputs : sequence of int
        ``K_l``, inputs per layer (the worst case of ``k_l``).
    """

    def __init__(self, *, neurons, inputs):
        self.neurons = tuple(_check_positive("neurons", int(n)) for n in neurons)
        self.inputs = tuple(_check_positive("inputs", int(k)) for k in inputs)
        if not self.neurons or len(self.neurons) != len(self.inputs):
            raise ValueError(f"neurons and inputs must be non-empty and of equal length, got "
                             f"{len(self.neurons)} and {len(self.inputs)}")

    @classmethod
    def from_network(cls, network):
        """The model of ``rtl.snn.Decoder(network=network)`` for a ``golden.snn.Network``."""
        return cls(neurons=[layer.neurons for layer in network.layers],
                   inputs=[layer.inputs for layer in network.layers])

    def cycles_per_bin(self, active_inputs):
        """``2 + sum_l N_l * (k_l + 3)`` between successive input transfers: accept (1), per
        neuron fetch (1) + accumulate (``k_l + 1``) + write-back (1), emit (1).

        ``active_inputs`` is ``k_l`` (set input bits per layer), shape ``(layers,)`` or
        ``(T, layers)``; the result has the leading shape.
        """
        k = np.asarray(active_inputs, dtype=np.int64)
        n = np.array(self.neurons, dtype=np.int64)
        return 2 + ((k + 3) * n).sum(axis=-1)

    def latency(self, active_inputs):
        """Cycles from the input transfer to ``velocity.valid``: ``cycles_per_bin - 1``."""
        return self.cycles_per_bin(active_inputs) - 1

    @property
    def worst_case_cycles(self) -> int:
        """``cycles_per_bin`` with every input active."""
        return int(self.cycles_per_bin(self.inputs))


# -- Bessel output filters (rtl/bessel.py) ---------------------------------------------------

def _check_channels(channels):
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 8:
        raise ValueError(f"channels must be an int in [1, 8], got {channels!r}")
    return channels


def causal_cycles(*, sections: int = 2, channels: int = 2) -> int:
    """``CausalFilter(sections=sections, channels=channels).cycles_per_sample``."""
    return CausalFilter(sections=sections, channels=channels).cycles_per_sample


def block_cycles(*, tap: str = "middle", channels: int = 2, first: bool = False,
                 emits: bool = True) -> int:
    """``BlockFilter(tap=tap, channels=channels).cycles_per_sample(first=..., emits=...)``."""
    return BlockFilter(tap=tap, channels=channels).cycles_per_sample(first=first, emits=emits)


def amortized_cycles(*, channels: int = 2, first: bool = False, emits: bool = False) -> int:
    """``AmortizedBlockFilter(channels=channels).cycles_per_sample(first=..., emits=...)``."""
    return AmortizedBlockFilter(channels=channels).cycles_per_sample(first=first, emits=emits)


def filter_cycles(mode: str, channels: int = 2) -> dict:
    """Stall-free cycles per sample of the ``rtl.bessel`` unit of a filter mode
    (``golden.bessel.MODES``): ``worst`` (a sample that releases output; every sample for
    causal and block-last/-middle once the look-ahead is filled) and ``mean`` over a stream's
    steady state (block-amortized: one push in ``hop`` runs the backward passes)."""
    if mode not in gbessel.MODES:
        raise ValueError(f"filter must be one of {', '.join(gbessel.MODES)}, got {mode!r}")
    if mode == "none":
        return {"worst": 0, "mean": 0.0}
    if mode == "causal":
        c = causal_cycles(channels=channels)
        return {"worst": c, "mean": float(c)}
    if mode == "block-amortized":
        f = AmortizedBlockFilter(channels=channels)
        worst, plain = f.cycles_per_sample(emits=True), f.cycles_per_sample()
        return {"worst": worst, "mean": (worst + (f.hop - 1) * plain) / f.hop}
    c = block_cycles(tap=mode.split("-")[1], channels=channels)
    return {"worst": c, "mean": float(c)}


class CausalFilter:
    """Causal Bessel biquad cascade on one shared multiplier (``rtl.bessel.CausalFilter``).

    Parameters
    ----------
    sections : int
        Biquad sections (the RTL reads it off its ``coefficients``; default order 4: 2).
    channels : int
        Samples per beat, 1 to 8.
    """

    def __init__(self, *, sections: int = 2, channels: int = 2):
        self.sections = _check_positive("sections", sections)
        self.channels = _check_channels(channels)

    @property
    def cycles_per_sample(self) -> int:
        """``2 + SECTION_CYCLES * sections * channels``: accept, 6 per section per axis, emit."""
        return 2 + SECTION_CYCLES * self.sections * self.channels

    @property
    def latency(self) -> int:
        """Input transfer to ``o.valid``: ``cycles_per_sample - 1``."""
        return self.cycles_per_sample - 1


class BlockFilter:
    """Block-bidirectional two-section Bessel filter (``rtl.bessel.BlockFilter``).

    Parameters
    ----------
    tap : str
        ``"last"`` or ``"middle"`` (``WINDOW // 2`` samples of look-ahead).
    channels : int
        Samples per beat, 1 to 8.
    """

    SECTIONS = 2

    def __init__(self, *, tap: str = "middle", channels: int = 2):
        if tap not in ("last", "middle"):
            raise ValueError(f"tap must be 'last' or 'middle', got {tap!r}")
        self.tap, self.channels = tap, _check_channels(channels)
        self.window, self.padlen = gbessel.WINDOW, gbessel.PADLEN
        self.delay = self.window // 2 if tap == "middle" else 0
        self.index = self.window - 1 - self.delay

    @property
    def backward_steps(self) -> int:
        """Backward-pass samples per channel: from the padded end down to the tapped one."""
        return self.window + self.padlen - self.index

    def cycles_per_sample(self, *, first: bool = False, emits: bool = True) -> int:
        """Cycles between successive input transfers with no stalls.

        A push stores ``channels`` history entries (``window * channels`` on the first push,
        which fills the history). A push inside the look-ahead only stores: ``2 + store``.
        Otherwise ``3 + store + channels * (2 + P * (window + 2 * padlen) + P *
        backward_steps)`` with ``P = 2 + 2 * SECTION_CYCLES`` cycles per filtered sample (two
        sections) over the forward pass on the padded window and the backward pass to the tap.
        """
        store = self.window * self.channels if first else self.channels
        if not emits:
            return 2 + store
        per_sample = 2 + self.SECTIONS * SECTION_CYCLES
        per_channel = (2 + per_sample * (self.window + 2 * self.padlen)
                       + per_sample * self.backward_steps)
        return 3 + store + self.channels * per_channel


class AmortizedBlockFilter:
    """Block-bidirectional two-section Bessel filter with the forward state carried across
    blocks (``rtl.bessel.AmortizedBlockFilter``; window 32, hop 16, padlen 15).

    Parameters
    ----------
    channels : int
        Samples per beat, 1 to 8.
    """

    SECTIONS = 2

    def __init__(self, *, channels: int = 2):
        self.channels = _check_channels(channels)
        self.window, self.padlen = gbessel.WINDOW, gbessel.PADLEN
        self.hop = self.window // 2

    def cycles_per_sample(self, *, first: bool = False, emits: bool = False) -> int:
        """Cycles between successive input transfers with no stalls.

        Every push: accept (1) and the forward cascade per channel (``SECTIONS *
        SECTION_CYCLES``); the first also fills the history (``window * channels``). A push
        that ends a block adds per channel a tap copy (1), the forward pass over the padding
        and the backward pass over padding and window, ``P = 2 + SECTIONS * SECTION_CYCLES``
        per sample (read, fetch, the sections), and ``2 * hop`` for the output beats (read,
        emit).
        """
        per_sample = 2 + self.SECTIONS * SECTION_CYCLES
        cycles = 1 + self.channels * self.SECTIONS * SECTION_CYCLES
        if first:
            cycles += self.window * self.channels
        if emits:
            cycles += (self.channels * (1 + per_sample * self.padlen
                                        + per_sample * (self.padlen + self.window))
                       + 2 * self.hop)
        return cycles
