# SPDX-License-Identifier: BSD-3-Clause
"""Load and save BitNet b1.58 checkpoints in the Hugging Face layout, without torch or pickle.

A checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or shards
``model-0000X-of-0000Y.safetensors`` listed in ``model.safetensors.index.json``). Two kinds:

* **float**: every tensor is F32, F16 or BF16; each linear weight is quantized on load with
  ``golden.quant.quantize_weights`` (absmean, BitNet b1.58 eq. 1-3).
* **pre-quantized** (``quantization_config.quant_method == "bitnet"``), as transformers'
  ``integrations/bitnet.py`` writes it: each linear ``weight`` is uint8, 2 bits per value
  storing ``w + 1``, four values per byte along out_features, rows ``[k*R, (k+1)*R)`` of the
  ternary matrix in bits ``[2k, 2k+2)`` of packed row ``r - k*R`` (``R = ceil(out/4)``; packed
  shape ``(R, in)``; ``pack_weights``/``unpack_weights``), plus a one-element ``weight_scale``.
  ``linear_class == "bitlinear"`` (the default) computes ``y = x_q W^T / (s_x * weight_scale)``,
  so the absmean scale is ``1 / weight_scale``; ``"autobitlinear"`` (offline) computes
  ``y = linear(x_q / s_x, W) * weight_scale``, so the scale is ``weight_scale``; its weights may
  also be stored unpacked, shape ``(out, in)`` with values in {-1, 0, 1}.

Families (``config.json`` ``architectures``): ``BitNetForCausalLM`` -> ``"bitnet"`` (HF),
``BitnetForCausalLM`` -> ``"llama-bitnet"`` (1bitLLM, sub-norms named ``inner_attn_ln`` and
``ffn_layernorm``). bf16 tensors are read by parsing the safetensors header here and widening
``uint16 << 16`` to float32 (safetensors' NumPy API has no bf16).
"""

import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..golden import quant, scaling
from ..golden.config import ConfigError, ModelConfig
from ..golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from .errors import CheckpointError, ConfigurationError

__all__ = [
    "ARCHITECTURES",
    "SafetensorsFile",
    "config_from_hf",
    "config_to_hf",
    "hf_tensor_names",
    "load_checkpoint",
    "pack_ternary",
    "read_safetensors",
    "save_checkpoint",
    "unpack_ternary",
    "write_safetensors",
]

#: config.json ``architectures`` entry -> ModelConfig family
ARCHITECTURES = {"BitNetForCausalLM": "bitnet", "BitnetForCausalLM": "llama-bitnet"}
_FAMILY_ARCH = {family: arch for arch, family in ARCHITECTURES.items()}
_FAMILY_MODEL_TYPE = {"bitnet": "bitnet", "llama-bitnet": "llama"}

_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "max_position_embeddings")
_DEFAULTS = {
    "bitnet": {"hidden_act": "relu2", "rope_theta": 500000.0},
    "llama-bitnet": {"hidden_act": "silu", "rope_theta": 10000.0},
}
_SUB_NORMS = {
    "bitnet": {"attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm"},
    "llama-bitnet": {"attn_sub_norm": "self_attn.inner_attn_ln",
                     "ffn_sub_norm": "mlp.ffn_layernorm"},
}
_LINEAR_MODULE = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
                  "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp",
                  "down_proj": "mlp"}
_LINEAR_CLASSES = ("bitlinear", "autobitlinear")

# safetensors dtype codes; BF16 is read as raw uint16 and widened
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
           "BOOL": "?"}
_FLOAT_CODES = ("F64", "F32", "F16", "BF16")
_MAX_HEADER = 100_000_000         # the limit the safetensors library itself enforces


# --------------------------------------------------------------------------- safetensors I/O

class SafetensorsFile:
    """A safetensors file opened by parsing its header; tensors are read on demand.

    Parameters
    ----------
    path : the ``.safetensors`` file.

    Raises
    ------
    CheckpointError
        The file is missing, its header is corrupt, or it is shorter than its header says.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path} does not exist; download or export the "
                                  "checkpoint's safetensors file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise self._corrupt(f"file is {size} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER:
                raise self._corrupt(f"header length {length} is implausible")
            if 8 + length > size:
                raise CheckpointError(
                    f"{self.path} is truncated: its header needs {length} bytes but the file "
                    f"has {size - 8} after the length; re-download or re-export it")
            raw = f.read(length)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            why = exc.msg if hasattr(exc, "msg") else exc
            raise self._corrupt(f"header is not JSON: {why}") from None
        if not isinstance(header, dict):
            raise self._corrupt("header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + length
        data_size = size - self._data_start
        self._entries = {}
        needed = 0
        for name, info in header.items():
            try:
                code = info["dtype"]
                shape = tuple(int(d) for d in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise self._corrupt(f"entry {name!r} lacks dtype, shape or data_offsets") from None
            if code not in _DTYPES:
                raise self._corrupt(f"tensor {name!r} has unsupported dtype {code!r}")
            nbytes = math.prod(shape) * np.dtype(_DTYPES[code]).itemsize
            if min(shape, default=0) < 0 or begin < 0 or end - begin != nbytes:
                raise self._corrupt(f"tensor {name!r} offsets {begin}..{end} do not fit "
                                    f"shape {list(shape)} of {code}")
            self._entries[name] = (code, shape, begin)
            needed = max(needed, end)
        if needed > data_size:
            raise CheckpointError(
                f"{self.path} is truncated: its header describes {needed} data bytes but only "
                f"{data_size} are present; re-download or re-export it")

    def _corrupt(self, why):
        return CheckpointError(f"{self.path} is not a valid safetensors file ({why}); "
                               "re-download or re-export it")

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(list(self._entries))

    def keys(self):
        return list(self._entries)

    def dtype(self, name) -> str:
        """The safetensors dtype code (``"F32"``, ``"BF16"``, ``"U8"``, ...) of a tensor."""
        return self._entries[name][0]

    def shape(self, name) -> tuple:
        return self._entries[name][1]

    def read(self, name) -> np.ndarray:
        """One tensor as a NumPy array; BF16 is widened exactly to float32."""
        code, shape, begin = self._entries[name]
        dtype = np.dtype(_DTYPES[code])
        count = math.prod(shape)
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            array = np.fromfile(f, dtype=dtype, count=count)
        if array.size != count:
            raise CheckpointError(f"{self.path} is truncated at tensor {name!r}; "
                                  "re-download or re-export it")
        if code == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False).reshape(shape)


def read_safetensors(path) -> dict:
    """All tensors of a safetensors file as ``{name: ndarray}`` (BF16 widened to float32)."""
    file = SafetensorsFile(path)
    return {name: file.read(name) for name in file}


def write_safetensors(path, tensors: dict, metadata: dict | None = None):
    """Write ``{name: ndarray}`` with the safetensors library (not atomic; callers write a
    temporary path and rename it)."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    save_file(arrays, str(path), metadata={str(k): str(v) for k, v in (metadata or {}).items()})


# --------------------------------------------------------------------------- 2-bit packing

def pack_ternary(ternary) -> np.ndarray:
    """Ternary (out, in) -> uint8 (ceil(out/4), in), exactly transformers' ``pack_weights``.

    Row ``r`` of the ternary matrix goes to packed row ``r % R`` at bits ``2 * (r // R)``,
    stored as ``w + 1`` (``R = ceil(out/4)``); unused slots of the last quarter stay 0.
    """
    w = np.asarray(ternary)
    out = w.shape[0]
    rows = -(-out // 4)
    codes = np.zeros((4 * rows,) + w.shape[1:], dtype=np.uint8)
    codes[:out] = (w + 1).astype(np.uint8)
    codes = codes.reshape((4, rows) + w.shape[1:])
    packed = np.zeros((rows,) + w.shape[1:], dtype=np.uint8)
    for k in range(4):
        packed |= codes[k] << np.uint8(2 * k)
    return packed


def unpack_ternary(packed, out_features: int, *, name: str = "weight") -> np.ndarray:
    """uint8 (ceil(out/4), in) -> int8 ternary (out, in); the inverse of ``pack_ternary``.

    Raises
    ------
    CheckpointError
        The row count is not ceil(out/4), or a used slot holds the 2-bit code 3.
    """
    p = np.asarray(packed, dtype=np.uint8)
    rows = -(-out_features // 4)
    if p.ndim != 2 or p.shape[0] != rows:
        raise _packed_rows_error(name, p.shape[0] if p.ndim else 0, out_features)
    codes = np.concatenate([(p >> np.uint8(2 * k)) & np.uint8(3) for k in range(4)])
    codes = codes[:out_features]
    if (codes == 3).any():
        raise CheckpointError(f"packed weight {name} holds the 2-bit code 3, which is not a "
                              "ternary value; the checkpoint is corrupt, re-export it")
    return codes.astype(np.int8) - np.int8(1)


def _packed_rows_error(name, found, out_features):
    rows = -(-out_features // 4)
    return CheckpointError(
        f"packed weight {name} has {found} rows but out_features {out_features} needs "
        f"ceil({out_features}/4) = {rows}; the checkpoint does not match its config.json")


# --------------------------------------------------------------------------- config

def config_from_hf(raw: dict) -> ModelConfig:
    """Map an HF ``config.json`` dict onto ``ModelConfig``.

    Raises
    ------
    ConfigurationError
        Unknown architecture, a required field missing, or a value out of range.
    """
    archs = raw.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    family = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if family is None:
        if not archs and raw.get("model_type") == "bitnet":
            family = "bitnet"
        else:
            found = ", ".join(map(str, archs)) or f"none (model_type {raw.get('model_type')!r})"
            raise ConfigurationError(
                f"config.json architecture {found} is not supported; supported architectures "
                f"are {', '.join(ARCHITECTURES)}")
    missing = [name for name in _REQUIRED if raw.get(name) is None]
    if missing:
        raise ConfigurationError(f"config.json is missing required field {missing[0]}; add it "
                                 "(copy it from the model's original config)")
    defaults = _DEFAULTS[family]
    rope = raw.get("rope_parameters") if isinstance(raw.get("rope_parameters"), dict) else {}
    rope_theta = raw.get("rope_theta", rope.get("rope_theta", defaults["rope_theta"]))
    kwargs = {name: raw[name] for name in _REQUIRED}
    kwargs.update(
        num_key_value_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
        hidden_act=raw.get("hidden_act", defaults["hidden_act"]),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
        rope_theta=float(rope_theta),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        family=family,
        bos_token_id=_first(raw.get("bos_token_id")),
        eos_token_id=_first(raw.get("eos_token_id")),
    )
    try:
        return ModelConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigurationError(f"config.json is invalid: {exc}; fix the value") from None


def _first(value):
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def config_to_hf(config: ModelConfig, *, prequantized: bool = True) -> dict:
    """``ModelConfig`` -> HF ``config.json`` dict (the inverse of ``config_from_hf``)."""
    raw = {
        "architectures": [_FAMILY_ARCH[config.family]],
        "model_type": _FAMILY_MODEL_TYPE[config.family],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "hidden_act": config.hidden_act,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": False,
        "torch_dtype": "float32",
        # written even when None: an absent id makes transformers fall back to 2B-4T's ids
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
    }
    if prequantized:
        raw["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                                      "quantization_mode": "offline"}
    return raw


def hf_tensor_names(config: ModelConfig) -> dict:
    """``{our name: HF tensor name}`` for every tensor of a model of this config.

    Our names: ``embed_tokens``, ``norm``, ``lm_head`` (only when not tied) and
    ``layers.{i}.{field}`` for each ``LayerWeights`` field (linears name their ``.weight``).
    """
    names = {"embed_tokens": "model.embed_tokens.weight", "norm": "model.norm.weight"}
    if not config.tie_word_embeddings:
        names["lm_head"] = "lm_head.weight"
    sub = _SUB_NORMS[config.family]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}"
        names[f"layers.{i}.input_layernorm"] = f"{p}.input_layernorm.weight"
        names[f"layers.{i}.post_attention_layernorm"] = f"{p}.post_attention_layernorm.weight"
        names[f"layers.{i}.attn_sub_norm"] = f"{p}.{sub['attn_sub_norm']}.weight"
        names[f"layers.{i}.ffn_sub_norm"] = f"{p}.{sub['ffn_sub_norm']}.weight"
        for linear in LINEAR_NAMES:
            names[f"layers.{i}.{linear}"] = f"{p}.{_LINEAR_MODULE[linear]}.{linear}.weight"
    return names


def _linear_shapes(config: ModelConfig) -> dict:
    h, f, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads
    return {"q_proj": (h, h), "k_proj": (kv * config.head_dim, h),
            "v_proj": (kv * config.head_dim, h), "o_proj": (h, h), "gate_proj": (f, h),
            "up_proj": (f, h), "down_proj": (h, f)}


def _norm_sizes(config: ModelConfig) -> dict:
    h = config.hidden_size
    return {"input_layernorm": h, "post_attention_layernorm": h, "attn_sub_norm": h,
            "ffn_sub_norm": config.intermediate_size}


# --------------------------------------------------------------------------- loading

class _Tensors:
    """Tensor lookup across one file or a set of shards."""

    def __init__(self, directory: Path):
        single = directory / "model.safetensors"
        index = directory / "model.safetensors.index.json"
        if single.exists():
            files = [single]
        elif index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                shard_names = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise CheckpointError(f"{index} is not a valid safetensors index (no weight_map "
                                      "object); re-download or re-export it") from None
            files = [directory / name for name in shard_names]
        else:
            files = sorted(directory.glob("model-*-of-*.safetensors"))
            if not files:
                pickled = " (only pickle .bin weights found, which ternedge does not load; "\
                    "convert them to safetensors)" if any(directory.glob("*.bin")) else ""
                raise CheckpointError(f"{directory} has no model.safetensors or "
                                      f"model.safetensors.index.json{pickled}; download or "
                                      "export the safetensors weights")
        self._owner = {}
        for path in files:
            file = SafetensorsFile(path)
            for name in file:
                self._owner.setdefault(name, file)

    def __contains__(self, name):
        return name in self._owner

    def dtype(self, name):
        return self._owner[name].dtype(name)

    def shape(self, name):
        return self._owner[name].shape(name)

    def require(self, name, what="tensor"):
        if name not in self._owner:
            raise CheckpointError(f"checkpoint is missing {what} {name}; the weights do not "
                                  "match config.json (wrong model or incomplete download)")

    def get(self, name, shape=None, *, what="tensor") -> np.ndarray:
        self.require(name, what)
        found = self._owner[name].shape(name)
        if shape is not None and tuple(found) != tuple(shape):
            raise CheckpointError(f"tensor {name} has shape {list(found)} but config.json "
                                  f"implies {list(shape)}; the weights do not match the config")
        return self._owner[name].read(name)


def load_checkpoint(path) -> ModelWeights:
    """Load an HF-layout BitNet b1.58 checkpoint directory into ``ModelWeights``.

    Parameters
    ----------
    path : a directory with ``config.json`` and ``model.safetensors`` (or shards with
        ``model.safetensors.index.json``). Float checkpoints are quantized on load;
        pre-quantized (``quant_method == "bitnet"``) ones are unpacked.

    Returns
    -------
    ModelWeights with float32 embeddings, LM head (the embeddings when tied) and norms.

    Raises
    ------
    CheckpointError
        Missing directory or files, corrupt/truncated safetensors, missing or misshapen tensors,
        non-ternary pre-quantized values.
    ConfigurationError
        config.json missing, not JSON, missing a required field, unknown architecture, or an
        unsupported quantization_config.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist; pass the "
                              "directory that holds config.json and model.safetensors")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ConfigurationError(f"{config_path} is missing; a checkpoint directory needs the "
                                 "model's config.json next to its safetensors")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{config_path} is not valid JSON ({exc}); fix or "
                                 "re-download it") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{config_path} is not a JSON object; fix or re-download it")
    config = config_from_hf(raw)
    linear_class = _quantization(raw, config_path)
    tensors = _Tensors(directory)
    names = hf_tensor_names(config)
    h = config.hidden_size

    def vector(key, size):
        return tensors.get(names[key], (size,)).astype(np.float32)

    embed = tensors.get(names["embed_tokens"], (config.vocab_size, h)).astype(np.float32)
    if config.tie_word_embeddings:
        lm_head = embed
    else:
        lm_head = tensors.get(names["lm_head"], (config.vocab_size, h)).astype(np.float32)
    shapes, norms = _linear_shapes(config), _norm_sizes(config)
    layers = []
    for i in range(config.num_hidden_layers):
        fields = {n: vector(f"layers.{i}.{n}", size) for n, size in norms.items()}
        for linear in LINEAR_NAMES:
            fields[linear] = _load_linear(tensors, names[f"layers.{i}.{linear}"],
                                          shapes[linear], linear_class)
        layers.append(LayerWeights(**fields))
    return ModelWeights(config=config, embed_tokens=embed, lm_head=lm_head,
                        norm=vector("norm", h), layers=tuple(layers))


def _quantization(raw: dict, config_path: Path):
    """None for a float checkpoint, else the linear class of a pre-quantized one."""
    qc = raw.get("quantization_config")
    if qc is None:
        return None
    if not isinstance(qc, dict) or qc.get("quant_method") != "bitnet":
        method = qc.get("quant_method") if isinstance(qc, dict) else qc
        raise ConfigurationError(f"{config_path} quantization_config quant_method {method!r} is "
                                 "not supported; only 'bitnet' (or no quantization_config for "
                                 "float weights) loads")
    linear_class = qc.get("linear_class", "bitlinear")
    if linear_class not in _LINEAR_CLASSES:
        raise ConfigurationError(f"{config_path} quantization_config linear_class "
                                 f"{linear_class!r} is not one of {', '.join(_LINEAR_CLASSES)}")
    if qc.get("quantization_mode", "offline") == "online":
        return None                     # online mode stores float weights, quantized per call
    return linear_class


def _load_linear(tensors: _Tensors, name: str, shape: tuple, linear_class) -> TernaryLinear:
    out, inp = shape
    tensors.require(name, "linear weight")
    code = tensors.dtype(name)
    if linear_class is None:
        if code not in _FLOAT_CODES:
            raise CheckpointError(f"tensor {name} has dtype {code} but config.json has no bitnet "
                                  "quantization_config; add one for pre-quantized weights")
        ternary, scale = quant.quantize_weights(tensors.get(name, shape))
        return TernaryLinear(ternary=ternary, scale=scale)
    scale_name = name.removesuffix("weight") + "weight_scale"
    if code == "U8":
        rows = -(-out // 4)
        found = tensors.shape(name)
        if len(found) == 2 and found[1] == inp and found[0] != rows:
            raise _packed_rows_error(name, found[0], out)
        ternary = unpack_ternary(tensors.get(name, (rows, inp)), out, name=name)
    elif code in _FLOAT_CODES:
        values = tensors.get(name, shape)
        if not np.isin(values, (-1.0, 0.0, 1.0)).all():
            raise CheckpointError(f"unpacked weight {name} holds values outside {{-1, 0, 1}} "
                                  "in a pre-quantized checkpoint; re-export it, or drop "
                                  "quantization_config to quantize float weights on load")
        ternary = values.astype(np.int8)
    else:
        raise CheckpointError(f"pre-quantized weight {name} has dtype {code}; expected U8 "
                              "(packed) or float ternary values; re-export the checkpoint")
    stored = tensors.get(scale_name, what="weight scale").astype(np.float64).reshape(-1)
    if stored.size != 1 or not (np.isfinite(stored[0]) and stored[0] > 0):
        raise CheckpointError(f"{scale_name} must be one positive finite value, got "
                              f"{stored.tolist()}; re-export the checkpoint")
    scale = 1.0 / stored[0] if linear_class == "bitlinear" else stored[0]
    return TernaryLinear(ternary=ternary, scale=float(scale))


# --------------------------------------------------------------------------- saving

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path, weights: ModelWeights, *, prequantized: bool = True,
                    overwrite: bool = False):
    """Write ``weights`` as an HF-layout checkpoint directory, atomically.

    Parameters
    ----------
    path : destination directory; it must not exist (or be empty) unless ``overwrite``.
    weights : the model.
    prequantized : True writes transformers' ``bitlinear`` format (packed uint8 weights and
        float32 ``weight_scale = 1 / scale``), which loads back exactly (ternary) and to float32
        precision (scale). False writes float32 ``ternary * scale`` weights; reloading
        re-quantizes them: the ternary values come back exactly, the scale becomes
        ``mean|ternary * scale|`` (absmean of the dequantized weight).
    overwrite : replace an existing checkpoint directory (one that holds config.json).

    The directory is written into a temporary sibling and renamed into place, so a failure
    leaves nothing half-written. Range-scaled weights (``GoldenModel.weights``) are saved as
    the unit-scale model they came from (``golden.scaling.undo``, exact), so a tied embedding
    is the LM head again.
    """
    weights = scaling.undo(weights)
    target = Path(path)
    config = weights.config
    if target.exists():
        if not target.is_dir():
            raise CheckpointError(f"{target} exists and is not a directory; choose another path")
        if any(target.iterdir()) and not (overwrite and (target / "config.json").exists()):
            raise CheckpointError(f"{target} already exists and is not empty; choose a new "
                                  "directory (or pass overwrite=True for a checkpoint)")
    target.parent.mkdir(parents=True, exist_ok=True)
    names = hf_tensor_names(config)
    tensors = {names["embed_tokens"]: np.asarray(weights.embed_tokens, np.float32)}
    if not config.tie_word_embeddings:
        tensors[names["lm_head"]] = np.asarray(weights.lm_head, np.float32)
    tensors[names["norm"]] = np.asarray(weights.norm, np.float32)
    for i, layer in enumerate(weights.layers):
        for field in _norm_sizes(config):
            tensors[names[f"layers.{i}.{field}"]] = np.asarray(getattr(layer, field), np.float32)
        for linear in LINEAR_NAMES:
            lw = getattr(layer, linear)
            name = names[f"layers.{i}.{linear}"]
            if prequantized:
                tensors[name] = pack_ternary(lw.ternary)
                tensors[name.removesuffix("weight") + "weight_scale"] = np.array(
                    [1.0 / lw.scale], dtype=np.float32)
            else:
                tensors[name] = lw.ternary.astype(np.float32) * np.float32(lw.scale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())          # mkdtemp makes it private; a checkpoint is not
    try:
        (tmp / "config.json").write_text(
            json.dumps(config_to_hf(config, prequantized=prequantized), indent=2) + "\n")
        write_safetensors(tmp / "model.safetensors", tensors, {"format": "pt"})
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / "previous")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
