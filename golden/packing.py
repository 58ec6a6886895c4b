# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's packed weight layout: the one layout the host's weight image
(``host.weight_image``), the DDR layout (``golden.layout``), the RTL TLMM engine and the cycle
simulator share.

Layout version 1
----------------
Geometry comes from ``golden.config.AcceleratorConfig``: group size ``G``, tables per K-step
``T``, columns per cycle ``C`` (``cols_per_cycle``, TeLLMe: G=3, T=28, C=16). For one linear with
ternary weights ``W`` of shape (N, K) (out_features, in_features):

1. **Indices.** ``golden.tlmm.encode_weights(W, G)`` gives one table index per group of G
   consecutive weights along K, shape (N, ceil(K/G)), in the table order documented in
   ``golden.tlmm`` (0 is the zero pattern). An index is ``b = tlmm.index_bits(G)`` bits wide
   (4, 5, 7 for G = 2, 3, 4).
2. **Padding.** K is zero-padded to ``K_pad = k_steps * G * T`` with
   ``k_steps = ceil(K / (G*T))`` (a K-step is the ``G*T`` activations whose T tables are built
   together); padded groups get index 0. N is zero-padded to ``N_pad``, a multiple of ``C``;
   padded columns are all index 0. Index ``indices[n, g]`` then belongs to K-step
   ``ks = g // T`` and table ``t = g % T``.
3. **Entry.** One entry is the T indices of one column for one K-step,
   ``entry_bits = T * b`` bits wide (TeLLMe: 28 x 5 = 140): table ``t``'s index sits in entry
   bits ``[t*b, (t+1)*b)``, least significant bit first.
4. **Order.** Entries are ordered K-step-major, then column (``for ks: for n in range(N_pad):``),
   the order the engine consumes them. Entry ``e = ks * N_pad + n`` occupies stream bits
   ``[e * entry_bits, (e+1) * entry_bits)``, so index ``(ks, n, t)`` starts at stream bit
   ``(ks * N_pad + n) * entry_bits + t * b``.
5. **Bytes and beats.** The stream is little-endian: stream bit ``i`` is bit ``i % 8`` of byte
   ``i // 8``. It is zero-padded to a whole number of 256-bit bus beats; beat ``j`` is bytes
   ``[32j, 32j+32)`` (bit ``i`` of a beat is stream bit ``256j + i``). ``PackedLinear.beats`` has
   shape (num_beats, 32), uint8.
6. **Scale.** The per-tensor scale is the 16-bit-mantissa Scale ``(m, e)`` from
   ``golden.quant.weight_scale`` (``scale = m * 2**-e``), the value the dequantizer multiplies by.
"""

from dataclasses import dataclass, field

import numpy as np

from . import quant, tlmm
from .config import AcceleratorConfig
from .weights import TernaryLinear

__all__ = ["BEAT_BITS", "BEAT_BYTES", "LAYOUT_VERSION", "PackedLinear", "entry_indices",
           "linear_indices", "pack_linear", "stream_beats"]

LAYOUT_VERSION = 1
#: the beat width of ``PackedLinear.beats``
BEAT_BITS = 256
BEAT_BYTES = BEAT_BITS // 8


@dataclass(frozen=True)
class PackedLinear:
    """One linear layer in the accelerator's weight layout (see the module docstring).

    Parameters
    ----------
    in_features, out_features : K and N of the ternary matrix (N, K).
    group_size, tables_per_step, cols_per_cycle : G, T, C of the geometry it was packed for.
    scale_m, scale_e : the weight Scale, ``scale = scale_m * 2**-scale_e``.
    beats : uint8 (num_beats, 32), the little-endian entry stream in 256-bit beats.
    """

    in_features: int
    out_features: int
    group_size: int
    tables_per_step: int
    cols_per_cycle: int
    scale_m: int
    scale_e: int
    beats: np.ndarray = field(repr=False)

    @property
    def index_bits(self) -> int:
        return tlmm.index_bits(self.group_size)

    @property
    def entry_bits(self) -> int:
        """T * b bits: the T table indices of one column for one K-step (TeLLMe: 140)."""
        return self.tables_per_step * self.index_bits

    @property
    def k_steps(self) -> int:
        return -(-self.in_features // (self.group_size * self.tables_per_step))

    @property
    def k_padded(self) -> int:
        return self.k_steps * self.group_size * self.tables_per_step

    @property
    def n_padded(self) -> int:
        return -(-self.out_features // self.cols_per_cycle) * self.cols_per_cycle

    @property
    def num_entries(self) -> int:
        return self.k_steps * self.n_padded

    @property
    def num_beats(self) -> int:
        return int(self.beats.shape[0])

    @property
    def scale(self) -> float:
        """The Scale as a float, ``m * 2**-e``."""
        return float(np.ldexp(np.float64(self.scale_m), -self.scale_e))


def stream_beats(bits: int) -> int:
    """Beats of ``BEAT_BITS`` that hold a stream of ``bits`` bits."""
    return -(-bits // BEAT_BITS)


def pack_linear(linear: TernaryLinear, config: AcceleratorConfig) -> PackedLinear:
    """Pack one ternary linear into the layout of the module docstring.

    Parameters
    ----------
    linear : ternary (N, K) weights and their float scale.
    config : the accelerator geometry (``group_size``, ``tables_per_step``, ``cols_per_cycle``).
    """
    g, t, c = config.group_size, config.tables_per_step, config.cols_per_cycle
    ternary = np.asarray(linear.ternary)
    n, k = ternary.shape
    indices = tlmm.encode_weights(ternary, g)                # (N, ceil(K/G))
    k_steps = -(-k // (g * t))
    n_pad = -(-n // c) * c
    padded = np.zeros((n_pad, k_steps * t), dtype=np.uint8)
    padded[:n, :indices.shape[1]] = indices
    b = tlmm.index_bits(g)
    # (ks, n, t) in stream order, then b bits per index, LSB first
    ordered = padded.reshape(n_pad, k_steps, t).transpose(1, 0, 2)
    bits = (ordered[..., None] >> np.arange(b, dtype=np.uint8)) & np.uint8(1)
    stream = bits.reshape(-1)
    beats = stream_beats(stream.size)
    stream = np.concatenate([stream, np.zeros(beats * BEAT_BITS - stream.size, np.uint8)])
    packed = np.packbits(stream, bitorder="little").reshape(beats, BEAT_BYTES)
    m, e = quant.weight_scale(linear.scale)
    return PackedLinear(in_features=k, out_features=n, group_size=g, tables_per_step=t,
                        cols_per_cycle=c, scale_m=int(m), scale_e=int(e), beats=packed)


def linear_indices(packed: PackedLinear) -> np.ndarray:
    """All indices as (k_steps, N_pad, T), read back from the beat stream."""
    b, t = packed.index_bits, packed.tables_per_step
    used = packed.num_entries * packed.entry_bits
    bits = np.unpackbits(np.asarray(packed.beats, np.uint8).reshape(-1), bitorder="little")
    bits = bits[:used].reshape(packed.k_steps, packed.n_padded, t, b).astype(np.uint16)
    return (bits << np.arange(b, dtype=np.uint16)).sum(axis=-1, dtype=np.uint16)


def entry_indices(packed: PackedLinear, k_step: int, col: int) -> np.ndarray:
    """The T table indices of column ``col`` in K-step ``k_step``, read from the bit stream.

    Returns a uint8 array of length T; ``[t]`` is the index table ``t`` looks up (for an
    RTL testbench, the value at entry bits ``[t*b, (t+1)*b)``).
    """
    if not 0 <= k_step < packed.k_steps:
        raise IndexError(f"k_step {k_step} is outside 0..{packed.k_steps - 1}")
    if not 0 <= col < packed.n_padded:
        raise IndexError(f"col {col} is outside 0..{packed.n_padded - 1} (padded columns)")
    b, width = packed.index_bits, packed.entry_bits
    start = (k_step * packed.n_padded + col) * width
    data = np.asarray(packed.beats, np.uint8).reshape(-1)
    first, last = start // 8, (start + width + 7) // 8
    value = int.from_bytes(data[first:last].tobytes(), "little") >> (start - 8 * first)
    return np.array([(value >> (t * b)) & ((1 << b) - 1) for t in range(packed.tables_per_step)],
                    dtype=np.uint8)
