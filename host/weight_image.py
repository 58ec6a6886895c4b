# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's packed weight image: every linear of a model in ``golden.packing``'s
layout (layout version 1, documented there), and its file.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..golden import tlmm
from ..golden.config import AcceleratorConfig
from ..golden.packing import (
    BEAT_BITS,
    BEAT_BYTES,
    LAYOUT_VERSION,
    PackedLinear,
    linear_indices,
    pack_linear,
    stream_beats,
)
from ..golden.weights import LINEAR_NAMES, ModelWeights, TernaryLinear
from .checkpoint import SafetensorsFile, write_safetensors
from .errors import CheckpointError

__all__ = ["FORMAT", "WeightImage", "load_image", "pack_model", "save_image", "unpack_linear"]

FORMAT = "ternedge-weight-image"


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


def unpack_linear(packed: PackedLinear) -> TernaryLinear:
    """The inverse of ``pack_linear``: ternary (N, K) int8 and the scale ``m * 2**-e``.

    The ternary values come back exactly; the scale is the 16-bit-mantissa Scale the
    accelerator uses, within 2**-16 relative of the original float scale.
    """
    _check_beats(packed)
    idx = linear_indices(packed)                                   # (ks, N_pad, T)
    per_column = idx.transpose(1, 0, 2).reshape(packed.n_padded, -1)[:packed.out_features]
    ternary = tlmm.decode_weights(per_column, packed.in_features, packed.group_size)
    return TernaryLinear(ternary=ternary, scale=packed.scale)


def _check_beats(packed: PackedLinear):
    expected = stream_beats(packed.num_entries * packed.entry_bits)
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
