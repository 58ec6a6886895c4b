# SPDX-License-Identifier: BSD-3-Clause
"""``ternedge train-neural``: train on a session, decode it, the session fingerprint and the
warning for a foreign session, other seeds, 192 channels, files, and bad --out paths."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
pytest.importorskip("torch")

from ternedge.host import neural, neural_data, neural_train  # noqa: E402
from ternedge.host.cli import main  # noqa: E402

#: a seed none of the shipped models saw (they are trained on seed 0)
NEW_SEED = 12

# one worker trains the module's model once (make test runs 2 xdist workers, loadgroup)
pytestmark = pytest.mark.xdist_group("neural_train")


def _json(capsys, argv):
    assert main(argv) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """snn_streaming trained by the CLI on a new synthetic seed, few epochs (CI time)."""
    out = tmp_path_factory.mktemp("train") / "seed12.safetensors"
    assert main(["train-neural", "--synthetic", str(NEW_SEED), "--epochs", "5",
                 "--out", str(out), "--json"]) == 0
    return out


def test_train_then_decode_new_seed(trained, capsys):
    """Done-when of issue 16: R² >= 0.6 with the block-middle filter, above no filter."""
    r2 = {}
    for filt in ("none", "block-middle"):
        out, err = _json(capsys, ["decode-neural", "--synthetic", str(NEW_SEED), "--model",
                                  str(trained), "--filter", filt, "--json"])
        assert "warning" not in err, err
        r2[filt] = out["r2"]
    print(f"seed {NEW_SEED}: R² none {r2['none']:.4f}, block-middle {r2['block-middle']:.4f}")
    assert r2["block-middle"] >= 0.6
    assert r2["block-middle"] > r2["none"]


def test_model_names_its_session(trained):
    model, meta = neural_train.load_model(trained)
    session, name = neural.load_session(None, NEW_SEED, 96)
    assert meta["session"]["fingerprint"] == neural.session_fingerprint(session)
    assert meta["session"]["source"] == name == f"synthetic seed {NEW_SEED}, 96 channels"
    assert meta["train_ratio"] == 0.5 and meta["recipe"] == "streaming"
    assert meta["beta_max"] == 0.95 and model.lif1.beta_max == 0.95
    # the fixed-point form clamps the decay as training did
    assert all(layer.beta <= round(0.95 * 4096) for layer in neural_train.to_fixed(model).layers)
    assert neural.trained_on(meta, session, name) is True


def test_decoding_another_session_warns_once(trained, capsys):
    out, err = _json(capsys, ["decode-neural", "--synthetic", "13", "--model", str(trained),
                              "--max-bins", "500", "--json"])
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ternedge: warning: the model was trained on synthetic seed 12")
    assert "train-neural --synthetic 13" in lines[0]
    assert out["bins"] == 500
    # the shipped model (seed 0) warns for seed 13 too, and not for its own session
    _, err = _json(capsys, ["decode-neural", "--synthetic", "13", "--max-bins", "500", "--json"])
    assert "trained on synthetic seed 0, 96 channels" in err
    _, err = _json(capsys, ["decode-neural", "--synthetic", "0", "--max-bins", "500", "--json"])
    assert err == ""


def test_192_channels_and_a_recording_file(tmp_path, capsys):
    """Another seed at 192 channels through a .mat file: the fingerprint is the data's."""
    path = neural_data.write_mat(tmp_path / "loco_like.mat",
                                 neural_data.synthetic_session(31, 192, duration_s=120))
    out_file = tmp_path / "m192.safetensors"
    result, _ = _json(capsys, ["train-neural", "--data", str(path), "--epochs", "1",
                               "--out", str(out_file), "--json"])
    assert result["channels"] == 192 and out_file.is_file()
    assert result["test_r2"] is not None and np.isfinite(result["test_r2"])
    session = neural_data.read_mat(path)
    assert result["session"]["fingerprint"] == neural.session_fingerprint(session)
    model, meta = neural_train.load_model(out_file)
    assert meta["channels"] == 192 and model.fc1.in_features == 192
    decoded, err = _json(capsys, ["decode-neural", "--data", str(path), "--model",
                                  str(out_file), "--json"])
    assert err == "" and decoded["bins"] > 100
    # --channels that contradicts the file is an error, and nothing is written
    bad = tmp_path / "bad.safetensors"
    assert main(["train-neural", "--data", str(path), "--channels", "96", "--epochs", "1",
                 "--out", str(bad)]) == 1
    assert "has 192 channels" in capsys.readouterr().err and not bad.exists()


def test_windowed_topology_trains_and_decodes_on_torch(tmp_path, capsys):
    out_file = tmp_path / "ann.safetensors"
    result, _ = _json(capsys, ["train-neural", "--synthetic", str(NEW_SEED), "--topology",
                               "ann_2d", "--epochs", "1", "--out", str(out_file), "--json"])
    assert result["arithmetic"] == "float" and result["test_r2"] > 0.3
    decoded, err = _json(capsys, ["decode-neural", "--synthetic", str(NEW_SEED), "--model",
                                  str(out_file), "--backend", "torch", "--max-bins", "2000",
                                  "--json"])
    assert err == "" and decoded["model"] == "ann_2d"


@pytest.mark.parametrize("out, message", [
    ("model.pt", "must end in .safetensors"),
    ("adir.safetensors", "is a directory"),
    ("afile/model.safetensors", "not a directory"),
])
def test_bad_out_paths(tmp_path, capsys, out, message):
    (tmp_path / "adir.safetensors").mkdir()
    (tmp_path / "afile").write_text("x")
    assert main(["train-neural", "--synthetic", "1", "--out", str(tmp_path / out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.safetensors", "afile"]
