# SPDX-License-Identifier: BSD-3-Clause
"""Fixed-point LIF decoder (SNN_Streaming, Zhou, Sun, Basu, arXiv 2312.15889): the exact
integer arithmetic of ``rtl.snn.Decoder``.

Topology: binary spikes ``C -> 32 -> 48 -> 2``, every layer ``Linear`` + leaky
integrate-and-fire with persistent membranes; the output layer's membrane (readout scalars
``v_x, v_y`` folded into its weights and bias) is the decoded velocity.

LIF semantics are snnTorch's ``snn.Leaky`` with the default delayed reset
(``research/snn-decoding.md`` section 5), per bin ``t``::

    reset_t = S_{t-1}                               (= U_{t-1} > theta, the stored spike bit)
    I_t     = bias + sum_{j : s_j = 1} W[:, j] << GUARD      (event-driven: adds only)
    U_t     = sat(decay(U_{t-1}) + I_t - reset_t * theta)    ("subtract"; "none": no term;
                                                              "zero": decay(U) masked to 0)
    S_t     = U_t > theta                           (strict, as snnTorch's Heaviside)

Widths and rounding
-------------------
* weights: int8 (``WEIGHT_WIDTH``), per layer a power-of-two scale ``2**-weight_shift``;
* membrane, bias, threshold: ``MEM_WIDTH`` = 24-bit signed with ``frac = weight_shift + GUARD``
  fractional bits (``GUARD`` = 8 bits below a weight's LSB so the leak does not erode
  small membranes); the sum ``U`` saturates to 24 bits once per bin. The largest current is
  ``|bias| + 192 * 128 * 2**8 < 2**24``, so a 32-bit accumulator never wraps;
* decay: ``beta`` in Q0.12 (``BETA_FRAC``), ``decay(U) = (beta*U + 2**11) >> 12``: round half
  up, the house convention of ``golden.fixed``;
* output: the output membrane rescaled to Q16 velocity, ``round_shift(U, frac - 16)``.

Synaptic operations are counted as NeuroBench's effective ACs: one per (active binary input,
non-zero weight) pair; the network has no MACs (inputs are all binary).
"""

import dataclasses

import numpy as np

from .fixed import round_shift

__all__ = [
    "BETA_FRAC", "GUARD", "MEM_WIDTH", "WEIGHT_WIDTH", "OUT_FRAC", "RESETS", "Layer",
    "Network", "State", "quantize_layer", "lif_update", "step", "run", "synaptic_ops",
]

BETA_FRAC = 12
GUARD = 8
MEM_WIDTH = 24
WEIGHT_WIDTH = 8
OUT_FRAC = 16
RESETS = ("subtract", "none", "zero")

_MEM_LO = -(1 << (MEM_WIDTH - 1))
_MEM_HI = (1 << (MEM_WIDTH - 1)) - 1


@dataclasses.dataclass
class Layer:
    """One integer LIF layer: ``weights`` (N, K) int8 values, ``bias`` (N,), scalar ``beta``
    (Q0.12), ``theta`` (membrane units), ``reset`` and ``frac`` (membrane fraction bits)."""

    weights: np.ndarray
    bias: np.ndarray
    beta: int
    theta: int
    reset: str
    frac: int

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.int64)
        self.bias = np.asarray(self.bias, dtype=np.int64)
        lim = 1 << (WEIGHT_WIDTH - 1)
        if self.weights.ndim != 2 or np.any(np.abs(self.weights) > lim - 1):
            raise ValueError(f"weights must be 2-D within +-{lim - 1}")
        if self.bias.shape != (self.weights.shape[0],):
            raise ValueError("bias must have one entry per neuron")
        if np.any(self.bias < _MEM_LO) or np.any(self.bias > _MEM_HI):
            raise ValueError(f"bias must fit {MEM_WIDTH} bits")
        if not 0 <= int(self.beta) <= 1 << BETA_FRAC:
            raise ValueError(f"beta must be in [0, {1 << BETA_FRAC}] (Q0.{BETA_FRAC})")
        if not 0 <= int(self.theta) <= _MEM_HI:
            raise ValueError("theta must be a non-negative membrane value")
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        self.beta, self.theta, self.frac = int(self.beta), int(self.theta), int(self.frac)

    @property
    def inputs(self) -> int:
        return self.weights.shape[1]

    @property
    def neurons(self) -> int:
        return self.weights.shape[0]


@dataclasses.dataclass
class Network:
    """A stack of layers; the last layer's membrane is the output (readout folded in)."""

    layers: list

    def __post_init__(self):
        for a, b in zip(self.layers, self.layers[1:], strict=False):
            if a.neurons != b.inputs:
                raise ValueError(f"layer widths do not chain: {a.neurons} -> {b.inputs}")

    @property
    def channels(self) -> int:
        return self.layers[0].inputs

    @property
    def outputs(self) -> int:
        return self.layers[-1].neurons

    @property
    def footprint_bytes(self) -> int:
        """Parameter bytes as stored on chip: int8 weights, 24-bit (3-byte) biases, per-layer
        beta (2 B), theta (3 B), plus the membranes (3 B) and spike bits of the state."""
        params = sum(layer.weights.size + 3 * layer.neurons + 5 for layer in self.layers)
        state = sum(3 * layer.neurons + (layer.neurons + 7) // 8 for layer in self.layers)
        return params + state


@dataclasses.dataclass
class State:
    """Membranes and last spike bits, one array per layer."""

    u: list
    s: list

    @classmethod
    def zeros(cls, net: Network):
        return cls([np.zeros(layer.neurons, np.int64) for layer in net.layers],
                   [np.zeros(layer.neurons, bool) for layer in net.layers])

    def copy(self):
        return State([u.copy() for u in self.u], [s.copy() for s in self.s])


def quantize_layer(weight, bias, beta, theta, reset, scale=None) -> Layer:
    """Float layer (``weight`` (N, K), ``bias`` (N,), ``beta``, ``theta``) to integers.

    ``weight_shift`` is the largest shift with ``max|W| * 2**shift <= 127`` (or ``log2(scale)``
    when given); everything rounds half up.
    """
    weight = np.asarray(weight, dtype=np.float64)
    peak = float(np.max(np.abs(weight))) or 1.0
    shift = int(np.floor(np.log2(127.0 / peak))) if scale is None else int(scale)
    frac = shift + GUARD
    w = np.clip(np.floor(weight * 2.0**shift + 0.5), -127, 127).astype(np.int64)
    b = np.clip(np.floor(np.asarray(bias, np.float64) * 2.0**frac + 0.5), _MEM_LO, _MEM_HI)
    beta_q = int(np.clip(np.floor(float(beta) * (1 << BETA_FRAC) + 0.5), 0, 1 << BETA_FRAC))
    theta_q = int(np.clip(np.floor(float(theta) * 2.0**frac + 0.5), 0, _MEM_HI))
    return Layer(w, b.astype(np.int64), beta_q, theta_q, reset, frac)


def lif_update(u_prev, s_prev, current, layer: Layer):
    """One bin of one layer: the equations in the module docstring. Returns ``(u, s)``."""
    decay = round_shift(layer.beta * np.asarray(u_prev, np.int64), BETA_FRAC)
    if layer.reset == "subtract":
        u = decay + current - np.where(s_prev, layer.theta, 0)
    elif layer.reset == "zero":
        u = np.where(s_prev, 0, decay) + current
    else:
        u = decay + current
    u = np.clip(u, _MEM_LO, _MEM_HI)
    return u, u > layer.theta


def _current(layer, spikes_in):
    active = np.asarray(spikes_in, bool)
    return layer.bias + (layer.weights[:, active].sum(axis=1) << GUARD)


def _output(net, u_out):
    return round_shift(u_out, net.layers[-1].frac - OUT_FRAC)


def step(net: Network, state: State, spikes):
    """Decode one bin (``spikes``: (C,) binary); updates ``state`` in place, returns Q16 (2,)."""
    x = np.asarray(spikes, bool)
    for i, layer in enumerate(net.layers):
        state.u[i], state.s[i] = lif_update(state.u[i], state.s[i], _current(layer, x), layer)
        x = state.s[i]
    return _output(net, state.u[-1])


def _scan(layer, currents, u, s):
    """LIF over a block of bins (currents (T, N)); the per-bin loop on preallocated arrays."""
    t_len, n = currents.shape
    u_all = np.empty((t_len, n), np.int64)
    s_all = np.empty((t_len, n), bool)
    beta, theta, half = layer.beta, layer.theta, 1 << (BETA_FRAC - 1)
    u = u.copy()
    s = s.copy()
    sub = layer.reset == "subtract"
    zero = layer.reset == "zero"
    tmp = np.empty(n, np.int64)
    for t in range(t_len):
        np.multiply(u, beta, out=tmp)
        tmp += half
        np.right_shift(tmp, BETA_FRAC, out=tmp)
        if zero:
            tmp[s] = 0
        np.add(tmp, currents[t], out=u)
        if sub:
            u -= s * theta
        np.clip(u, _MEM_LO, _MEM_HI, out=u)
        np.greater(u, theta, out=s)
        u_all[t] = u
        s_all[t] = s
    return u_all, s_all


def run(net: Network, spikes, state: State | None = None, activity: bool = False):
    """Decode a block of bins ``(T, C)``; returns ``(Q16 outputs (T, outputs), state)``.

    Layer by layer over the block (the currents of a layer are one matrix product), which is
    bit-identical to calling ``step`` per bin and much faster; memory is O(T) per call, so a
    stream calls it on bounded blocks. ``activity=True`` also returns the number of set input
    bits per layer per bin ``(T, layers)``, which is what the RTL's cycle count depends on.
    """
    state = State.zeros(net) if state is None else state.copy()
    x = np.asarray(spikes, bool)
    if x.ndim != 2 or x.shape[1] != net.channels:
        raise ValueError(f"spikes must be (T, {net.channels}), got {x.shape}")
    u_all = None
    counts = np.zeros((len(x), len(net.layers)), np.int64)
    for i, layer in enumerate(net.layers):
        counts[:, i] = x.sum(axis=1)
        currents = layer.bias + ((x.astype(np.int64) @ layer.weights.T) << GUARD)
        u_all, x = _scan(layer, currents, state.u[i], state.s[i])
        if len(x):
            state.u[i], state.s[i] = u_all[-1].copy(), x[-1].copy()
    if activity:
        return _output(net, u_all), state, counts
    return _output(net, u_all), state


def synaptic_ops(net: Network, spikes, outputs_per_layer=None):
    """NeuroBench effective ACs per decode, averaged over bins: (active input, non-zero
    weight) pairs summed over layers. ``spikes`` (T, C) are the input bins; the hidden spikes
    are recomputed with ``run``.
    """
    x = np.asarray(spikes, bool)
    total = 0
    state = State.zeros(net)
    inputs = [x]
    for i, layer in enumerate(net.layers[:-1]):
        currents = layer.bias + ((inputs[-1].astype(np.int64) @ layer.weights.T) << GUARD)
        _, s = _scan(layer, currents, state.u[i], state.s[i])
        inputs.append(s)
    for layer, xin in zip(net.layers, inputs, strict=False):
        nonzero = (layer.weights != 0).sum(axis=0)          # per input column
        total += float((xin.astype(np.int64) @ nonzero).sum())
    return total / max(len(x), 1)
