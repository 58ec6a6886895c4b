# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: E402  (TORCHDYNAMO_DISABLE must be set before transformers is imported)
"""Golden against HF transformers on random-init ``BitNetConfig`` models (issue 13 targets).

Each shape is a random-init ``BitNetForCausalLM`` (vocabulary 256, transformers' own init,
``initializer_range`` 0.02, so activations are small: the regime where a Q16 datapath loses
the most), quantized with our absmean quantizer, written as an HF pre-quantized checkpoint
(2-bit packed weights from transformers' ``pack_weights``, ``weight_scale``,
``quantization_config``) and loaded twice: by ``transformers.BitNetForCausalLM.from_pretrained``
and by ``ternedge.host.checkpoint.load_checkpoint``. Golden's teacher-forced logits over random
tokens are compared with transformers'.

Golden runs each model range-scaled (``golden.scaling``: residual stream x32-64, norm outputs
x16-64, ReLU² gate x4 on these shapes), as ``GoldenModel`` does by default.

Bounds asserted (measured with the golden of this commit on these shapes, 2 x 64 tokens):

* top-1 agreement >= 97 % pooled (the issue's target; measured 98.8 %) and >= 96 % on every
  shape (measured 98.4-100 %). Without range scaling: 97.1 % pooled, 96.1-98.4 %; before the
  RMSNorm and softmax fixes of the previous commit, 85-98 %;
* max |logit error| <= 3 % of the logit range on every shape (the issue's target; measured
  0.4-1.4 %; unscaled 1.1-1.6 %; before the fixes, 3-10 %);
* KL(transformers || golden) <= 2e-5 nats (measured <= 9.3e-6).

What is left is the chaos of INT8 activation quantization, not a single op: any rounding
difference flips INT8 codes that then grow layer by layer (README, "Golden numerics").
"""

import json
import os
import sys

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:  # a torchaudio built for another torch breaks transformers' import; it is not needed here
    import torchaudio  # noqa: F401
except (ImportError, OSError):
    sys.modules["torchaudio"] = None
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
safetensors_torch = pytest.importorskip("safetensors.torch")

from transformers import BitNetConfig, BitNetForCausalLM
from transformers.integrations.bitnet import pack_weights

from ternedge.golden.model import GoldenModel
from ternedge.golden.quant import quantize_weights
from ternedge.golden.weights import LINEAR_NAMES
from ternedge.host import numerics
from ternedge.host.checkpoint import load_checkpoint

CONTEXT = 64

#: hidden, intermediate, layers, heads, kv_heads, act, tied, rope_theta
SHAPES = {
    "h64-mha-1l": (64, 128, 1, 4, 4, "relu2", True, 1e4),
    "h100-mqa5-2l": (100, 200, 2, 5, 1, "relu2", True, 1e4),
    "h160-gqa4-3l": (160, 352, 3, 8, 2, "relu2", False, 1e4),
    "h128-gqa2-2l": (128, 256, 2, 8, 4, "relu2", True, 1e4),
    "h80-gqa4-silu": (80, 224, 2, 4, 1, "silu", True, 1e4),
    "h112-mha7-3l": (112, 304, 3, 7, 7, "relu2", False, 5e5),
}


def _hf_config(shape, quant=None) -> BitNetConfig:
    hidden, inter, layers, heads, kv, act, tied, theta = shape
    extra = {"quantization_config": quant} if quant else {}
    return BitNetConfig(vocab_size=256, hidden_size=hidden, intermediate_size=inter,
                        num_hidden_layers=layers, num_attention_heads=heads,
                        num_key_value_heads=kv, hidden_act=act,
                        max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                        rope_parameters={"rope_type": "default", "rope_theta": theta},
                        tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None,
                        pad_token_id=None, **extra)


def build_model(name, directory):
    """(ModelWeights from load_checkpoint, transformers model) of random-init shape ``name``."""
    shape = SHAPES[name]
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(sorted(SHAPES).index(name))
    state = BitNetForCausalLM(_hf_config(shape)).state_dict()
    tensors = {}
    for key, value in state.items():
        value = value.detach().float()
        if key.endswith("_proj.weight"):
            ternary, scale = quantize_weights(value.numpy())
            tensors[key] = pack_weights(torch.tensor(ternary.astype(np.int64)))
            tensors[key[:-len("weight")] + "weight_scale"] = torch.tensor([1.0 / scale],
                                                                          dtype=torch.float32)
        elif key != "lm_head.weight" or not shape[6]:
            tensors[key] = value
    safetensors_torch.save_file({k: v.contiguous() for k, v in tensors.items()},
                                str(directory / "model.safetensors"), metadata={"format": "pt"})
    hf = _hf_config(shape, {"quant_method": "bitnet", "linear_class": "bitlinear",
                            "quantization_mode": "offline"}).to_dict()
    hf["architectures"] = ["BitNetForCausalLM"]
    hf["dtype"] = "float32"
    (directory / "config.json").write_text(json.dumps(hf, indent=2))
    import transformers.utils.logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = BitNetForCausalLM.from_pretrained(str(directory), dtype=torch.float32,
                                                  device_map="cpu").eval()
    finally:
        hf_logging.set_verbosity(level)
    return load_checkpoint(directory), model


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Per shape: golden's logit metrics against transformers over 2 x 64 random tokens."""
    out = {}
    for name in SHAPES:
        weights, hf = build_model(name, tmp_path_factory.mktemp(name))
        assert {type(m).__name__ for m in hf.modules()} >= {"BitLinear"}
        ids = np.random.default_rng(sorted(SHAPES).index(name)).integers(0, 256, (2, CONTEXT))
        with torch.no_grad():
            ref = hf(input_ids=torch.as_tensor(ids), use_cache=False).logits.double().numpy()
        got = []
        for row in ids:
            model = GoldenModel(weights)
            got.append(model.logits(model.forward(row)))
        out[name] = numerics.logit_metrics(np.concatenate(got), ref.reshape(-1, 256))
        out[name]["weights"] = weights
    return out


@pytest.mark.parametrize("name", list(SHAPES))
def test_golden_matches_transformers(measured, name):
    m = measured[name]
    assert m["max_err_rel"] <= 0.03, f"{name}: max logit error {m['max_err_rel']:.2%} of range"
    assert m["kl"] <= 2e-5, f"{name}: KL {m['kl']:.3g}"
    assert m["top1"] >= 0.96, f"{name}: top-1 {m['top1']:.2%}"
    # the comparison is not vacuous: these logits have a small range, where Q16 used to fail
    assert 0.5 < m["range"] < 5


def test_pooled_top1(measured):
    pooled = np.mean([m["top1"] for m in measured.values()])
    assert pooled >= 0.97, f"pooled top-1 {pooled:.2%}"


def test_golden_runs_range_scaled(measured):
    """The gain above comes from range scaling: these small-valued models get large factors."""
    for name, m in measured.items():
        scales = GoldenModel(m["weights"]).weights.range_scales
        assert scales.residual >= 16 and scales.norm >= 8, (name, scales)


def test_checkpoint_is_prequantized_ternary(measured):
    weights = measured["h100-mqa5-2l"]["weights"]
    for name in LINEAR_NAMES:
        assert set(np.unique(getattr(weights.layers[0], name).ternary)) <= {-1, 0, 1}
