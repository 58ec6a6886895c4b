# SPDX-License-Identifier: BSD-3-Clause
"""Shipped models, training reproducibility, fixed-point loss, and ``ternedge decode-neural``."""

import argparse
import json
import os

import pytest

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
torch = pytest.importorskip("torch")

from ternedge.host import neural, neural_data, neural_train  # noqa: E402
from ternedge.host.errors import CheckpointError, InputError  # noqa: E402


@pytest.fixture(scope="module")
def session():
    return neural.load_session(None, 0, 96)[0]


def _cli(argv):
    parser = argparse.ArgumentParser(prog="ternedge")
    neural.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_fixed_point_tracks_float(session):
    """Post-training int8/24-bit conversion loses at most 0.01 R² on the shipped model."""
    model, meta = neural_train.load_model(neural.model_path("snn_streaming", 96))
    assert meta["topology"] == "snn_streaming" and meta["channels"] == 96
    test = slice(*session.split(0.5).test)
    bins, truth = session.spikes[test][:8000], session.velocity[test][:8000]
    float_pred = neural_train.predict_float(model, bins)
    fixed_pred = neural.gsnn.run(neural_train.to_fixed(model), bins)[0]
    r2_float = neural_train.r2_score(truth, float_pred)[2]
    r2_fixed = neural_train.r2_score(truth, fixed_pred / 65536)[2]
    print(f"R2 float {r2_float:.4f} fixed {r2_fixed:.4f}")
    assert r2_float > 0.5
    assert r2_float - r2_fixed <= 0.01


def test_training_is_seeded():
    s = neural_data.read_mat(neural_data.write_mat(
        "/tmp/ternedge_train_seed.mat", neural_data.synthetic_session(5, 96, duration_s=40)))
    a = neural_train.train("snn_streaming", s, epochs=1, steps_per_epoch=2, log=lambda *_: None)
    b = neural_train.train("snn_streaming", s, epochs=1, steps_per_epoch=2, log=lambda *_: None)
    c = neural_train.train("snn_streaming", s, epochs=1, steps_per_epoch=2, seed=1,
                           log=lambda *_: None)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_model_file_errors(tmp_path):
    good = neural.model_path("snn_streaming", 96)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        neural_train.load_model(bad)
    with pytest.raises(CheckpointError, match="no such model"):
        neural_train.load_model(tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError, match="no shipped model 'lstm'"):
        neural.model_path("lstm", 96)


def test_decode_neural_json(capsys):
    args = _cli(["decode-neural", "--synthetic", "0", "--json", "--max-bins", "3000",
                 "--filter", "block-middle", "--backend", "sim"])
    assert args.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("r2", "r2_x", "r2_y", "ops_per_decode", "footprint_bytes", "cycles_per_bin",
                "filter", "backend"):
        assert key in out
    assert out["filter"] == "block-middle" and out["backend"] == "sim"
    assert 0.3 < out["r2"] < 1 and out["bins"] == 3000
    assert out["ops_per_decode"]["macs"] == 0 and out["ops_per_decode"]["acs"] > 0
    assert out["cycles_per_bin"]["max"] <= out["cycles_per_bin"]["worst_case"]


def test_decode_neural_rtl_backend_matches_golden(capsys):
    """The rtl backend checks every bin and the measured cycles against golden itself."""
    args = _cli(["decode-neural", "--backend", "rtl", "--max-bins", "12", "--json"])
    assert args.run(args) == 0
    rtl = json.loads(capsys.readouterr().out)
    args = _cli(["decode-neural", "--backend", "golden", "--max-bins", "12", "--json"])
    args.run(args)
    gold = json.loads(capsys.readouterr().out)
    assert rtl["r2"] == gold["r2"] and rtl["cycles_per_bin"] == gold["cycles_per_bin"]


def test_decode_neural_plots_and_errors(tmp_path, capsys):
    args = _cli(["decode-neural", "--max-bins", "400", "--filter", "causal", "--plots",
                 str(tmp_path)])
    assert args.run(args) == 0
    text = capsys.readouterr().out
    assert "R²" in text and "cycles/bin" in text
    for name in ("velocity.png", "pareto.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    broken = tmp_path / "indy_broken.mat"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    args = _cli(["decode-neural", "--data", str(broken)])
    with pytest.raises(InputError, match="corrupt or truncated"):
        args.run(args)
    args = _cli(["decode-neural", "--model", "snn_3d", "--backend", "golden"])
    with pytest.raises(InputError, match="no fixed-point"):
        args.run(args)
