# SPDX-License-Identifier: BSD-3-Clause
"""Fixed-point Bessel output filter for the neural decoder (Zhou, Sun, Basu, arXiv 2312.15889).

The paper filters the 2-D decoder output with ``scipy.signal.bessel(4, 0.05)`` (fc = 0.05 of
Nyquist: 6.25 Hz at 250 Hz) either causally (``lfilter``) or block-bidirectionally: every new
sample, the last ``window`` (32) outputs are filtered with ``filtfilt`` and one sample of the
result is emitted, the last (no added delay) or the middle one (index 15: 16 samples of
look-ahead, the high-accuracy variant).

Fixed-point formats
-------------------
* Samples enter and leave as **Q16** integers (the decoder's velocity units), saturated to
  ``DATA_WIDTH`` = 24 bits signed (+-128 units).
* Inside the filter a sample is Q16 shifted left by ``GUARD`` = 8 (**Q24**), saturated to
  ``STATE_WIDTH`` = 36 bits signed (filtfilt's odd padding ``2*x0 - x`` triples the range).
* Each of the two biquads is direct form I with a unity-DC-gain numerator ``g*(1, 2, 1)``:
  ``y = (g*(x + 2*x1 + x2) - a1*y1 - a2*y2) * 2**-COEF_FRAC`` rounded half up (``fixed``'s
  convention), coefficients ``Q2.20`` (23 bits signed). ``a2`` is nudged by at most 2 LSB so that
  ``4*g == 2**COEF_FRAC + a1 + a2`` exactly: the DC gain is exactly one, so "every tap equal to
  x0" is the exact steady state and filtfilt's ``lfilter_zi * x0`` initial condition is simply
  every tap loaded with ``x0``. The product is ``36 + 23`` bits and a sum of five stays below
  ``2**62``.
* The output rounds Q24 back to Q16 (half up) and saturates to ``DATA_WIDTH``.

Block mode follows scipy's ``filtfilt`` defaults: ``padtype='odd'``, ``padlen = 3*max(len(a),
len(b)) = 15`` of the 4th-order (b, a) design, steady-state initial conditions on both passes.
Before ``window`` samples have arrived the history is pre-filled with the first sample.

Filter modes (``MODES``) and their cost per decode (``filter_macs``, 2 axes)
---------------------------------------------------------------------------
* ``none``: 0 multiplies.
* ``causal``: one cascade step per sample: 2 sections x 3 multiplies x 2 axes = **12**.
* ``block-last`` / ``block-middle``: the literal sliding filtfilt (``BlockFilter``). Every
  sample re-runs the forward pass over the ``window + 2*PADLEN`` = 62 padded samples and the
  backward pass down to the tapped one (16 for the last tap, 32 for the middle one):
  ``6 * (62 + 16) * 2`` = **936** and ``6 * (62 + 32) * 2`` = **1,128** multiplies (what golden
  needs and what ``rtl.bessel.BlockFilter`` does; a full scipy ``filtfilt`` of the window
  would be ``6 * 124 * 2`` = 1,488).
* ``block-amortized``: block-bidirectional filtering with the state carried across blocks
  (``AmortizedBlockFilter``). The forward pass is one causal cascade over the whole stream,
  never restarted (12 per sample). Every ``hop`` = ``window // 2`` = 16 samples one backward
  pass runs: the forward cascade continues from a copy of its state over filtfilt's 15 odd
  padding samples (right end only), then the backward cascade runs from the steady state of
  the last padded output down over the padding and the last ``window`` forward outputs and
  releases the oldest ``hop`` of them; ``window - hop`` = 16 samples warm it up, so a released
  sample has 16 to 31 samples of look-ahead. Per decode on average ``12 + 12 * (window +
  2*PADLEN) / hop`` = ``12 + 12 * 62 / 16`` = **58.5** multiplies (744 every 16th sample).
  Its output is not the sliding filtfilt's (the forward pass is not restarted per window, no
  left padding, a longer and varying look-ahead), so it is a mode of its own rather than a
  faster ``block-middle``: ``block-middle`` keeps its meaning (every sample exactly 16
  samples late, the filtfilt of a 32-sample window) while this mode releases samples in
  bursts of 16, 16 to 31 samples late.
"""

import numpy as np

from .fixed import round_shift

__all__ = [
    "DEFAULT_SOS", "COEF_FRAC", "GUARD", "DATA_WIDTH", "STATE_WIDTH", "PADLEN", "WINDOW",
    "MODES", "FilterCoefficients", "design", "quantize", "lfilter", "block_filter",
    "BlockFilter", "CausalFilter", "AmortizedBlockFilter", "amortized_block_filter",
    "make_filter", "filter_macs", "filter_footprint_bytes", "sat",
]

#: scipy.signal.bessel(4, 0.05, output="sos") (norm="phase"), stored so golden needs no scipy
DEFAULT_SOS = np.array([
    [3.0098335934859017e-05, 6.0196671869718034e-05, 3.0098335934859017e-05,
     1.0, -1.7326299977616086, 0.7518816491241208],
    [1.0, 2.0, 1.0, 1.0, -1.7886595314713387, 0.8136741842868104],
])
COEF_FRAC = 20
GUARD = 8
DATA_WIDTH = 24
STATE_WIDTH = 36
#: scipy filtfilt's default pad length for a 4th-order (b, a) filter: 3 * max(len(a), len(b))
PADLEN = 15
WINDOW = 32
MODES = ("none", "causal", "block-last", "block-middle", "block-amortized")
#: multiplies per biquad section and sample: g*(x + 2 x1 + x2), a1*y1, a2*y2
SECTION_MACS = 3


def sat(x, width):
    """Saturate to a ``width``-bit signed range (int64 result)."""
    lim = 1 << (width - 1)
    return np.clip(np.asarray(x, dtype=np.int64), -lim, lim - 1)


class FilterCoefficients:
    """Quantized biquad cascade: per section ``g`` (numerator ``g*(1,2,1)``), ``a1``, ``a2``."""

    def __init__(self, g, a1, a2):
        self.g = np.asarray(g, dtype=np.int64)
        self.a1 = np.asarray(a1, dtype=np.int64)
        self.a2 = np.asarray(a2, dtype=np.int64)
        if not (self.g.shape == self.a1.shape == self.a2.shape) or self.g.ndim != 1:
            raise ValueError("g, a1 and a2 must be 1-D arrays of the same length")
        if np.any(4 * self.g != (1 << COEF_FRAC) + self.a1 + self.a2):
            raise ValueError("each section must have unity DC gain: 4*g == 2**COEF_FRAC+a1+a2")

    @property
    def sections(self) -> int:
        return len(self.g)

    def as_sos(self) -> np.ndarray:
        """The float SOS matrix these integers represent."""
        one = float(1 << COEF_FRAC)
        return np.array([[g / one, 2 * g / one, g / one, 1.0, a1 / one, a2 / one]
                         for g, a1, a2 in zip(self.g, self.a1, self.a2, strict=False)])


def design(order: int = 4, cutoff: float = 0.05) -> np.ndarray:
    """Float SOS of a low-pass Bessel filter (cutoff as a fraction of Nyquist).

    The default design is stored; other orders and cut-offs need scipy.
    """
    if order == 4 and cutoff == 0.05:
        return DEFAULT_SOS.copy()
    if order % 2 or order < 2:
        raise ValueError(f"order must be even and >= 2 (biquads), got {order}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1) of Nyquist, got {cutoff}")
    from scipy import signal
    return signal.bessel(order, cutoff, output="sos")


def quantize(sos=None) -> FilterCoefficients:
    """Quantize a low-pass SOS whose numerators are proportional to (1, 2, 1).

    ``a1``, ``a2`` round half up to Q2.20; ``a2`` is nudged (<= 2 LSB) so that the numerator
    sum ``4*g`` equals the denominator sum exactly (unity DC gain, exact steady state).
    """
    sos = DEFAULT_SOS if sos is None else np.asarray(sos, dtype=np.float64)
    one = 1 << COEF_FRAC
    gs, a1s, a2s = [], [], []
    for b0, b1, b2, a0, a1, a2 in sos:
        if a0 != 1.0 or not np.allclose([b1 / b0, b2 / b0], [2.0, 1.0]):
            raise ValueError("quantize expects low-pass biquads with numerator b0*(1, 2, 1)")
        a1q = int(np.floor(a1 * one + 0.5))
        a2q = int(np.floor(a2 * one + 0.5))
        denom = one + a1q + a2q
        best = min(range(-2, 3), key=lambda d: (abs((denom + d) % 4 != 0), abs(d)))
        a2q += best
        gs.append((one + a1q + a2q) // 4)
        a1s.append(a1q)
        a2s.append(a2q)
    return FilterCoefficients(gs, a1s, a2s)


def _section(x, g, a1, a2, init):
    """One DF1 biquad over Q24 samples ``x`` (1-D int64) with every tap set to ``init``."""
    x1 = x2 = y1 = y2 = int(init)
    g, a1, a2 = int(g), int(a1), int(a2)
    half = 1 << (COEF_FRAC - 1)
    lim = 1 << (STATE_WIDTH - 1)
    out = np.empty(len(x), dtype=np.int64)
    for n, xn in enumerate(x.tolist()):
        acc = g * (xn + 2 * x1 + x2) - a1 * y1 - a2 * y2
        y = min(max((acc + half) >> COEF_FRAC, -lim), lim - 1)
        out[n] = y
        x2, x1, y2, y1 = x1, xn, y1, y
    return out


def _section_rows(x, g, a1, a2, init):
    """``_section`` on many independent rows at once: ``x`` (M, L), ``init`` (M,)."""
    x1 = init.copy()
    x2 = init.copy()
    y1 = init.copy()
    y2 = init.copy()
    g, a1, a2 = int(g), int(a1), int(a2)
    half = 1 << (COEF_FRAC - 1)
    lim = 1 << (STATE_WIDTH - 1)
    out = np.empty_like(x)
    for n in range(x.shape[1]):
        xn = x[:, n]
        acc = g * (xn + 2 * x1 + x2) - a1 * y1 - a2 * y2
        y = np.clip((acc + half) >> COEF_FRAC, -lim, lim - 1)
        out[:, n] = y
        x2, x1, y2, y1 = x1, xn, y1, y
    return out


def _filtfilt_rows(w, coefs):
    """``_filtfilt_state`` of many Q24 windows at once, ``w`` (M, n)."""
    n = w.shape[1]
    if n <= PADLEN:
        raise ValueError(f"filtfilt needs more than {PADLEN} samples, got {n}")
    left = sat(2 * w[:, :1] - w[:, PADLEN:0:-1], STATE_WIDTH)
    right = sat(2 * w[:, -1:] - w[:, -2:-PADLEN - 2:-1], STATE_WIDTH)
    ext = np.concatenate([left, w, right], axis=1)
    for g, a1, a2 in zip(coefs.g, coefs.a1, coefs.a2, strict=False):
        ext = _section_rows(ext, g, a1, a2, ext[:, 0].copy())
    rev = np.ascontiguousarray(ext[:, ::-1])
    for g, a1, a2 in zip(coefs.g, coefs.a1, coefs.a2, strict=False):
        rev = _section_rows(rev, g, a1, a2, rev[:, 0].copy())
    return rev[:, ::-1][:, PADLEN:PADLEN + n]


def _cascade(x, coefs, init):
    for g, a1, a2 in zip(coefs.g, coefs.a1, coefs.a2, strict=False):
        x = _section(x, g, a1, a2, init)
    return x


def _to_state(x_q16):
    return sat(np.asarray(x_q16, dtype=np.int64), DATA_WIDTH) << GUARD


def _to_q16(state):
    return sat(round_shift(state, GUARD), DATA_WIDTH)


def lfilter(x_q16, coefs: FilterCoefficients | None = None, zero_state: bool = True):
    """Causal filter along axis 0 of Q16 samples (any trailing shape): ``scipy.signal.lfilter``.

    ``zero_state=True`` starts from rest like ``lfilter``; ``False`` starts in the steady state
    of the first sample (what a stream does, no start-up transient).
    """
    coefs = quantize() if coefs is None else coefs
    x = _to_state(x_q16)
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    for c in range(flat.shape[1]):
        init = 0 if zero_state or len(x) == 0 else flat[0, c]
        out[:, c] = _cascade(flat[:, c], coefs, init)
    return _to_q16(out).reshape(np.shape(x_q16))


def _filtfilt_state(w, coefs):
    """scipy ``filtfilt`` (odd padding, steady-state init) of one Q24 window, 1-D int64."""
    n = len(w)
    if n <= PADLEN:
        raise ValueError(f"filtfilt needs more than {PADLEN} samples, got {n}")
    left = sat(2 * w[0] - w[PADLEN:0:-1], STATE_WIDTH)
    right = sat(2 * w[-1] - w[-2:-PADLEN - 2:-1], STATE_WIDTH)
    ext = np.concatenate([left, w, right])
    fwd = _cascade(ext, coefs, ext[0])
    rev = fwd[::-1]
    back = _cascade(rev, coefs, rev[0])[::-1]
    return back[PADLEN:PADLEN + n]


def block_filter(x_q16, tap: str = "middle", window: int = WINDOW,
                 coefs: FilterCoefficients | None = None):
    """Block-bidirectional filter of a whole Q16 series (axis 0), aligned with its input.

    Output sample ``t`` is the filtfilt of the window ending at ``t`` (tap ``"last"``), or of
    the window ending at ``t + window//2`` taken at index ``window//2 - 1`` (tap
    ``"middle"``: what a stream emits ``window//2`` samples later; the last ``window//2``
    samples come from the final window, as a stream flush does).
    """
    x = np.asarray(x_q16, dtype=np.int64)
    f = BlockFilter(tap=tap, window=window, coefs=coefs, channels=x[0].size if len(x) else 1)
    outs = list(f.push_many(x.reshape(len(x), -1))) + f.flush()
    return np.array(outs, dtype=np.int64).reshape(x.shape)


class CausalFilter:
    """Streaming causal Bessel filter over Q16 vectors (one call per sample).

    The state starts in the steady state of the first sample (no start-up transient).
    """

    def __init__(self, coefs: FilterCoefficients | None = None, channels: int = 2):
        self.coefs = quantize() if coefs is None else coefs
        self.channels = channels
        self.taps = None           # (sections, 4, channels): x1, x2, y1, y2

    def push(self, x_q16):
        x = _to_state(np.asarray(x_q16, dtype=np.int64).reshape(self.channels))
        if self.taps is None:
            self.taps = np.broadcast_to(x, (self.coefs.sections, 4, self.channels)).copy()
        for s in range(self.coefs.sections):
            x1, x2, y1, y2 = self.taps[s].copy()
            acc = (self.coefs.g[s] * (x + 2 * x1 + x2) - self.coefs.a1[s] * y1
                   - self.coefs.a2[s] * y2)
            y = sat(round_shift(acc, COEF_FRAC), STATE_WIDTH)
            self.taps[s] = (x, x1, y, y1)
            x = y
        return _to_q16(x)

    def push_many(self, rows_q16):
        """``push`` for each row of ``(n, channels)``; returns ``(n, channels)``."""
        rows = np.asarray(rows_q16, dtype=np.int64).reshape(-1, self.channels)
        return np.array([self.push(r) for r in rows], dtype=np.int64).reshape(rows.shape)

    def reset(self):
        self.taps = None


class BlockFilter:
    """Streaming block-bidirectional filter: one ``push`` per sample (Q16 vector).

    ``tap="last"`` returns a sample for every push. ``tap="middle"`` returns ``None`` for the
    first ``window//2`` pushes (the look-ahead), then the sample ``window//2`` pushes back;
    ``flush()`` returns the ones still owed at end of stream.
    """

    def __init__(self, tap: str = "middle", window: int = WINDOW,
                 coefs: FilterCoefficients | None = None, channels: int = 2):
        if tap not in ("last", "middle"):
            raise ValueError(f"tap must be 'last' or 'middle', got {tap!r}")
        if not PADLEN < window <= 1024:
            raise ValueError(f"window must be in ({PADLEN}, 1024], got {window}")
        self.tap, self.window, self.channels = tap, window, channels
        self.coefs = quantize() if coefs is None else coefs
        self.delay = window // 2 if tap == "middle" else 0
        self.history = None        # (window, channels) Q24
        self.pushed = 0

    def _filtered(self):
        return np.stack([_filtfilt_state(self.history[:, c], self.coefs)
                         for c in range(self.channels)], axis=1)

    def push(self, x_q16):
        out = self.push_many(np.asarray(x_q16, dtype=np.int64).reshape(1, self.channels))
        return out[0] if len(out) else None

    def push_many(self, rows_q16):
        """Push ``(n, channels)`` samples at once; returns the ``(m, channels)`` outputs they
        release (``m = n`` once the look-ahead is filled). Same integers as ``push``."""
        x = _to_state(np.asarray(rows_q16, dtype=np.int64).reshape(-1, self.channels))
        if len(x) == 0:
            return np.zeros((0, self.channels), np.int64)
        if self.history is None:
            self.history = np.broadcast_to(x[0], (self.window, self.channels)).copy()
        full = np.concatenate([self.history, x])
        self.history = full[-self.window:].copy()
        first = self.pushed
        self.pushed += len(x)
        keep = np.arange(first + 1, self.pushed + 1) > self.delay
        if not keep.any():
            return np.zeros((0, self.channels), np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(full, self.window, axis=0)[1:]
        windows = windows[keep]                                  # (m, channels, window)
        idx = self.window - 1 - self.delay
        if len(windows) <= 4:          # a live stream's few samples: plain integers are faster
            out = np.array([[_filtfilt_state(win[c], self.coefs)[idx]
                             for c in range(self.channels)] for win in windows], np.int64)
        else:
            out = np.stack([_filtfilt_rows(np.ascontiguousarray(windows[:, c, :]),
                                           self.coefs)[:, idx]
                            for c in range(self.channels)], axis=1)
        return _to_q16(out)

    def flush(self):
        """The samples a middle tap still owes at end of stream (from the final window)."""
        owed = min(self.delay, self.pushed)
        if owed == 0:
            return []
        filt = _to_q16(self._filtered())
        return [filt[self.window - owed + i] for i in range(owed)]

    def reset(self):
        self.history, self.pushed = None, 0


def _forward_rows(x, coefs, taps, snap_at=()):
    """The causal cascade over Q24 samples ``x`` (n, channels), taps carried in ``taps``
    (sections, 4, channels: x1, x2, y1, y2; updated in place). Same integers as
    ``CausalFilter.push`` before its rounding to Q16. Also returns the taps as they are after
    each sample index in ``snap_at``: ``(len(snap_at), sections, 4, channels)``."""
    half = 1 << (COEF_FRAC - 1)
    lim = 1 << (STATE_WIDTH - 1)
    out = np.empty_like(x)
    snaps = np.empty((len(snap_at),) + taps.shape, dtype=np.int64)
    marks = {int(k): i for i, k in enumerate(snap_at)}
    for c in range(x.shape[1]):
        col = x[:, c].tolist()
        for s in range(coefs.sections):
            g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
            x1, x2, y1, y2 = (int(v) for v in taps[s, :, c])
            res = []
            for n, xn in enumerate(col):
                acc = g * (xn + 2 * x1 + x2) - a1 * y1 - a2 * y2
                y = min(max((acc + half) >> COEF_FRAC, -lim), lim - 1)
                res.append(y)
                x2, x1, y2, y1 = x1, xn, y1, y
                if n in marks:
                    snaps[marks[n], s, :, c] = (x1, x2, y1, y2)
            taps[s, :, c] = (x1, x2, y1, y2)
            col = res
        out[:, c] = col
    return out, snaps


def _cascade_rows(x, coefs, taps):
    """The cascade over many independent rows ``x`` (M, L), each from its own taps
    ``(M, sections, 4)`` (x1, x2, y1, y2)."""
    half = 1 << (COEF_FRAC - 1)
    lim = 1 << (STATE_WIDTH - 1)
    for s in range(coefs.sections):
        g, a1, a2 = int(coefs.g[s]), int(coefs.a1[s]), int(coefs.a2[s])
        x1, x2, y1, y2 = (taps[:, s, k].copy() for k in range(4))
        out = np.empty_like(x)
        for n in range(x.shape[1]):
            xn = x[:, n]
            y = np.clip((g * (xn + 2 * x1 + x2) - a1 * y1 - a2 * y2 + half) >> COEF_FRAC,
                        -lim, lim - 1)
            out[:, n] = y
            x2, x1, y2, y1 = x1, xn, y1, y
        x = out
    return x


def _backward_rows(seq, coefs):
    """Backward cascade over many sequences ``(M, L)`` (oldest first), each from the steady
    state of its newest sample; returns ``(M, L)`` oldest first."""
    rev = np.ascontiguousarray(seq[:, ::-1])
    for g, a1, a2 in zip(coefs.g, coefs.a1, coefs.a2, strict=False):
        rev = _section_rows(rev, g, a1, a2, rev[:, 0].copy())
    return rev[:, ::-1]


class AmortizedBlockFilter:
    """Block-bidirectional filter with the forward state carried across blocks and one
    backward pass per ``hop`` samples (mode ``block-amortized``, see the module docstring).

    After push ``t`` = ``window - 1 + k*hop`` (0-based) a backward pass runs: the forward
    cascade continues, from a copy of its state at ``t``, over ``padlen`` odd-padding samples
    ``2*x[t] - x[t-1] .. 2*x[t] - x[t-padlen]`` (scipy ``filtfilt``'s padding, on the right
    end only), then the backward cascade runs from the steady state of the last padded output
    down over the padding and the last ``window`` forward outputs, and samples
    ``t - window + 1 .. t - window + hop`` are released (look-ahead ``window - hop`` to
    ``window - 1``). ``push_many`` returns what its pushes release, in order: nothing for the
    first ``window - 1`` pushes, then ``hop`` samples every ``hop``-th push. ``flush()`` runs
    the same pass after the last push and returns the samples still owed (at most
    ``window - 1``). Until ``window`` samples have arrived the history holds the first one, as
    ``BlockFilter``'s does.
    """

    def __init__(self, window: int = WINDOW, hop: int | None = None, padlen: int = PADLEN,
                 coefs: FilterCoefficients | None = None, channels: int = 2):
        hop = window // 2 if hop is None else hop
        if not isinstance(window, int) or not 2 <= window <= 1024:
            raise ValueError(f"window must be an int in [2, 1024], got {window!r}")
        if not isinstance(hop, int) or not 1 <= hop < window:
            raise ValueError(f"hop must be an int in [1, window), got {hop!r}")
        if not isinstance(padlen, int) or not 0 <= padlen < window:
            raise ValueError(f"padlen must be an int in [0, window), got {padlen!r}")
        self.window, self.hop, self.padlen, self.channels = window, hop, padlen, channels
        self.coefs = quantize() if coefs is None else coefs
        self.reset()

    @property
    def delay(self) -> int:
        """The smallest look-ahead (samples) of a released sample: ``window - hop``."""
        return self.window - self.hop

    def reset(self):
        self.taps = None           # forward cascade (sections, 4, channels)
        self.history = None        # the last ``window`` forward outputs, Q24 (window, ch)
        self.inputs = None         # the last ``window`` inputs, Q24 (window, ch)
        self.pushed = self.emitted = 0

    def push(self, x_q16):
        """One sample; returns the ``(m, channels)`` samples it releases (``m`` 0 or hop)."""
        return self.push_many(np.asarray(x_q16, dtype=np.int64).reshape(1, self.channels))

    def _release(self, fwd, inp, snaps):
        """Backward passes over windows ``fwd``/``inp`` (M, window, ch) whose forward taps
        after their newest sample are ``snaps`` (M, sections, 4, ch): (M, window, ch) Q24."""
        m, w, p = len(fwd), self.window, self.padlen
        out = np.empty_like(fwd)
        ks = np.arange(1, p + 1)
        for c in range(self.channels):
            pad = sat(2 * inp[:, -1:, c] - inp[:, w - 1 - ks, c], STATE_WIDTH)   # (M, p)
            fpad = _cascade_rows(pad, self.coefs, snaps[..., c]) if p else pad[:, :0]
            seq = np.concatenate([fwd[:, :, c], fpad], axis=1)
            out[:, :, c] = _backward_rows(seq, self.coefs)[:, :w]
        assert out.shape == (m, w, self.channels)
        return out

    def push_many(self, rows_q16):
        x = _to_state(np.asarray(rows_q16, dtype=np.int64).reshape(-1, self.channels))
        if len(x) == 0:
            return np.zeros((0, self.channels), np.int64)
        if self.taps is None:
            self.taps = np.broadcast_to(x[0], (self.coefs.sections, 4, self.channels)).copy()
            self.history = np.broadcast_to(x[0], (self.window, self.channels)).copy()
            self.inputs = self.history.copy()
        first = self.pushed
        t = np.arange(first, first + len(x))
        ends = t[(t >= self.window - 1) & ((t - (self.window - 1)) % self.hop == 0)]
        f, snaps = _forward_rows(x, self.coefs, self.taps, snap_at=ends - first)
        full_f = np.concatenate([self.history, f])
        full_x = np.concatenate([self.inputs, x])
        self.history = full_f[-self.window:].copy()
        self.inputs = full_x[-self.window:].copy()
        self.pushed += len(x)
        if len(ends) == 0:
            return np.zeros((0, self.channels), np.int64)
        idx = (ends - first + self.window)[:, None] + np.arange(-self.window + 1, 1)[None, :]
        out = self._release(full_f[idx], full_x[idx], snaps)[:, :self.hop]
        self.emitted = int(ends[-1]) - self.window + self.hop + 1
        return _to_q16(out.reshape(-1, self.channels))

    def flush(self):
        """The samples still owed at end of stream, from the same pass after the last push
        (the newest have little look-ahead, as at any stream's end)."""
        owed = self.pushed - self.emitted
        if owed == 0:
            return []
        back = self._release(self.history[None], self.inputs[None], self.taps[None].copy())[0]
        self.emitted = self.pushed
        return list(_to_q16(back[self.window - owed:]))


def amortized_block_filter(x_q16, window: int = WINDOW, hop: int | None = None,
                           padlen: int = PADLEN, coefs: FilterCoefficients | None = None):
    """``AmortizedBlockFilter`` over a whole Q16 series (axis 0), aligned with its input."""
    x = np.asarray(x_q16, dtype=np.int64)
    f = AmortizedBlockFilter(window=window, hop=hop, padlen=padlen, coefs=coefs,
                             channels=x[0].size if len(x) else 1)
    outs = list(f.push_many(x.reshape(len(x), -1))) + f.flush()
    return np.array(outs, dtype=np.int64).reshape(x.shape)


def make_filter(mode: str, channels: int = 2):
    """The streaming filter of a mode in ``MODES`` (``None`` for ``none``). Every one has
    ``push_many``; the block modes also ``flush``."""
    if mode not in MODES:
        raise ValueError(f"filter must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return None
    if mode == "causal":
        return CausalFilter(channels=channels)
    if mode == "block-amortized":
        return AmortizedBlockFilter(channels=channels)
    return BlockFilter(tap=mode.split("-")[1], channels=channels)


def filter_macs(mode: str, channels: int = 2, sections: int = 2) -> float:
    """Multiplies per decode (per sample, averaged over a block) of a filter mode with the
    default window: see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"filter must be one of {', '.join(MODES)}, got {mode!r}")
    per = SECTION_MACS * sections * channels               # one cascade step, all axes
    if mode == "none":
        return 0.0
    if mode == "causal":
        return float(per)
    if mode == "block-amortized":
        return float(per * (1 + (WINDOW + 2 * PADLEN) / (WINDOW // 2)))
    index = WINDOW - 1 - (WINDOW // 2 if mode == "block-middle" else 0)
    return float(per * ((WINDOW + 2 * PADLEN) + (WINDOW + PADLEN - index)))


def filter_footprint_bytes(mode: str, channels: int = 2, sections: int = 2) -> int:
    """State and coefficient bytes of a filter mode (36-bit words as 5 bytes, 23-bit
    coefficients as 4): the taps a stream keeps plus the sample history it needs."""
    coefs = sections * 3 * 4
    taps = sections * 4 * channels * 5
    if mode == "none":
        return 0
    if mode == "causal":
        return taps + coefs
    if mode == "block-amortized":
        # forward outputs and inputs (window each), padded outputs, forward and backward
        # taps, the released block (24-bit samples)
        return ((2 * WINDOW * channels + PADLEN) * 5 + taps + sections * 4 * 5
                + (WINDOW // 2) * channels * 3 + coefs)
    if mode in ("block-last", "block-middle"):
        return WINDOW * channels * 5 + coefs
    raise ValueError(f"filter must be one of {', '.join(MODES)}, got {mode!r}")
