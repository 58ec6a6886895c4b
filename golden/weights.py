# SPDX-License-Identifier: BSD-3-Clause
"""In-memory weights of a BitNet b1.58 model, as every backend consumes them.

Linear layers are held already quantized (ternary values and one per-tensor scale, so that
``W ~= ternary * scale`` with ``scale = mean|W|``, BitNet b1.58 eq. 1-3); norms and embeddings
stay float32. Loaders in ``ternedge.host.checkpoint`` produce this; the golden model, the torch
reference and the weight-image packer consume it.
"""

from dataclasses import dataclass

import numpy as np

from .config import ModelConfig

__all__ = ["TernaryLinear", "LayerWeights", "ModelWeights", "RangeScales", "LINEAR_NAMES"]

#: linear layers of one decoder layer, in the order the accelerator runs them
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TernaryLinear:
    """A ternary linear layer: ``y = x @ (ternary * scale).T``.

    Parameters
    ----------
    ternary : int8 array of shape (out_features, in_features) with values in {-1, 0, +1}.
    scale : float, the absmean scale (``mean|W|`` of the float weight it came from).
    """

    ternary: np.ndarray
    scale: float

    @property
    def out_features(self) -> int:
        return self.ternary.shape[0]

    @property
    def in_features(self) -> int:
        return self.ternary.shape[1]


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer. Norm weights are float32 vectors."""

    input_layernorm: np.ndarray
    post_attention_layernorm: np.ndarray
    attn_sub_norm: np.ndarray
    ffn_sub_norm: np.ndarray
    q_proj: TernaryLinear
    k_proj: TernaryLinear
    v_proj: TernaryLinear
    o_proj: TernaryLinear
    gate_proj: TernaryLinear
    up_proj: TernaryLinear
    down_proj: TernaryLinear


#: the largest range-scaling factor (``golden.scaling``)
MAX_RANGE_FACTOR = 1 << 8


@dataclass(frozen=True)
class RangeScales:
    """Power-of-two factors by which a model was rescaled for the Q16 datapath
    (``golden.scaling``): ``residual`` (c), ``norm`` (d), ``gate`` (g); all 1 is no change."""

    residual: int = 1
    norm: int = 1
    gate: int = 1

    def __post_init__(self):
        for name in ("residual", "norm", "gate"):
            value = getattr(self, name)
            if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
                    or value & (value - 1) or value > MAX_RANGE_FACTOR):
                raise ValueError(f"range scale {name} must be a power of two in "
                                 f"[1, {MAX_RANGE_FACTOR}], got {value!r}")


@dataclass(frozen=True)
class ModelWeights:
    """A whole model: config, float32 embeddings and LM head, final norm, layers.

    ``range_scales`` records a ``golden.scaling`` rescaling (the model computes the same
    function; ``golden.scaling.undo`` returns the weights it came from). Checkpoints hold unit
    scale: ``GoldenModel`` rescales on construction, ``save_checkpoint`` undoes it.
    """

    config: ModelConfig
    embed_tokens: np.ndarray
    lm_head: np.ndarray
    norm: np.ndarray
    layers: tuple
    range_scales: RangeScales = RangeScales()
