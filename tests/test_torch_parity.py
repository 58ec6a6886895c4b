# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: E402  (TORCHDYNAMO_DISABLE must be set before transformers is imported)
"""Parity of the torch reference (``ternedge.host.torch_ref``) with HF transformers.

The outside reference is ``transformers.BitNetForCausalLM`` **with its BitNet quantization
applied**: a random float model is quantized with our ``quantize_weights`` (absmean ternary),
written as an HF pre-quantized checkpoint (2-bit packed uint8 weights from transformers'
``pack_weights``, ``*.weight_scale``, ``quantization_config`` with ``quantization_mode:
offline``) and loaded with ``from_pretrained``, for both ``linear_class="bitlinear"``
(``y = (x_q W_t^T) / (s_x * weight_scale)``, so ``weight_scale = 1 / absmean``) and
``linear_class="autobitlinear"`` (``y = linear(x_fq, W_t) * weight_scale``, so
``weight_scale = absmean``). ``BitNetTorch.from_weights`` gets the same ternary weights.

Tolerance: max |logit difference| <= 1e-4 in float32 on every position (logits here are of
order 1-10; the two paths differ only in float rounding order). Configs cover GQA ratios
1, 2, 4 and 5 (MQA), an odd head count (5), hidden sizes that are not multiples of 3, tied
and untied embeddings, ReLU² and SiLU.

``TORCHDYNAMO_DISABLE=1`` is set before transformers is imported: its BitNet integration wraps
functions in ``torch.compile``, which costs 15-30 s per function on a CPU.
"""

import json
import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
safetensors_torch = pytest.importorskip("safetensors.torch")

from transformers import BitNetConfig, BitNetForCausalLM
from transformers.integrations.bitnet import pack_weights

from ternedge.golden.config import ModelConfig
from ternedge.golden.quant import quantize_weights
from ternedge.golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from ternedge.host.torch_ref import BitNetTorch, to_model_weights

TOL = 1e-4

#: (vocab, hidden, intermediate, layers, heads, kv_heads, act, tied, rope_theta)
CONFIGS = {
    "mha-relu2-untied": (97, 64, 128, 2, 4, 4, "relu2", False, 10000.0),      # GQA ratio 1
    "gqa2-relu2-tied": (256, 64, 176, 3, 4, 2, "relu2", True, 10000.0),       # ratio 2
    "gqa4-relu2-theta5e5": (130, 128, 256, 2, 8, 2, "relu2", False, 500000.0),  # ratio 4
    "heads5-mqa-relu2": (61, 40, 88, 2, 5, 1, "relu2", True, 10000.0),        # odd heads, ratio 5
    "heads5-mha-silu": (50, 80, 112, 2, 5, 5, "silu", False, 10000.0),        # odd heads, SiLU
}


def _model_config(spec) -> ModelConfig:
    vocab, hidden, inter, layers, heads, kv, act, tied, theta = spec
    return ModelConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, max_position_embeddings=64, hidden_act=act,
                       rope_theta=theta, tie_word_embeddings=tied)


def _hf_config(cfg: ModelConfig, quant: dict | None = None) -> BitNetConfig:
    extra = {"quantization_config": quant} if quant else {}
    return BitNetConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                        intermediate_size=cfg.intermediate_size,
                        num_hidden_layers=cfg.num_hidden_layers,
                        num_attention_heads=cfg.num_attention_heads,
                        num_key_value_heads=cfg.num_key_value_heads,
                        hidden_act=cfg.hidden_act, max_position_embeddings=64,
                        rms_norm_eps=cfg.rms_norm_eps,
                        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                        tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=None,
                        eos_token_id=None, pad_token_id=None, **extra)


def _random_float_state(cfg: ModelConfig, seed: int) -> dict:
    """A random float BitNetForCausalLM state dict; norm weights perturbed away from 1."""
    torch.manual_seed(seed)
    model = BitNetForCausalLM(_hf_config(cfg)).eval()
    sd = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    for k, v in sd.items():
        if "norm" in k:
            sd[k] = 1.0 + 0.2 * torch.randn(v.shape, generator=g)
        elif "embed_tokens" in k or "lm_head" in k:
            sd[k] = torch.randn(v.shape, generator=g)
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    return sd


def _linear_key(i: int, name: str) -> str:
    block = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return f"model.layers.{i}.{block}.{name}.weight"


def _quantize(cfg: ModelConfig, sd: dict) -> ModelWeights:
    """Our ModelWeights from a float HF state dict (linears through quantize_weights)."""
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        lin = {n: TernaryLinear(*quantize_weights(sd[_linear_key(i, n)].numpy()))
               for n in LINEAR_NAMES}
        layers.append(LayerWeights(
            input_layernorm=sd[p + "input_layernorm.weight"].numpy(),
            post_attention_layernorm=sd[p + "post_attention_layernorm.weight"].numpy(),
            attn_sub_norm=sd[p + "self_attn.attn_sub_norm.weight"].numpy(),
            ffn_sub_norm=sd[p + "mlp.ffn_sub_norm.weight"].numpy(), **lin))
    return ModelWeights(config=cfg, embed_tokens=sd["model.embed_tokens.weight"].numpy(),
                        lm_head=sd["lm_head.weight"].numpy(), norm=sd["model.norm.weight"].numpy(),
                        layers=tuple(layers))


def _write_prequantized(path, cfg: ModelConfig, weights: ModelWeights, linear_class: str):
    """An HF pre-quantized BitNet checkpoint, as transformers expects it."""
    tensors = {"model.embed_tokens.weight": torch.tensor(weights.embed_tokens),
               "model.norm.weight": torch.tensor(weights.norm)}
    if not cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = torch.tensor(weights.lm_head)
    for i, lw in enumerate(weights.layers):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = torch.tensor(lw.input_layernorm)
        tensors[p + "post_attention_layernorm.weight"] = torch.tensor(lw.post_attention_layernorm)
        tensors[p + "self_attn.attn_sub_norm.weight"] = torch.tensor(lw.attn_sub_norm)
        tensors[p + "mlp.ffn_sub_norm.weight"] = torch.tensor(lw.ffn_sub_norm)
        for name in LINEAR_NAMES:
            tl = getattr(lw, name)
            key = _linear_key(i, name)
            tensors[key] = pack_weights(torch.tensor(tl.ternary.astype(np.int64)))
            ws = 1.0 / tl.scale if linear_class == "bitlinear" else tl.scale
            tensors[key[:-len("weight")] + "weight_scale"] = torch.tensor([ws],
                                                                          dtype=torch.float32)
    safetensors_torch.save_file({k: v.contiguous() for k, v in tensors.items()},
                                str(path / "model.safetensors"), metadata={"format": "pt"})
    quant = {"quant_method": "bitnet", "linear_class": linear_class,
             "quantization_mode": "offline"}
    hf = _hf_config(cfg, quant).to_dict()
    hf["architectures"] = ["BitNetForCausalLM"]
    hf["dtype"] = "float32"
    (path / "config.json").write_text(json.dumps(hf, indent=2))


def _load_hf(path):
    import transformers.utils.logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "no GPU ... weight unpacking will be slow"
    try:
        model = BitNetForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                  device_map="cpu")
    finally:
        hf_logging.set_verbosity(level)
    return model.eval()


@pytest.mark.parametrize("linear_class", ["bitlinear", "autobitlinear"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(tmp_path, name, linear_class):
    """Logits of BitNetTorch.from_weights equal transformers' quantized BitNet (<= 1e-4)."""
    cfg = _model_config(CONFIGS[name])
    seed = sorted(CONFIGS).index(name)
    weights = _quantize(cfg, _random_float_state(cfg, seed))
    _write_prequantized(tmp_path, cfg, weights, linear_class)
    hf = _load_hf(tmp_path)
    # the quantizer really swapped in the BitNet linear class
    kinds = {type(m).__name__ for m in hf.modules()}
    assert ("BitLinear" if linear_class == "bitlinear" else "AutoBitLinear") in kinds
    ours = BitNetTorch.from_weights(weights, device="cpu")

    g = torch.Generator().manual_seed(100 + seed)
    ids = torch.randint(0, cfg.vocab_size, (2, 23), generator=g)
    with torch.no_grad():
        ref = hf(input_ids=ids, use_cache=False).logits.float()
        got = ours(ids)
    assert got.shape == ref.shape == (2, 23, cfg.vocab_size)
    assert got.dtype == torch.float32
    diff = (got - ref).abs().max().item()
    assert diff <= TOL, f"{name}/{linear_class}: max |logit diff| {diff:.3g} > {TOL}"
    # the comparison is not vacuous: logits vary and quantization matters
    assert ref.std().item() > 0.1


@pytest.mark.parametrize("name", ["gqa2-relu2-tied", "heads5-mqa-relu2", "heads5-mha-silu"])
def test_kv_cached_decode_matches_full_forward(name):
    """prefill + decode (KV cache) reproduces the full-sequence forward to <= 1e-4."""
    cfg = _model_config(CONFIGS[name])
    weights = _quantize(cfg, _random_float_state(cfg, 7))
    model = BitNetTorch.from_weights(weights, device="cpu")
    ids = torch.randint(0, cfg.vocab_size, (30,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids[None])[0]
    model.reset()
    pre = model.prefill(ids[:11])
    steps = [model.decode(int(t)) for t in ids[11:20]]
    tail = model.prefill(ids[20:])  # a second chunk continues after the cached positions
    got = torch.cat([pre, torch.stack(steps), tail])
    assert got.shape == full.shape
    assert (got - full).abs().max().item() <= TOL
    model.reset()
    again = model.prefill(ids[:5])
    assert (again - full[:5]).abs().max().item() <= TOL


def test_qat_mode_matches_fixed_ternary_and_round_trips():
    """A float (QAT) model equals its quantized twin; to_model_weights round-trips."""
    cfg = _model_config(CONFIGS["gqa2-relu2-tied"])
    torch.manual_seed(0)
    qat = BitNetTorch(cfg, device="cpu").eval()
    weights = to_model_weights(qat)
    for lw in weights.layers:
        for name in LINEAR_NAMES:
            t = getattr(lw, name).ternary
            assert t.dtype == np.int8 and set(np.unique(t)) <= {-1, 0, 1}
    fixed = BitNetTorch.from_weights(weights, device="cpu")
    ids = torch.randint(0, cfg.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (qat(ids) - fixed(ids)).abs().max().item() <= TOL
    again = to_model_weights(fixed)
    for a, b in zip(weights.layers, again.layers, strict=True):
        for name in LINEAR_NAMES:
            np.testing.assert_array_equal(getattr(a, name).ternary, getattr(b, name).ternary)
            assert getattr(a, name).scale == pytest.approx(getattr(b, name).scale, rel=1e-7)


def test_qat_gradients_flow_through_ste():
    """Every float parameter gets a gradient through the straight-through estimators."""
    cfg = _model_config(CONFIGS["heads5-mqa-relu2"])
    torch.manual_seed(0)
    model = BitNetTorch(cfg, device="cpu").train()
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).reshape(-1, cfg.vocab_size),
                                             ids[:, 1:].reshape(-1))
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    """The CUDA reference path matches the CPU one (<= 1e-3: TF32/cuBLAS reductions)."""
    cfg = _model_config(CONFIGS["gqa4-relu2-theta5e5"])
    weights = _quantize(cfg, _random_float_state(cfg, 5))
    cpu = BitNetTorch.from_weights(weights, device="cpu")
    gpu = BitNetTorch.from_weights(weights, device="cuda")
    ids = torch.randint(0, cfg.vocab_size, (2, 31), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = cpu(ids)
        b = gpu(ids.cuda()).cpu()
    assert (a - b).abs().max().item() <= 1e-3
    gpu.reset()
    step = gpu.prefill(ids[0, :30].cuda())
    nxt = gpu.decode(int(ids[0, 30])).cpu()
    assert (nxt - a[0, 30]).abs().max().item() <= 1e-3
    assert step.device.type == "cuda"
