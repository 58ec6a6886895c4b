# SPDX-License-Identifier: BSD-3-Clause
"""The project's R², operation counts and footprint against NeuroBench's own ``Benchmark`` on
the same predictions and model (``host/neural_neurobench.py`` says what each path feeds it).

Equal: R² (to float rounding), effective ACs and MACs, and the torch footprint. Different by
definition, and asserted as such: the fixed-point footprint (NeuroBench counts 4-byte float32
tensors, the project the on-chip int8/24-bit storage) and the output filter's state, which the
project adds to the footprint and NeuroBench does not see.
"""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
pytest.importorskip("torch")
pytest.importorskip("neurobench")

from ternedge.golden import bessel  # noqa: E402
from ternedge.host import neural, neural_neurobench, neural_train  # noqa: E402
from ternedge.host.cli import main  # noqa: E402

BINS = 3000


@pytest.fixture(scope="module")
def session():
    return neural.load_session(None, 0, 96)[0]


def _both(session, topology, backend, filt):
    path = neural.model_path(topology, 96)
    b, model, meta = neural.make_backend(backend, path)
    ours = neural.decode_session(session, b, model, meta, filter=filt, max_bins=BINS)
    b, model, meta = neural.make_backend(backend, path)
    theirs = neural_neurobench.run(session, model, meta, b, filter=filt, max_bins=BINS)
    return ours, theirs, model, b


@pytest.mark.parametrize("backend", ["golden", "torch"])
def test_snn_streaming_equals_neurobench(session, backend):
    ours, nb, model, b = _both(session, "snn_streaming", backend, "block-middle")
    print(backend, {k: v for k, v in nb.items() if k not in ("predictions", "labels")})
    # the same predictions: NeuroBench scored exactly what decode_session produced
    np.testing.assert_array_equal(nb["predictions"], ours.velocity_pred)
    np.testing.assert_array_equal(nb["labels"], ours.velocity_true)
    assert nb["R2"] == pytest.approx(ours.r2, rel=1e-12, abs=1e-12)
    assert nb["R2"] == pytest.approx(
        neural_train.r2_score(nb["labels"], nb["predictions"])[2], abs=1e-12)
    syn = nb["SynapticOperations"]
    assert syn["Effective_ACs"] == pytest.approx(ours.ops_per_decode["acs"], rel=1e-12)
    assert syn["Effective_MACs"] == ours.ops_per_decode["macs"] == 0
    assert syn["Dense"] == 96 * 32 + 32 * 48 + 48 * 2
    assert 0.5 < nb["ActivationSparsity"] < 1
    filter_bytes = bessel.filter_footprint_bytes("block-middle")
    if backend == "golden":
        net = b.network
        # NeuroBench: the integer weights and biases as float32 tensors; ours: on-chip storage
        assert nb["Footprint"] == 4 * sum(layer.weights.size + layer.neurons
                                          for layer in net.layers)
        assert ours.footprint_bytes == net.footprint_bytes + filter_bytes
        zeros = sum(int((layer.weights == 0).sum()) for layer in net.layers)
        assert nb["ConnectionSparsity"] == pytest.approx(      # NeuroBench rounds it
            zeros / sum(layer.weights.size for layer in net.layers), abs=5e-5)
    else:
        assert nb["Footprint"] + filter_bytes == ours.footprint_bytes


@pytest.mark.parametrize("topology", ["ann_2d", "snn_3d"])
def test_windowed_topologies_equal_neurobench(session, topology):
    ours, nb, _, _ = _both(session, topology, "torch", "none")
    assert nb["R2"] == pytest.approx(ours.r2, rel=1e-12, abs=1e-12)
    syn = nb["SynapticOperations"]
    assert syn["Effective_MACs"] == pytest.approx(ours.ops_per_decode["macs"], rel=1e-12)
    assert syn["Effective_ACs"] == pytest.approx(ours.ops_per_decode["acs"], rel=1e-12)
    assert nb["Footprint"] == ours.footprint_bytes
    if topology == "snn_3d":
        assert syn["Effective_ACs"] > 0 and nb["ActivationSparsity"] is None
    else:
        assert syn["Effective_ACs"] == 0 and 0 < nb["ActivationSparsity"] < 1


def test_decode_neural_neurobench_json(capsys):
    assert main(["decode-neural", "--synthetic", "0", "--max-bins", "1000", "--filter",
                 "causal", "--neurobench", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    nb = out["neurobench"]
    assert set(nb) == {"Footprint", "ConnectionSparsity", "R2", "ActivationSparsity",
                       "SynapticOperations"}
    assert nb["R2"] == pytest.approx(out["r2"], abs=1e-12)
    assert nb["SynapticOperations"]["Effective_ACs"] == pytest.approx(
        out["ops_per_decode"]["acs"], rel=1e-12)


def test_rtl_backend_is_refused_before_work(capsys):
    assert main(["decode-neural", "--backend", "rtl", "--neurobench"]) == 1
    assert "--neurobench runs the golden, sim or torch backend" in capsys.readouterr().err
