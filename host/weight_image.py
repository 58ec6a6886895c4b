# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's packed weight image: the one layout the RTL TLMM engine and the cycle
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

Image file: one safetensors file. Per linear ``layers.{i}.{name}`` (``name`` from
``golden.weights.LINEAR_NAMES``): ``layers.{i}.{name}.beats`` (U8, (num_beats, 32)) and
``layers.{i}.{name}.scale`` (I32, ``[m, e]``). ``__metadata__`` holds ``format``
(``"ternedge-weight-image"``), ``layout_version`` (``"1"``), ``geometry`` (JSON: group_size,
tables_per_step, cols_per_cycle, index_bits, entry_bits, beat_bits), ``linears`` (JSON:
``{name: {"in_features": K, "out_features": N}}`` in image order) and ``model_config`` (JSON of
``ModelConfig.to_dict()``, or ``null``). Norms and embeddings are not part of the image.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden import quant, tlmm
from ..golden.config import AcceleratorConfig
from ..golden.weights import LINEAR_NAMES, ModelWeights, TernaryLinear
from .checkpoint import SafetensorsFile, write_safetensors
from .errors import CheckpointError

__all__ = ["BEAT_BITS", "BEAT_BYTES", "FORMAT", "LAYOUT_VERSION", "PackedLinear", "WeightImage",
           "entry_indices", "load_image", "pack_linear", "pack_model", "save_image",
           "unpack_linear"]

FORMAT = "ternedge-weight-image"
LAYOUT_VERSION = 1
#: DDR/AXI bus beat width
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


@dataclass(frozen=True)
class WeightImage:
    """All linears of a model in image order (layer-major, ``LINEAR_NAMES`` within a layer).

    Parameters
    ----------
    group_size, tables_per_step, cols_per_cycle : the geometry every linear is packed for.
    linears : ``{"layers.{i}.{name}": PackedLinear}``, ordered.
    model_config : ``ModelConfig.to_dict()`` of the model, or None.
    """

    group_size: int
    tables_per_step: int
    cols_per_cycle: int
    linears: dict
    model_config: dict | None = None

    @property
    def total_beats(self) -> int:
        return sum(p.num_beats for p in self.linears.values())


def _num_beats(bits: int) -> int:
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
    beats = _num_beats(stream.size)
    stream = np.concatenate([stream, np.zeros(beats * BEAT_BITS - stream.size, np.uint8)])
    packed = np.packbits(stream, bitorder="little").reshape(beats, BEAT_BYTES)
    m, e = quant.weight_scale(linear.scale)
    return PackedLinear(in_features=k, out_features=n, group_size=g, tables_per_step=t,
                        cols_per_cycle=c, scale_m=int(m), scale_e=int(e), beats=packed)


def _indices(packed: PackedLinear) -> np.ndarray:
    """All indices as (k_steps, N_pad, T), read back from the beat stream."""
    b, t = packed.index_bits, packed.tables_per_step
    used = packed.num_entries * packed.entry_bits
    bits = np.unpackbits(np.asarray(packed.beats, np.uint8).reshape(-1), bitorder="little")
    bits = bits[:used].reshape(packed.k_steps, packed.n_padded, t, b).astype(np.uint16)
    return (bits << np.arange(b, dtype=np.uint16)).sum(axis=-1, dtype=np.uint16)


def unpack_linear(packed: PackedLinear) -> TernaryLinear:
    """The inverse of ``pack_linear``: ternary (N, K) int8 and the scale ``m * 2**-e``.

    The ternary values come back exactly; the scale is the 16-bit-mantissa Scale the
    accelerator uses, within 2**-16 relative of the original float scale.
    """
    _check_beats(packed)
    idx = _indices(packed)                                   # (ks, N_pad, T)
    per_column = idx.transpose(1, 0, 2).reshape(packed.n_padded, -1)[:packed.out_features]
    ternary = tlmm.decode_weights(per_column, packed.in_features, packed.group_size)
    return TernaryLinear(ternary=ternary, scale=packed.scale)


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


def _check_beats(packed: PackedLinear):
    expected = _num_beats(packed.num_entries * packed.entry_bits)
    shape = np.shape(packed.beats)
    if shape != (expected, BEAT_BYTES):
        raise CheckpointError(f"linear {packed.out_features}x{packed.in_features} has beats of "
                              f"shape {list(shape)}, expected [{expected}, {BEAT_BYTES}]; the "
                              "image is corrupt or was packed for another geometry, repack it")


def pack_model(weights: ModelWeights, config: AcceleratorConfig) -> WeightImage:
    """Pack every linear of a model; names ``layers.{i}.{name}`` in image order."""
    linears = {}
    for i, layer in enumerate(weights.layers):
        for name in LINEAR_NAMES:
            linears[f"layers.{i}.{name}"] = pack_linear(getattr(layer, name), config)
    return WeightImage(group_size=config.group_size, tables_per_step=config.tables_per_step,
                       cols_per_cycle=config.cols_per_cycle, linears=linears,
                       model_config=weights.config.to_dict())


def save_image(path, image: WeightImage):
    """Write ``image`` as one safetensors file, atomically (temporary sibling, then rename)."""
    path = Path(path)
    tensors, shapes = {}, {}
    for name, p in image.linears.items():
        _check_beats(p)
        if (p.group_size, p.tables_per_step, p.cols_per_cycle) != (
                image.group_size, image.tables_per_step, image.cols_per_cycle):
            raise ValueError(f"linear {name} was packed for another geometry than the image")
        tensors[f"{name}.beats"] = np.asarray(p.beats, np.uint8)
        tensors[f"{name}.scale"] = np.array([p.scale_m, p.scale_e], dtype=np.int32)
        shapes[name] = {"in_features": p.in_features, "out_features": p.out_features}
    b = tlmm.index_bits(image.group_size)
    geometry = {"group_size": image.group_size, "tables_per_step": image.tables_per_step,
                "cols_per_cycle": image.cols_per_cycle, "index_bits": b,
                "entry_bits": image.tables_per_step * b, "beat_bits": BEAT_BITS}
    metadata = {"format": FORMAT, "layout_version": str(LAYOUT_VERSION),
                "geometry": json.dumps(geometry), "linears": json.dumps(shapes),
                "model_config": json.dumps(image.model_config)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write_safetensors(tmp, tensors, metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_image(path) -> WeightImage:
    """Read a weight image written by ``save_image``.

    Raises
    ------
    CheckpointError
        Missing, corrupt or truncated file, another format or layout version, or a linear whose
        beats do not match its recorded shape.
    """
    file = SafetensorsFile(path)
    meta = file.metadata
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ternedge weight image (format "
                              f"{meta.get('format')!r}); create one with pack_model/save_image")
    if meta.get("layout_version") != str(LAYOUT_VERSION):
        raise CheckpointError(f"{path} has weight-image layout version "
                              f"{meta.get('layout_version')!r}, this ternedge reads "
                              f"{LAYOUT_VERSION}; repack the model")
    try:
        geometry = json.loads(meta["geometry"])
        shapes = json.loads(meta["linears"])
        model_config = json.loads(meta.get("model_config", "null"))
        g, t, c = (int(geometry[k]) for k in ("group_size", "tables_per_step",
                                               "cols_per_cycle"))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} has corrupt weight-image metadata; repack the "
                              "model") from None
    linears = {}
    for name, shape in shapes.items():
        for suffix in ("beats", "scale"):
            if f"{name}.{suffix}" not in file:
                raise CheckpointError(f"{path} is missing tensor {name}.{suffix}; repack the "
                                      "model")
        m, e = (int(v) for v in file.read(f"{name}.scale").reshape(-1)[:2])
        packed = PackedLinear(in_features=int(shape["in_features"]),
                              out_features=int(shape["out_features"]), group_size=g,
                              tables_per_step=t, cols_per_cycle=c, scale_m=m, scale_e=e,
                              beats=file.read(f"{name}.beats"))
        _check_beats(packed)
        linears[name] = packed
    return WeightImage(group_size=g, tables_per_step=t, cols_per_cycle=c, linears=linears,
                       model_config=model_config)
