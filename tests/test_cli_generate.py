# SPDX-License-Identifier: BSD-3-Clause
"""`ternedge generate` on a random tiny checkpoint: output contract and every bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from float_reference import rand_weights

from ternedge.golden.config import ModelConfig
from ternedge.host.checkpoint import save_checkpoint
from ternedge.host.cli import main

CONFIG = ModelConfig(vocab_size=256, hidden_size=32, intermediate_size=50, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=40)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, rand_weights(CONFIG, seed=11))
    return path


def run_cli(capsys, *args):
    code = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_contract(model_dir, capsys):
    code, out, err = run_cli(capsys, "--prompt", "In the beginning", "--model", model_dir,
                             "--max-new-tokens", 6, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"text", "tokens", "prompt_tokens", "ttft_s", "tokens_per_s",
                           "backend", "model", "speculative", "draft_tokens", "verify_passes",
                           "accepted_per_pass", "drafted_per_pass"}
    assert result["prompt_tokens"] == len("In the beginning")
    assert len(result["tokens"]) == 6 and result["backend"] == "golden"
    assert result["ttft_s"] > 0 and result["tokens_per_s"] > 0


def test_seeded_sampling_is_reproducible(model_dir, capsys):
    args = ("--prompt", "abc", "--model", model_dir, "--max-new-tokens", 8, "--temperature",
            50.0, "--top-k", 20, "--seed", 3, "--json")
    first = json.loads(run_cli(capsys, *args)[1])["tokens"]
    second = json.loads(run_cli(capsys, *args)[1])["tokens"]
    other = json.loads(run_cli(capsys, *args[:-2], 4, "--json")[1])["tokens"]
    assert first == second and first != other


def test_streams_text_then_summary(model_dir, capsys):
    code, out, _ = run_cli(capsys, "--prompt", "xyz", "--model", model_dir, "--max-new-tokens", 4)
    assert code == 0
    assert out.startswith("xyz")
    assert "prompt 3 tokens" in out and "TTFT" in out and "tokens/s" in out


@pytest.mark.parametrize("args, phrase", [
    (("--prompt", ""), "prompt is empty"),
    (("--prompt", "x" * 41), "prompt is 41 tokens but the context is 40"),
    (("--prompt", "x" * 30, "--max-new-tokens", 20), "lower --max-new-tokens to at most 10"),
    (("--prompt", "x", "--max-new-tokens", 0), "--max-new-tokens must be a positive"),
    (("--prompt", "x", "--temperature", -1), "temperature must be"),
    (("--prompt", "x", "--top-k", -2), "top-k must be"),
])
def test_bad_requests_are_one_line_errors(model_dir, capsys, args, phrase):
    code, out, err = run_cli(capsys, "--model", model_dir, *args)
    assert code == 1 and out == ""
    assert phrase in err and err.count("\n") == 1 and err.startswith("ternedge: error:")


@pytest.mark.parametrize("args, phrase", [
    (("--prompt", "x" * 129), "RTL backend's KV cache holds 128; shorten the prompt"),
    (("--prompt", "x" * 30, "--max-new-tokens", 100), "lower --max-new-tokens to at most 98"),
])
def test_rtl_backend_limits_are_checked_before_the_build(capsys, args, phrase):
    """The shipped model (context 512) on the simulated top (128-entry KV cache): refused at
    once, not after a Verilator build."""
    code, out, err = run_cli(capsys, "--backend", "rtl", *args)
    assert code == 1 and out == ""
    assert phrase in err and err.count("\n") == 1


def test_bad_checkpoints_are_one_line_errors(model_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, _, err = run_cli(capsys, "--prompt", "x", "--model", missing)
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((model_dir / "config.json").read_text())
    data = (model_dir / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "--prompt", "x", "--model", truncated)
    assert code == 1 and err.count("\n") == 1 and "truncated" in err.lower()

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (unknown / "config.json").write_text(json.dumps(config))
    (unknown / "model.safetensors").write_bytes(data)
    code, _, err = run_cli(capsys, "--prompt", "x", "--model", unknown)
    assert code == 1 and "GPT2LMHeadModel" in err


def test_unknown_backend_is_a_usage_error(model_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "x", "--model", str(model_dir), "--backend", "fpga"])
    assert exit_info.value.code == 2


def test_no_traceback_from_the_installed_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ternedge.host.cli", "generate", "--prompt", "x",
                           "--model", str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_torch_backend_matches_golden_greedy(model_dir, capsys):
    pytest.importorskip("torch")
    args = ("--prompt", "In the beginning", "--model", model_dir, "--max-new-tokens", 5, "--json")
    golden = json.loads(run_cli(capsys, *args)[1])
    torch_out = json.loads(run_cli(capsys, *args, "--backend", "torch")[1])
    assert torch_out["backend"] == "torch"
    # random weights: the float path may diverge after a near-tie, the first token must agree
    assert torch_out["tokens"][0] == golden["tokens"][0]
    assert np.isfinite(torch_out["tokens_per_s"])
