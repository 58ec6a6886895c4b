# SPDX-License-Identifier: BSD-3-Clause
"""HF-layout checkpoints: float and pre-quantized round trips, bf16, sharding, naming, errors."""

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")   # before any torch import (transformers check)

import json
import struct

import numpy as np
import pytest

from ternedge.golden import quant
from ternedge.golden.config import ModelConfig
from ternedge.golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from ternedge.host import checkpoint
from ternedge.host.errors import CheckpointError, ConfigurationError

TINY = {"vocab_size": 16, "hidden_size": 12, "intermediate_size": 20, "num_hidden_layers": 2,
        "num_attention_heads": 3, "num_key_value_heads": 1, "max_position_embeddings": 32}


def _shapes(config):
    h, f, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads
    kvd = kv * config.head_dim
    return {"q_proj": (h, h), "k_proj": (kvd, h), "v_proj": (kvd, h), "o_proj": (h, h),
            "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f)}


def _weights(seed=0, **overrides):
    rng = np.random.default_rng(seed)
    config = ModelConfig(**{**TINY, **overrides})
    h, f = config.hidden_size, config.intermediate_size

    def vec(n):
        return rng.standard_normal(n).astype(np.float32)

    def linear(shape):
        ternary, scale = quant.quantize_weights(rng.standard_normal(shape) * 0.1)
        return TernaryLinear(ternary, scale)

    shapes = _shapes(config)
    layers = tuple(LayerWeights(input_layernorm=vec(h), post_attention_layernorm=vec(h),
                                attn_sub_norm=vec(h), ffn_sub_norm=vec(f),
                                **{n: linear(shapes[n]) for n in LINEAR_NAMES})
                   for _ in range(config.num_hidden_layers))
    embed = rng.standard_normal((config.vocab_size, h)).astype(np.float32)
    lm_head = embed if config.tie_word_embeddings else \
        rng.standard_normal((config.vocab_size, h)).astype(np.float32)
    return ModelWeights(config=config, embed_tokens=embed, lm_head=lm_head, norm=vec(h),
                        layers=layers)


def _assert_same(a, b, *, exact_scale=True):
    assert a.config == b.config
    np.testing.assert_array_equal(a.embed_tokens, b.embed_tokens)
    np.testing.assert_array_equal(a.lm_head, b.lm_head)
    np.testing.assert_array_equal(a.norm, b.norm)
    for la, lb in zip(a.layers, b.layers, strict=True):
        for name in ("input_layernorm", "post_attention_layernorm", "attn_sub_norm",
                     "ffn_sub_norm"):
            np.testing.assert_array_equal(getattr(la, name), getattr(lb, name))
        for name in LINEAR_NAMES:
            x, y = getattr(la, name), getattr(lb, name)
            np.testing.assert_array_equal(x.ternary, y.ternary)
            if exact_scale:
                assert y.scale == pytest.approx(x.scale, rel=1e-6)


def _write_float_dir(path, weights, *, dtype="F32", shards=1, drop=(), raw_config=None):
    """A float checkpoint written by hand (bf16 through a hand-made header)."""
    config = weights.config
    names = checkpoint.hf_tensor_names(config)
    tensors = {names["embed_tokens"]: weights.embed_tokens, names["norm"]: weights.norm}
    if not config.tie_word_embeddings:
        tensors[names["lm_head"]] = weights.lm_head
    for i, layer in enumerate(weights.layers):
        for field in ("input_layernorm", "post_attention_layernorm", "attn_sub_norm",
                      "ffn_sub_norm"):
            tensors[names[f"layers.{i}.{field}"]] = getattr(layer, field)
        for n in LINEAR_NAMES:
            lw = getattr(layer, n)
            tensors[names[f"layers.{i}.{n}"]] = lw.ternary.astype(np.float32) * lw.scale
    for name in drop:
        tensors.pop(name)
    path.mkdir()
    raw = raw_config or checkpoint.config_to_hf(config, prequantized=False)
    (path / "config.json").write_text(json.dumps(raw))
    items = list(tensors.items())
    if shards == 1:
        _write(path / "model.safetensors", dict(items), dtype)
        return
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = dict(items[s::shards])
        _write(path / fname, part, dtype)
        weight_map.update({k: fname for k in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def _to_bf16_bits(array):
    u = np.asarray(array, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)   # round to nearest even


def _write(path, tensors, dtype):
    if dtype == "F32":
        checkpoint.write_safetensors(path, {k: np.asarray(v, np.float32)
                                            for k, v in tensors.items()})
        return
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        data = _to_bf16_bits(value).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(np.shape(value)),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


# ---------------------------------------------------------------- round trips

def test_prequantized_round_trip(tmp_path):
    weights = _weights(1)
    checkpoint.save_checkpoint(tmp_path / "ck", weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    raw = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert raw["quantization_config"] == {"quant_method": "bitnet", "linear_class": "bitlinear",
                                          "quantization_mode": "offline"}
    assert raw["architectures"] == ["BitNetForCausalLM"] and raw["model_type"] == "bitnet"
    file = checkpoint.SafetensorsFile(tmp_path / "ck" / "model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert file.dtype(q) == "U8" and file.shape(q) == (3, 12)
    assert file.shape("model.layers.0.self_attn.q_proj.weight_scale") == (1,)
    assert "lm_head.weight" not in file
    _assert_same(weights, checkpoint.load_checkpoint(tmp_path / "ck"))


def test_float_round_trip_untied(tmp_path):
    weights = _weights(2, tie_word_embeddings=False)
    checkpoint.save_checkpoint(tmp_path / "ck", weights, prequantized=False)
    assert "quantization_config" not in json.loads((tmp_path / "ck" / "config.json").read_text())
    loaded = checkpoint.load_checkpoint(tmp_path / "ck")
    _assert_same(weights, loaded, exact_scale=False)
    for la, lb in zip(weights.layers, loaded.layers, strict=True):
        for name in LINEAR_NAMES:
            x, y = getattr(la, name), getattr(lb, name)
            expected = float(np.abs(x.ternary.astype(np.float32) * np.float32(x.scale)).mean())
            assert y.scale == pytest.approx(expected, rel=1e-6)


def test_float_checkpoint_quantized_on_load(tmp_path):
    weights = _weights(3)
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((12, 12)) * 0.05).astype(np.float32)
    path = tmp_path / "ck"
    _write_float_dir(path, weights)
    file = path / "model.safetensors"
    tensors = checkpoint.read_safetensors(file)
    tensors["model.layers.1.self_attn.o_proj.weight"] = w
    checkpoint.write_safetensors(file, tensors)
    loaded = checkpoint.load_checkpoint(path)
    ternary, scale = quant.quantize_weights(w)
    np.testing.assert_array_equal(loaded.layers[1].o_proj.ternary, ternary)
    assert loaded.layers[1].o_proj.scale == scale


def test_bf16_float_checkpoint(tmp_path):
    weights = _weights(4)
    _write_float_dir(tmp_path / "ck", weights, dtype="BF16")
    loaded = checkpoint.load_checkpoint(tmp_path / "ck")
    widened = (_to_bf16_bits(weights.embed_tokens).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(loaded.embed_tokens, widened)
    assert loaded.embed_tokens.dtype == np.float32
    for la, lb in zip(weights.layers, loaded.layers, strict=True):
        np.testing.assert_array_equal(la.q_proj.ternary, lb.q_proj.ternary)


def test_bf16_matches_torch_reader(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    path = tmp_path / "t.safetensors"
    safetensors_torch.save_file({"x": torch.from_numpy(x).to(torch.bfloat16)}, str(path))
    got = checkpoint.read_safetensors(path)["x"]
    np.testing.assert_array_equal(got, torch.from_numpy(x).to(torch.bfloat16).float().numpy())


def test_sharded_checkpoint(tmp_path):
    weights = _weights(6, tie_word_embeddings=False)
    _write_float_dir(tmp_path / "ck", weights, shards=3)
    assert not (tmp_path / "ck" / "model.safetensors").exists()
    expected = checkpoint.load_checkpoint(_single(tmp_path, weights))
    _assert_same(expected, checkpoint.load_checkpoint(tmp_path / "ck"))


def _single(tmp_path, weights):
    _write_float_dir(tmp_path / "single", weights)
    return tmp_path / "single"


def test_llama_bitnet_naming(tmp_path):
    weights = _weights(7, family="llama-bitnet", hidden_act="silu", num_key_value_heads=3,
                       tie_word_embeddings=False)
    checkpoint.save_checkpoint(tmp_path / "ck", weights)
    names = checkpoint.SafetensorsFile(tmp_path / "ck" / "model.safetensors").keys()
    assert "model.layers.1.self_attn.inner_attn_ln.weight" in names
    assert "model.layers.1.mlp.ffn_layernorm.weight" in names
    assert not any("sub_norm" in n for n in names)
    _assert_same(weights, checkpoint.load_checkpoint(tmp_path / "ck"))


def test_llama_bitnet_config_defaults():
    raw = {"architectures": ["BitnetForCausalLM"], "model_type": "llama",
           **{k: v for k, v in TINY.items() if k != "num_key_value_heads"}}
    config = checkpoint.config_from_hf(raw)
    assert config.family == "llama-bitnet" and config.hidden_act == "silu"
    assert config.num_key_value_heads == 3 and config.rope_theta == 10000.0
    assert config.tie_word_embeddings is False and config.rms_norm_eps == 1e-5
    bitnet = checkpoint.config_from_hf({**raw, "architectures": ["BitNetForCausalLM"]})
    assert bitnet.family == "bitnet" and bitnet.hidden_act == "relu2"
    assert bitnet.rope_theta == 500000.0


def test_autobitlinear_packed_and_unpacked(tmp_path):
    weights = _weights(8)
    checkpoint.save_checkpoint(tmp_path / "ck", weights)
    cfg = tmp_path / "ck" / "config.json"
    raw = json.loads(cfg.read_text())
    raw["quantization_config"]["linear_class"] = "autobitlinear"
    cfg.write_text(json.dumps(raw))
    file = tmp_path / "ck" / "model.safetensors"
    tensors = checkpoint.read_safetensors(file)
    for name in list(tensors):
        if name.endswith("weight_scale"):           # autobitlinear stores scale, not 1/scale
            tensors[name] = (1.0 / tensors[name].astype(np.float64)).astype(np.float32)
    checkpoint.write_safetensors(file, tensors)
    _assert_same(weights, checkpoint.load_checkpoint(tmp_path / "ck"))
    # unpacked ternary weights, as float
    for name in list(tensors):
        if name.endswith("proj.weight"):
            out = _shape_of(weights, name)[0]
            tensors[name] = checkpoint.unpack_ternary(tensors[name], out).astype(np.float32)
    checkpoint.write_safetensors(file, tensors)
    _assert_same(weights, checkpoint.load_checkpoint(tmp_path / "ck"))


def _shape_of(weights, hf_name):
    layer, linear = int(hf_name.split(".")[2]), hf_name.split(".")[4]
    return getattr(weights.layers[layer], linear).ternary.shape


@pytest.mark.parametrize("out", [1, 4, 5, 6, 7, 9, 12])
def test_pack_matches_transformers(out):
    torch = pytest.importorskip("torch")
    bitnet = pytest.importorskip("transformers.integrations.bitnet")
    rng = np.random.default_rng(out)
    ternary = rng.integers(-1, 2, size=(out, 11)).astype(np.int8)
    theirs = bitnet.pack_weights(torch.from_numpy(ternary.astype(np.float32))).numpy()
    ours = checkpoint.pack_ternary(ternary)
    np.testing.assert_array_equal(ours, theirs, err_msg=f"seed {out}")
    unpacked = bitnet.unpack_weights(torch.from_numpy(ours), dtype=torch.float32).numpy()
    np.testing.assert_array_equal(unpacked[:out].astype(np.int8), ternary)
    np.testing.assert_array_equal(checkpoint.unpack_ternary(ours, out), ternary)


def test_save_is_atomic_and_refuses_existing(tmp_path, monkeypatch):
    weights = _weights(9)
    target = tmp_path / "ck"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "write_safetensors", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(target, weights)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    checkpoint.save_checkpoint(target, weights)
    with pytest.raises(CheckpointError, match="already exists"):
        checkpoint.save_checkpoint(target, weights)
    checkpoint.save_checkpoint(target, weights, prequantized=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert "quantization_config" not in json.loads((target / "config.json").read_text())


# ---------------------------------------------------------------- errors

@pytest.fixture
def saved(tmp_path):
    weights = _weights(10)
    checkpoint.save_checkpoint(tmp_path / "ck", weights)
    return tmp_path / "ck"


def _edit_config(path, **changes):
    raw = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    (path / "config.json").write_text(json.dumps(raw))


def _edit_tensors(path, fn):
    file = path / "model.safetensors"
    tensors = checkpoint.read_safetensors(file)
    fn(tensors)
    checkpoint.write_safetensors(file, tensors)


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_error_directory_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        checkpoint.load_checkpoint(tmp_path / "nope")
    _one_line(e)


def test_error_config_missing(saved):
    (saved / "config.json").unlink()
    with pytest.raises(ConfigurationError, match="config.json is missing") as e:
        checkpoint.load_checkpoint(saved)
    _one_line(e)


def test_error_config_not_json(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON") as e:
        checkpoint.load_checkpoint(saved)
    _one_line(e)


def test_error_config_missing_field(saved):
    _edit_config(saved, intermediate_size=None)
    with pytest.raises(ConfigurationError, match="missing required field intermediate_size"):
        checkpoint.load_checkpoint(saved)


def test_error_unknown_architecture(saved):
    _edit_config(saved, architectures=["LlamaForCausalLM"])
    with pytest.raises(ConfigurationError,
                       match="LlamaForCausalLM is not supported.*BitNetForCausalLM"):
        checkpoint.load_checkpoint(saved)


def test_error_config_value_wrapped(saved):
    _edit_config(saved, hidden_act="gelu")
    with pytest.raises(ConfigurationError, match="hidden_act"):
        checkpoint.load_checkpoint(saved)


def test_error_safetensors_missing(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        checkpoint.load_checkpoint(saved)


def test_error_safetensors_corrupt(saved):
    (saved / "model.safetensors").write_bytes(struct.pack("<Q", 12) + b"{garbage!!!}")
    with pytest.raises(CheckpointError, match="not a valid safetensors") as e:
        checkpoint.load_checkpoint(saved)
    _one_line(e)


def test_error_safetensors_truncated(saved):
    file = saved / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load_checkpoint(saved)
    file.write_bytes(data[:20])                      # cut inside the header itself
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load_checkpoint(saved)


def test_error_tensor_missing(saved):
    name = "model.layers.1.mlp.down_proj.weight_scale"
    _edit_tensors(saved, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=f"missing weight scale {name}"):
        checkpoint.load_checkpoint(saved)
    _edit_tensors(saved, lambda t: t.update({name: np.ones(1, np.float32)}))
    _edit_tensors(saved, lambda t: t.pop("model.norm.weight"))
    with pytest.raises(CheckpointError, match="missing tensor model.norm.weight"):
        checkpoint.load_checkpoint(saved)


def test_error_wrong_shape(saved):
    name = "model.layers.0.input_layernorm.weight"
    _edit_tensors(saved, lambda t: t.__setitem__(name, np.ones(11, np.float32)))
    with pytest.raises(CheckpointError, match=rf"{name} has shape \[11\].*\[12\]"):
        checkpoint.load_checkpoint(saved)


def test_error_packed_rows(saved):
    name = "model.layers.0.mlp.gate_proj.weight"                 # out 20 -> 5 packed rows
    _edit_tensors(saved, lambda t: t.__setitem__(name, np.zeros((6, 12), np.uint8)))
    with pytest.raises(CheckpointError, match=r"6 rows.*ceil\(20/4\) = 5"):
        checkpoint.load_checkpoint(saved)


def test_error_non_ternary_packed(saved):
    name = "model.layers.0.self_attn.k_proj.weight"

    def poison(t):
        t[name] = t[name].copy()
        t[name][0, 0] |= 3                                       # 2-bit code 3 in row 0
    _edit_tensors(saved, poison)
    with pytest.raises(CheckpointError, match="code 3"):
        checkpoint.load_checkpoint(saved)


def test_error_non_ternary_unpacked(saved):
    _edit_config(saved, quantization_config={"quant_method": "bitnet",
                                             "linear_class": "autobitlinear"})
    name = "model.layers.0.self_attn.v_proj.weight"

    def unpacked(t):
        w = checkpoint.unpack_ternary(t[name], 4).astype(np.float32)
        w[1, 2] = 0.5
        t[name] = w
    _edit_tensors(saved, unpacked)
    with pytest.raises(CheckpointError, match="outside"):
        checkpoint.load_checkpoint(saved)


def test_error_float_checkpoint_with_packed_weights(saved):
    _edit_config(saved, quantization_config=None)
    with pytest.raises(CheckpointError, match="no bitnet quantization_config"):
        checkpoint.load_checkpoint(saved)


def test_error_unknown_quant_method(saved):
    _edit_config(saved, quantization_config={"quant_method": "gptq"})
    with pytest.raises(ConfigurationError, match="'gptq' is not supported"):
        checkpoint.load_checkpoint(saved)
