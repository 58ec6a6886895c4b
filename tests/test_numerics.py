# SPDX-License-Identifier: BSD-3-Clause
"""``host.numerics``: its traces equal the models they tap, bit for bit; the report and the
``ternedge numerics`` command, including the errors a user can make."""

import json
import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from float_reference import rand_weights  # noqa: E402

from ternedge.golden import formats  # noqa: E402
from ternedge.golden.config import ModelConfig  # noqa: E402
from ternedge.golden.model import GoldenModel  # noqa: E402
from ternedge.host import cli, numerics  # noqa: E402
from ternedge.host.checkpoint import save_checkpoint  # noqa: E402

torch = pytest.importorskip("torch")

CONFIGS = {
    "gqa2-relu2": ModelConfig(vocab_size=256, hidden_size=40, intermediate_size=88,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=32),
    "mqa5-silu": ModelConfig(vocab_size=50, hidden_size=80, intermediate_size=112,
                             num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=1,
                             max_position_embeddings=32, hidden_act="silu",
                             tie_word_embeddings=False),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden_trace_equals_golden_model(name):
    cfg = CONFIGS[name]
    weights = rand_weights(cfg, seed=3)
    ids = np.random.default_rng(4).integers(0, cfg.vocab_size, 19)
    trace = numerics.golden_trace(weights, ids)
    model = GoldenModel(weights)
    hidden = model.forward(ids)
    np.testing.assert_array_equal(trace.hidden, hidden)
    np.testing.assert_array_equal(trace.logits, model.logits(hidden))
    layers = range(cfg.num_hidden_layers)
    assert set(trace.taps) == ({(i, op) for i in layers for op in numerics.OPS}
                               | {("final", "final_norm")})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_float_trace_equals_torch_reference(name):
    from ternedge.host.torch_ref import BitNetTorch

    cfg = CONFIGS[name]
    weights = rand_weights(cfg, seed=5)
    ids = np.random.default_rng(6).integers(0, cfg.vocab_size, 17)
    model = BitNetTorch.from_weights(weights, device="cpu")
    trace = numerics.float_trace(weights, ids, model=model)
    with torch.no_grad():
        ref = model(torch.as_tensor(ids[None]))[0].double().numpy()
    np.testing.assert_array_equal(trace.logits, ref)
    # the explicit softmax beside SDPA is the same attention
    probs = trace.taps[(0, "probs")]
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_report_small_errors_and_local_columns():
    cfg = CONFIGS["gqa2-relu2"]
    weights = rand_weights(cfg, seed=1)
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, 24)
    report = numerics.numerics_report(weights, ids, with_formats=False)
    assert report["logits"]["top1"] >= 0.95
    assert report["logits"]["max_err_rel"] <= 0.03
    assert len(report["ops"]) == cfg.num_hidden_layers * len(numerics.OPS) + 1
    for row in report["ops"]:
        # every op's own rounding (golden against float64 on golden's inputs) is small; the
        # INT8 quantizers agree on their inputs but for exact ties (golden rounds them away
        # from zero, NumPy to even)
        assert row["local_mean_rel"] <= 2e-3, row
        if row["op"].endswith("_act"):
            assert row["local_mean_rel"] <= 1e-4, row
    table = numerics.format_table(report)
    assert "top-1 agreement" in table and "ffn_sub_norm" in table
    scales = GoldenModel(weights).weights.range_scales
    assert report["range_scales"] == {"residual": scales.residual, "norm": scales.norm,
                                      "gate": scales.gate}
    assert f"residual x{scales.residual}," in table


def test_formats_in_report():
    cfg = CONFIGS["gqa2-relu2"]
    weights = rand_weights(cfg, seed=1)
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, 24)
    report = numerics.numerics_report(weights, ids)
    names = {(r["kind"], r["format"]) for r in report["formats"]}
    assert ("kv", formats.DEFAULT_KV.name) in names
    assert ("lm_head", formats.DEFAULT_LM_HEAD.name) in names
    by_name = {r["format"]: r for r in report["formats"]}
    assert by_name["fp16"]["top1"] >= 0.95
    assert by_name[formats.DEFAULT_LM_HEAD.name]["max_err_rel"] <= 0.03


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("numerics") / "model"
    save_checkpoint(path, rand_weights(CONFIGS["gqa2-relu2"], seed=9))
    return path


def test_cli_json_and_plot(checkpoint, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert cli.main(["numerics", "--model", str(checkpoint), "--random-tokens", "12",
                     "--json", "--plots", str(plots), "--no-formats"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["logits"]) >= {"top1", "kl", "max_err_rel"}
    assert report["ops"] and report["tokens"] == 12
    assert (plots / "numerics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in plots.iterdir()] == ["numerics.png"]


def test_cli_table(checkpoint, capsys):
    assert cli.main(["numerics", "--model", str(checkpoint), "--prompt", "abc",
                     "--no-formats"]) == 0
    out = capsys.readouterr().out
    assert "logits over 3 tokens" in out and "input_norm" in out


@pytest.mark.parametrize("args,message", [
    (["--random-tokens", "0"], "--random-tokens must be between 1"),
    (["--random-tokens", "33"], "--random-tokens must be between 1"),
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "x" * 40], "more than the model's context of 32"),
])
def test_cli_bad_input(checkpoint, capsys, args, message):
    assert cli.main(["numerics", "--model", str(checkpoint), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ternedge: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_prompt_outside_vocabulary(tmp_path, capsys):
    path = tmp_path / "model"
    save_checkpoint(path, rand_weights(CONFIGS["mqa5-silu"], seed=2))
    assert cli.main(["numerics", "--model", str(path), "--prompt", "zz"]) == 1
    assert "outside the model's vocabulary of 50" in capsys.readouterr().err


def test_cli_plots_is_a_file(checkpoint, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep")
    assert cli.main(["numerics", "--model", str(checkpoint), "--plots", str(target)]) == 1
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "keep"


def test_cli_missing_model(tmp_path, capsys):
    assert cli.main(["numerics", "--model", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.startswith("ternedge: error: ")
