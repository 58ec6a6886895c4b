# SPDX-License-Identifier: BSD-3-Clause
"""The decoders through NeuroBench's own harness (``neurobench.benchmarks.Benchmark``).

``run(session, model, meta, backend=..., filter=...)`` feeds the test part of a session to
NeuroBench as its primate-reaching benchmark does (samples ``[N, 1, C]``, one 4 ms bin each,
labels ``[N, 2]``, the whole test part as one batch, in order) and returns NeuroBench's
``Footprint``, ``ConnectionSparsity``, ``R2``, ``ActivationSparsity`` and
``SynapticOperations``.

What NeuroBench sees
--------------------
The predictions are the project's: the model's ``__call__`` runs the same ``NeuralStream``
(backend + output filter) that ``decode_session`` runs. NeuroBench counts operations with
hooks on ``nn.Linear`` layers and activation sparsity with hooks on activation modules, so
each path also runs a torch twin whose layers see the very inputs the decoder had:

* ``golden`` (``snn_streaming``): the twin holds the fixed-point network's integer weights
  (as float32 values, so zero weights are the same zeros) and is fed the golden decoder's own
  spike trains, layer by layer. Its ACs equal ``golden.snn.synaptic_ops`` exactly.
* ``torch``: the trained float model; ``snn_streaming`` layer by layer (the layers are
  feed-forward, so this is the same arithmetic as the per-bin loop), ``snn_3d`` / ``ann_2d``
  on their 200 ms count windows (MACs on counts, ACs on spikes).

The one count that differs by definition is ``Footprint``: NeuroBench counts the bytes of the
torch tensors (4 per float32 parameter), the project counts the fixed-point storage on chip
(int8 weights, 3-byte biases and membranes, spike bits; ``golden.snn.Network.footprint_bytes``)
plus the filter's state. The output filter's multiplies are not synaptic operations, so
neither NeuroBench's nor the project's AC/MAC counts include them (the project reports them
apart, as ``filter_macs``).
"""

import copy
import os

import numpy as np

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

__all__ = ["METRICS", "run"]

#: NeuroBench metric class names, static then workload
METRICS = (("Footprint", "ConnectionSparsity"),
           ("R2", "ActivationSparsity", "SynapticOperations"))


def _imports():
    try:
        import torch
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import R2, ActivationSparsity, SynapticOperations
        from neurobench.models.neurobench_model import NeuroBenchModel
    except ImportError as exc:
        from .errors import InputError

        raise InputError(f"--neurobench needs the neurobench package ({exc.name} is missing): "
                         f"pip install -e '.[neurobench]'") from None
    metrics = [[Footprint, ConnectionSparsity], [R2, ActivationSparsity, SynapticOperations]]
    return torch, Benchmark, NeuroBenchModel, metrics


def _spikes_module(torch):
    class Spikes(torch.nn.Identity):
        """Marks a layer's spike output for NeuroBench's activation hooks."""

    return Spikes


def _streaming_twin(torch, channels, hidden, outputs):
    spikes = _spikes_module(torch)

    class StreamingTwin(torch.nn.Module):
        """C -> hidden[0] -> hidden[1] -> outputs Linear layers and spike markers."""

        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(channels, hidden[0])
            self.act1 = spikes()
            self.fc2 = torch.nn.Linear(hidden[0], hidden[1])
            self.act2 = spikes()
            self.fc3 = torch.nn.Linear(hidden[1], outputs)

    return StreamingTwin(), spikes


class _Stream:
    """The project's stream (backend + filter) over one whole series."""

    def __init__(self, backend, filter):
        from .neural import NeuralStream

        self.backend, self.filter = backend, filter
        self.NeuralStream = NeuralStream

    def decode(self, bins):
        stream = self.NeuralStream(self.backend, filter=self.filter, block=1024)
        outs = []
        for start in range(0, len(bins), 1024):
            stream.feed(start, bins[start:start + 1024])
            outs.append(stream.poll()[1])
        outs.append(stream.flush()[1])
        return np.concatenate(outs)


def _golden_layer_inputs(net, bins):
    """The input bits of every layer of the fixed-point network over ``bins`` (from rest)."""
    from ..golden import snn as gsnn

    inputs = [np.asarray(bins, bool)]
    state = gsnn.State.zeros(net)
    for i, layer in enumerate(net.layers[:-1]):
        currents = layer.bias + ((inputs[-1].astype(np.int64) @ layer.weights.T) << gsnn.GUARD)
        _, s = gsnn._scan(layer, currents, state.u[i], state.s[i])
        inputs.append(s)
    return inputs


def run(session, model, meta, backend, filter="none", train_ratio=0.5, max_bins=None):
    """NeuroBench's metrics for one model on the test part of ``session``.

    ``backend`` is a backend from ``host.neural.make_backend`` (``golden``/``sim`` or
    ``torch``), fresh (at rest). Returns a dict: NeuroBench's results by metric name, plus
    ``predictions`` (the ``(N, 2)`` array NeuroBench scored) and ``labels``.
    """
    torch, Benchmark, NeuroBenchModel, metrics = _imports()
    from torch.utils.data import DataLoader, TensorDataset

    from . import neural_train as nt
    from .neural import _GoldenBackend

    test = slice(*session.split(train_ratio).test)
    bins, truth = session.spikes[test], session.velocity[test]
    if max_bins is not None:
        bins, truth = bins[:max_bins], truth[:max_bins]
    stream = _Stream(backend, filter)
    seen = {}

    if isinstance(backend, _GoldenBackend):
        net = backend.network
        twin, spikes = _streaming_twin(torch, net.channels, [layer.neurons for layer in
                                                             net.layers[:-1]], net.outputs)
        with torch.no_grad():
            for fc, layer in zip((twin.fc1, twin.fc2, twin.fc3), net.layers, strict=True):
                fc.weight.copy_(torch.from_numpy(layer.weights.astype(np.float32)))
                fc.bias.zero_()

        def forward_hooks(x):
            layer_in = [torch.from_numpy(xin.astype(np.float32))
                        for xin in _golden_layer_inputs(net, x)]
            with torch.no_grad():
                for fc, xin in zip((twin.fc1, twin.fc2, twin.fc3), layer_in, strict=True):
                    fc(xin)
                twin.act1(layer_in[1])
                twin.act2(layer_in[2])
        net_module = twin
    else:
        # a copy carries NeuroBench's hooks, so the backend's own forward passes (the
        # predictions) are not counted twice
        twin_model = copy.deepcopy(model).eval()
        spikes = _spikes_module(torch)
        if isinstance(model, nt.SNNStreaming):
            net_module = torch.nn.ModuleDict({"model": twin_model, "act1": spikes(),
                                              "act2": spikes()})

            def forward_hooks(x):
                with torch.no_grad():
                    layer_in = twin_model.layer_inputs(torch.from_numpy(
                        np.asarray(x, np.float32)))
                    net_module["act1"](layer_in[1])
                    net_module["act2"](layer_in[2])
        else:
            net_module = twin_model

            def forward_hooks(x):
                with torch.no_grad():
                    twin_model(torch.from_numpy(nt.window_counts(
                        np.asarray(x, np.float32), np.arange(len(x)))))

    class Wrapped(NeuroBenchModel):
        def __init__(self):
            super().__init__()
            self.net = net_module.eval()
            self.add_activation_module(spikes)

        def __call__(self, batch):
            x = batch[:, 0, :].cpu().numpy().astype(np.uint8)
            pred = stream.decode(x)                    # the project's predictions
            forward_hooks(x)                           # the layers see the decoder's inputs
            seen["pred"] = pred
            return torch.from_numpy(pred)

        def __net__(self):
            return self.net

    data = TensorDataset(torch.from_numpy(np.asarray(bins, np.float32)[:, None, :]),
                         torch.from_numpy(np.asarray(truth, np.float64)))
    loader = DataLoader(data, batch_size=len(data), shuffle=False)
    wrapped = Wrapped()
    bench = Benchmark(wrapped, loader, [], [], metrics)
    results = bench.run(quiet=True)
    wrapped.cleanup_hooks()
    out = {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in results.items()}
    if not wrapped.activation_layers():
        # snn_3d's LIF layers are not snnTorch neurons, so NeuroBench finds no activation
        # module and would report 0.0
        out["ActivationSparsity"] = None
    out["predictions"] = seen["pred"]
    out["labels"] = np.asarray(truth)
    return out
