# SPDX-License-Identifier: BSD-3-Clause
"""Weight layout (golden.packing) and image: pack/unpack round trips over odd shapes and
geometries, pinned bit order."""

import numpy as np
import pytest

from ternedge.golden import packing, tlmm
from ternedge.golden.config import AcceleratorConfig, ModelConfig
from ternedge.golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from ternedge.host import weight_image
from ternedge.host.errors import CheckpointError


def _config(group_size, tables, cols):
    return AcceleratorConfig(group_size=group_size, tables_per_step=tables, cols_per_cycle=cols)


def _random_linear(rng, n, k):
    return TernaryLinear(ternary=rng.integers(-1, 2, size=(n, k)).astype(np.int8),
                         scale=float(rng.uniform(0.01, 2.0)))


@pytest.mark.parametrize("group_size", [2, 3, 4])
@pytest.mark.parametrize("geometry", [(28, 16), (4, 4), (5, 3)])
def test_round_trip_odd_shapes(group_size, geometry):
    seed = 100 * group_size + geometry[0]
    rng = np.random.default_rng(seed)
    config = _config(group_size, *geometry)
    for n, k in [(7, 13), (1, 1), (17, 100), (geometry[1] * 2, group_size * geometry[0] + 1)]:
        linear = _random_linear(rng, n, k)
        packed = packing.pack_linear(linear, config)
        assert packed.k_padded % (group_size * geometry[0]) == 0 and packed.k_padded >= k
        assert packed.n_padded % geometry[1] == 0 and packed.n_padded >= n
        assert packed.beats.shape == (packed.num_beats, 32)
        assert packed.num_beats * 256 >= packed.num_entries * packed.entry_bits
        assert (packed.num_beats - 1) * 256 < packed.num_entries * packed.entry_bits
        back = weight_image.unpack_linear(packed)
        np.testing.assert_array_equal(back.ternary, linear.ternary, err_msg=f"seed {seed}")
        assert back.scale == pytest.approx(linear.scale, rel=2.0 ** -16)
        # entry_indices agrees with the direct index computation
        idx = tlmm.encode_weights(linear.ternary, group_size)
        t = geometry[0]
        for ks in range(packed.k_steps):
            for col in (0, n - 1, packed.n_padded - 1):
                want = np.zeros(t, dtype=np.uint8)
                if col < n:
                    chunk = idx[col, ks * t:(ks + 1) * t]
                    want[:chunk.size] = chunk
                np.testing.assert_array_equal(
                    packing.entry_indices(packed, ks, col), want, err_msg=f"seed {seed}")


def test_bit_order_pinned():
    # G=2 (4-bit indices), T=2, C=2: entry = 8 bits = one byte per entry.
    # Table order for G=2: 0 zero; 1 a; 2 b; 3 a+b; 4 a-b; 5..8 negations of 1..4.
    config = _config(2, 2, 2)
    ternary = np.array([[1, 0, 0, 1, 1, 1],            # groups: a=1 ->1, b=1 ->2, a+b ->3
                        [-1, 0, 1, -1, 0, 0]], np.int8)  # -a ->5, a-b ->4, zero ->0
    packed = packing.pack_linear(TernaryLinear(ternary, 1.0), config)
    assert packed.entry_bits == 8 and packed.k_steps == 2 and packed.n_padded == 2
    stream = packed.beats.reshape(-1)
    # ks 0: col 0 -> (1, 2), col 1 -> (5, 4); ks 1: col 0 -> (3, pad 0), col 1 -> (0, 0)
    # table t in bits [4t, 4t+4): byte = idx0 | idx1 << 4
    assert stream[:4].tolist() == [0x21, 0x45, 0x03, 0x00]
    assert not stream[4:].any() and packed.num_beats == 1
    assert packed.scale_m == 1 << 15 and packed.scale_e == 15
    assert packing.entry_indices(packed, 0, 1).tolist() == [5, 4]


def test_bit_order_pinned_tellme_width():
    # G=3, T=28: entries are 140 bits, so entry 1 starts at bit 140 = byte 17, bit 4
    config = _config(3, 28, 16)
    ternary = np.zeros((2, 3), np.int8)
    ternary[1] = [1, 0, 0]                                 # index 1 ("a") in table 0 of col 1
    packed = packing.pack_linear(TernaryLinear(ternary, 0.5), config)
    stream = packed.beats.reshape(-1)
    assert packed.entry_bits == 140
    assert np.flatnonzero(stream).tolist() == [17] and stream[17] == 1 << 4
    assert packed.num_beats == -(-16 * 140 // 256)


def _tiny_weights(rng, config):
    def vec(n):
        return rng.standard_normal(n).astype(np.float32)
    shapes = {"q_proj": (12, 12), "k_proj": (4, 12), "v_proj": (4, 12), "o_proj": (12, 12),
              "gate_proj": (20, 12), "up_proj": (20, 12), "down_proj": (12, 20)}
    layers = tuple(LayerWeights(input_layernorm=vec(12), post_attention_layernorm=vec(12),
                                attn_sub_norm=vec(12), ffn_sub_norm=vec(20),
                                **{n: _random_linear(rng, *shapes[n]) for n in LINEAR_NAMES})
                   for _ in range(config.num_hidden_layers))
    embed = rng.standard_normal((16, 12)).astype(np.float32)
    return ModelWeights(config=config, embed_tokens=embed, lm_head=embed, norm=vec(12),
                        layers=layers)


def test_model_image_save_load(tmp_path):
    rng = np.random.default_rng(7)
    config = ModelConfig(vocab_size=16, hidden_size=12, intermediate_size=20,
                         num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1,
                         max_position_embeddings=32)
    weights = _tiny_weights(rng, config)
    image = weight_image.pack_model(weights, _config(3, 4, 4))
    assert list(image.linears) == [f"layers.{i}.{n}" for i in range(2) for n in LINEAR_NAMES]
    path = tmp_path / "image.safetensors"
    weight_image.save_image(path, image)
    assert [p.name for p in tmp_path.iterdir()] == ["image.safetensors"]
    loaded = weight_image.load_image(path)
    assert (loaded.group_size, loaded.tables_per_step, loaded.cols_per_cycle) == (3, 4, 4)
    assert loaded.model_config == config.to_dict()
    for name, packed in image.linears.items():
        got = loaded.linears[name]
        np.testing.assert_array_equal(got.beats, packed.beats)
        assert (got.scale_m, got.scale_e) == (packed.scale_m, packed.scale_e)
        i, linear = name.split(".")[1], name.split(".")[2]
        original = getattr(weights.layers[int(i)], linear)
        np.testing.assert_array_equal(weight_image.unpack_linear(got).ternary, original.ternary)


def test_load_image_rejects_other_files(tmp_path):
    from ternedge.host.checkpoint import write_safetensors
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"a": np.zeros(3, np.uint8)}, {"format": "pt"})
    with pytest.raises(CheckpointError, match="not a ternedge weight image"):
        weight_image.load_image(path)
    write_safetensors(path, {"a": np.zeros(3, np.uint8)},
                      {"format": weight_image.FORMAT, "layout_version": "99"})
    with pytest.raises(CheckpointError, match="layout version"):
        weight_image.load_image(path)


def test_entry_indices_bounds():
    packed = packing.pack_linear(TernaryLinear(np.zeros((3, 5), np.int8), 1.0),
                                      _config(2, 5, 3))
    with pytest.raises(IndexError, match="k_step"):
        packing.entry_indices(packed, packed.k_steps, 0)
    with pytest.raises(IndexError, match="col"):
        packing.entry_indices(packed, 0, packed.n_padded)
