# SPDX-License-Identifier: BSD-3-Clause
"""Streaming neural decoding: bins in, filtered 2-D velocity out, on any backend.

Three layers over one stream (as ``host/generate.py`` is for text):

* a **backend** turns a block of binary bins ``(n, C)`` into velocity ``(n, 2)`` and keeps the
  decoder state between blocks: ``golden`` (integer ``golden.snn``, the default), ``sim``
  (golden results plus ``rtl.snn.Decoder.cycles_per_bin`` timing), ``rtl`` (the Amaranth
  simulation of ``rtl.snn.Decoder``, a limited number of bins) and ``torch`` (the float
  model; CUDA when present);
* a ``NeuralStream`` takes bins as they arrive (any block sizes: gaps and bursts), checks that
  their indices are contiguous (no dropped or duplicated bins), decodes in bounded blocks and
  runs the output filter (``golden.bessel``: none, causal, block-last, block-middle);
* ``decode_session`` evaluates a recording's test part (R², operations, footprint, cycles) and
  ``register(commands)`` adds ``ternedge decode-neural``.
"""

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..golden import bessel
from ..golden import snn as gsnn
from ..sim import units as sim_units
from . import argtypes
from .errors import CheckpointError, InputError

__all__ = [
    "MODELS_DIR", "BACKENDS", "FILTERS", "BOARD_CLOCK_MHZ", "model_path", "make_backend",
    "NeuralStream", "DecodeReport", "decode_session", "load_session", "session_fingerprint",
    "trained_on", "register",
]

MODELS_DIR = Path(__file__).parent / "models" / "snn"
BACKENDS = ("golden", "torch", "rtl", "sim")
FILTERS = bessel.MODES
#: board clocks (MHz) used to convert cycles to microseconds
BOARD_CLOCK_MHZ = {"icebreaker": 12.0, "ulx3s-85f": 25.0}


def model_path(name: str | None, channels: int) -> Path:
    """A shipped model by topology name (``snn_streaming``, ``snn_3d``, ``ann_2d``) or a path."""
    name = name or "snn_streaming"
    candidate = Path(name)
    if candidate.suffix == ".safetensors" or candidate.exists():
        return candidate
    path = MODELS_DIR / f"{name}_c{channels}.safetensors"
    if not path.is_file():
        shipped = sorted(p.stem for p in MODELS_DIR.glob("*.safetensors"))
        raise CheckpointError(
            f"no shipped model '{name}' for {channels} channels (shipped: {', '.join(shipped)});"
            f" train one: ternedge train-neural --data FILE --out MODEL.safetensors")
    return path


# -- backends -------------------------------------------------------------------------------

class _GoldenBackend:
    """Integer decoder; returns Q16 velocity as float.

    With ``record_activity`` set it also keeps the per-bin layer activity (what the RTL's
    cycle count depends on) for an evaluation report; an endless stream leaves it off, so
    memory stays bounded.
    """

    name = "golden"

    def __init__(self, network: gsnn.Network):
        self.network = network
        self.state = gsnn.State.zeros(network)
        self.record_activity = False
        self.activity = []

    def decode(self, bins):
        out, self.state, counts = gsnn.run(self.network, bins, self.state, activity=True)
        if self.record_activity:
            self.activity.append(counts)
        return out / float(1 << gsnn.OUT_FRAC)

    def reset(self):
        self.state = gsnn.State.zeros(self.network)


class _SimBackend(_GoldenBackend):
    name = "sim"


class _RtlBackend(_GoldenBackend):
    """Amaranth simulation of ``rtl.snn.Decoder``; checks every bin against golden."""

    name = "rtl"

    def __init__(self, network, max_bins: int = 200):
        super().__init__(network)
        self.max_bins = max_bins
        self.done = 0
        self.measured_cycles = []
        self.runner = _RtlRunner(network)

    def decode(self, bins):
        if self.done + len(bins) > self.max_bins:
            raise InputError(f"the rtl backend simulates at most {self.max_bins} bins "
                             f"(--max-bins); use --backend sim for whole sessions")
        expected = super().decode(bins)
        got, cycles = self.runner.run(bins)
        if not np.array_equal(got, np.round(expected * (1 << gsnn.OUT_FRAC)).astype(np.int64)):
            raise InputError("rtl simulation disagrees with golden (please report a bug)")
        self.measured_cycles.extend(cycles)
        self.done += len(bins)
        return got / float(1 << gsnn.OUT_FRAC)


class _RtlRunner:
    """Amaranth simulation of one decoder; membranes persist across calls like hardware (the
    simulator cannot pause between calls, so each call replays the earlier bins first)."""

    def __init__(self, network):
        self.network = network
        self.history = []

    def run(self, bins):
        from amaranth.hdl import Elaboratable, Module, Signal, Value
        from amaranth.sim import Simulator

        from ..rtl import snn as rsnn

        class _Counted(Elaboratable):
            def __init__(self, dut):
                self.dut, self.counter = dut, Signal(32)

            def elaborate(self, platform):
                m = Module()
                m.submodules.dut = self.dut
                m.d.sync += self.counter.eq(self.counter + 1)
                return m

        network = self.network
        history = self.history
        history.extend(np.asarray(bins, np.uint8))
        dut = rsnn.Decoder(network=network)
        top = _Counted(dut)
        outs, t_in = [], []

        async def bench(ctx):
            ctx.set(dut.velocity.ready, 1)
            for b in history:
                word = int("".join(str(int(v)) for v in b[::-1]), 2)
                ctx.set(Value.cast(dut.spikes.payload), word)
                ctx.set(dut.spikes.valid, 1)
                (cycle,) = await ctx.tick().sample(top.counter).until(dut.spikes.ready)
                t_in.append(cycle)
                ctx.set(dut.spikes.valid, 0)
                (value,) = await ctx.tick().sample(dut.velocity.payload.as_value()).until(
                    dut.velocity.valid)
                vals = [(value >> (32 * i)) & 0xFFFFFFFF for i in range(network.outputs)]
                outs.append([v - (1 << 32) if v >> 31 else v for v in vals])

        sim = Simulator(top)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        n = len(bins)
        cycles = list(np.diff(t_in))[-n:] if len(t_in) > 1 else []
        return np.array(outs[-n:], dtype=np.int64), cycles


class _TorchBackend:
    """Float model (SNNStreaming carries membranes; windowed models keep 49 bins of history)."""

    name = "torch"

    def __init__(self, model):
        import torch

        from . import neural_train as nt

        self.nt, self.torch = nt, torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.streaming = isinstance(model, nt.SNNStreaming)
        self.state = None
        self.history = None
        self.activity = []

    def decode(self, bins):
        torch = self.torch
        x = np.asarray(bins, np.float32)
        with torch.no_grad():
            if self.streaming:
                out, self.state = self.model(torch.from_numpy(x[None]).to(self.device),
                                             self.state)
                return out[0].cpu().double().numpy()
            keep = 49
            hist = x if self.history is None else np.concatenate([self.history, x])
            idx = np.arange(len(hist) - len(x), len(hist))
            windows = self.nt.window_counts(hist, idx)
            self.history = hist[-keep:]
            return self.model(torch.from_numpy(windows).to(self.device)).cpu().double().numpy()

    def reset(self):
        self.state = self.history = None


def make_backend(name: str, model_file: Path, max_bins: int = 200):
    """A backend over a shipped or user model file."""
    from . import neural_train as nt

    if name not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    model, meta = nt.load_model(model_file)
    if name == "torch":
        return _TorchBackend(model), model, meta
    if meta["topology"] != "snn_streaming":
        raise InputError(f"{meta['topology']} has no fixed-point/RTL form; use --backend torch")
    net = nt.to_fixed(model)
    if name == "rtl":
        return _RtlBackend(net, max_bins=max_bins), model, meta
    return (_SimBackend if name == "sim" else _GoldenBackend)(net), model, meta


# -- the stream -----------------------------------------------------------------------------

class NeuralStream:
    """Bins in (any block sizes, indexed), filtered velocity out, in order, exactly once.

    Parameters
    ----------
    backend
        From ``make_backend``.
    filter : str
        ``none``, ``causal``, ``block-last``, ``block-middle`` or ``block-amortized``
        (``golden.bessel.MODES``).
    block : int
        Bins decoded together (the bound on buffered bins and on memory).
    """

    def __init__(self, backend, filter: str = "none", block: int = 1024):
        if filter not in FILTERS:
            raise InputError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
        if not isinstance(block, int) or block < 1:
            raise InputError(f"block must be a positive int, got {block!r}")
        self.backend, self.filter, self.block = backend, filter, block
        self.next_index = 0            # the index the next arriving bin must carry
        self.emitted = 0               # outputs handed out so far
        self.pending = []              # arrived, not yet decoded
        self.pending_bins = 0
        self.ready = []                # decoded and filtered, not yet taken
        self.max_buffered = 0
        self._filter = bessel.make_filter(filter)

    def feed(self, first_index: int, bins):
        """Hand over bins ``first_index ..``; a gap or overlap with what came before is an
        error (``InputError``) rather than a silent drop or duplicate."""
        bins = np.asarray(bins)
        if bins.ndim == 1:
            bins = bins[None]
        if first_index != self.next_index:
            what = "dropped" if first_index > self.next_index else "duplicated"
            raise InputError(f"bin {first_index} arrived but bin {self.next_index} was expected "
                             f"({what} bins)")
        if bins.size and not np.isin(bins, (0, 1)).all():
            raise InputError("bins must be binary (one value per channel per 4 ms bin)")
        self.pending.append(bins.astype(np.uint8, copy=False))
        self.pending_bins += len(bins)
        self.next_index += len(bins)
        self.max_buffered = max(self.max_buffered, self.pending_bins)
        while self.pending_bins >= self.block:
            self._decode(self.block)

    def _decode(self, count):
        joined = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        take, rest = joined[:count], joined[count:]
        self.pending = [rest] if len(rest) else []
        self.pending_bins = len(rest)
        out = self.backend.decode(take)
        if self._filter is None:
            self.ready.append(out)
            return
        q16 = np.floor(out * 65536 + 0.5).astype(np.int64)
        filtered = self._filter.push_many(q16)
        if len(filtered):
            self.ready.append(filtered / 65536.0)

    def poll(self):
        """Everything decoded since the last poll, ``(first_index, (n, 2))``."""
        if not self.ready:
            return self.emitted, np.zeros((0, 2))
        out = np.concatenate(self.ready)
        self.ready = []
        first = self.emitted
        self.emitted += len(out)
        return first, out

    def flush(self):
        """Decode what is buffered and drain the filter's look-ahead (end of stream)."""
        if self.pending_bins:
            self._decode(self.pending_bins)
        if hasattr(self._filter, "flush"):
            tail = self._filter.flush()
            if tail:
                self.ready.append(np.array(tail) / 65536.0)
        return self.poll()


# -- evaluation -----------------------------------------------------------------------------

@dataclasses.dataclass
class DecodeReport:
    r2: float
    r2_x: float
    r2_y: float
    ops_per_decode: dict
    footprint_bytes: int
    cycles_per_bin: dict
    latency_us: dict
    filter: str
    backend: str
    model: str
    bins: int
    data: str
    velocity_true: np.ndarray = dataclasses.field(repr=False, default=None)
    velocity_pred: np.ndarray = dataclasses.field(repr=False, default=None)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d.pop("velocity_true")
        d.pop("velocity_pred")
        return d


_SYNTHETIC_CACHE = {}


def load_session(data: Path | None, synthetic: int | None, channels: int):
    """A recording from a file, or the synthetic session ``synthetic`` (seeded; written to a
    temporary .mat and read back through the same reader, cached per process)."""
    import tempfile

    from . import neural_data as nd

    if data is not None:
        session = nd.read_mat(data)
        return session, str(data)
    key = (synthetic, channels)
    if key in _SYNTHETIC_CACHE:
        return _SYNTHETIC_CACHE[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = nd.write_mat(Path(tmp) / f"synthetic_{synthetic}_{channels}.mat",
                            nd.synthetic_session(synthetic, channels))
        session = nd.read_mat(path)
    _SYNTHETIC_CACHE.clear()
    _SYNTHETIC_CACHE[key] = (session, f"synthetic seed {synthetic}, {channels} channels")
    return _SYNTHETIC_CACHE[key]


def session_fingerprint(session) -> str:
    """``sha256:`` + 16 hex digits over a session's binned spikes and velocity: the same
    recording gives the same fingerprint whatever its file name or path (or whether it was
    generated: a synthetic session written to a file and read back matches its seed)."""
    h = hashlib.sha256()
    h.update(repr((session.spikes.shape, session.velocity.shape)).encode())
    h.update(np.ascontiguousarray(session.spikes, np.uint8).tobytes())
    h.update(np.ascontiguousarray(session.velocity, np.float64).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def trained_on(meta: dict, session, data_name: str):
    """Whether a model (its ``meta``) was trained on ``session``: True, False, or None when
    the model does not say. Models from ``train-neural`` carry the session's fingerprint;
    the shipped ones name their synthetic seed."""
    own = meta.get("session")
    if isinstance(own, dict) and own.get("fingerprint"):
        return own["fingerprint"] == session_fingerprint(session)
    data = meta.get("data")
    if isinstance(data, str) and data.startswith("synthetic seed "):
        return f"{data}, {meta.get('channels')} channels" == data_name
    return None


def _model_source(meta: dict) -> str:
    own = meta.get("session")
    if isinstance(own, dict) and own.get("source"):
        return f"{own['source']} ({own.get('fingerprint', '?')})"
    return f"{meta.get('data', 'an unknown session')}, {meta.get('channels')} channels"


def _filter_ops(filter):
    """Multiplies per decode of the output filter (``golden.bessel.filter_macs``)."""
    return bessel.filter_macs(filter)


def _filter_cycles(filter):
    """Cycles per sample of the ``rtl.bessel`` unit for a filter mode (0: no filter; the
    worst sample, one that releases output), from its cycle model in ``sim.units``."""
    return sim_units.filter_cycles(filter)["worst"]


def _filter_footprint(filter):
    return bessel.filter_footprint_bytes(filter)


def _float_ops(model, bins):
    """NeuroBench's effective operations per decode for the windowed float topologies, over
    every bin: with a hook on each ``nn.Linear``, (non-zero input, non-zero weight) pairs,
    counted as ACs when the layer's input is binary (spikes) and as MACs otherwise (counts,
    LayerNorm or ReLU outputs); biases are not operations."""
    import torch

    from . import neural_train as nt

    counts = {"acs": 0.0, "macs": 0.0}

    def hook(module, inputs):
        x = inputs[0].detach()
        ops = float(((x != 0).float() @ (module.weight != 0).float().T).sum())
        binary = bool(((x == 0) | (x == 1)).all())
        counts["acs" if binary else "macs"] += ops

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules()
             if isinstance(m, torch.nn.Linear)]
    try:
        nt.predict_float(model, bins)
    finally:
        for h in hooks:
            h.remove()
    n = max(len(bins), 1)
    return {"acs": counts["acs"] / n, "macs": counts["macs"] / n}


def decode_session(session, backend, model, meta, filter="none", train_ratio=0.5,
                   block=1024, max_bins=None, clock_mhz=12.0, data_name=""):
    """Stream the test part of ``session`` through ``backend`` and the filter; R², ops,
    footprint and cycles per bin."""
    from . import neural_train as nt

    test = slice(*session.split(train_ratio).test)
    bins = session.spikes[test]
    truth = session.velocity[test]
    if max_bins is not None:
        bins, truth = bins[:max_bins], truth[:max_bins]
    if len(bins) < 2:
        raise InputError("the test part has fewer than 2 bins")
    backend.record_activity = True
    stream = NeuralStream(backend, filter=filter, block=block)
    outs = []
    for start in range(0, len(bins), block):
        stream.feed(start, bins[start:start + block])
        outs.append(stream.poll()[1])
    outs.append(stream.flush()[1])
    pred = np.concatenate(outs)
    if pred.shape != truth.shape:
        raise AssertionError(f"stream returned {pred.shape}, expected {truth.shape}")
    r2x, r2y, r2 = nt.r2_score(truth, pred)
    fops = _filter_ops(filter)
    cycles, latency = {}, {}
    if isinstance(backend, _GoldenBackend):
        net = backend.network
        acs = gsnn.synaptic_ops(net, bins)
        ops = {"acs": acs, "macs": 0.0, "filter_macs": float(fops)}
        footprint = net.footprint_bytes + _filter_footprint(filter)
        activity = np.concatenate(backend.activity)
        decoder = sim_units.Decoder.from_network(net)       # = rtl.snn.Decoder's timing
        per_bin = decoder.cycles_per_bin(activity)
        if isinstance(backend, _RtlBackend) and backend.measured_cycles:
            measured = np.array(backend.measured_cycles)
            if not np.array_equal(measured, per_bin[:-1][-len(measured):]):
                raise InputError("measured RTL cycles differ from cycles_per_bin (bug)")
        filt_cycles = _filter_cycles(filter)
        cycles = {"mean": float(per_bin.mean()), "max": int(per_bin.max()),
                  "worst_case": decoder.worst_case_cycles,
                  "filter": filt_cycles}
        # decoder and filter are separate stream stages: a bin's latency is the sum
        latency = {"clock_mhz": clock_mhz,
                   "mean_us": (float(per_bin.mean()) + filt_cycles) / clock_mhz,
                   "max_us": (float(per_bin.max()) + filt_cycles) / clock_mhz}
    else:
        # the float model's own spikes (what NeuroBench counts on it)
        ops = dict(_float_ops(model, bins) if not isinstance(model, nt.SNNStreaming) else
                   {"acs": model.synaptic_ops(bins), "macs": 0.0})
        ops["filter_macs"] = float(fops)
        footprint = int(sum(t.numel() * t.element_size()                # as NeuroBench
                            for t in (*model.parameters(), *model.buffers()))
                        ) + _filter_footprint(filter)
    return DecodeReport(r2=r2, r2_x=r2x, r2_y=r2y, ops_per_decode=ops,
                        footprint_bytes=int(footprint), cycles_per_bin=cycles,
                        latency_us=latency, filter=filter, backend=backend.name,
                        model=str(meta.get("topology")), bins=len(bins), data=data_name,
                        velocity_true=truth, velocity_pred=pred)


# -- plots ----------------------------------------------------------------------------------

def _plots(out_dir: Path, report: DecodeReport, pareto: list):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir.mkdir(parents=True, exist_ok=True)
    n = min(len(report.velocity_true), 2500)
    t = np.arange(n) * 0.004
    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, i, name in zip(axes, (0, 1), ("x", "y"), strict=False):
        ax.plot(t, report.velocity_true[:n, i], label="true", lw=1)
        ax.plot(t, report.velocity_pred[:n, i], label="decoded", lw=1)
        ax.set_ylabel(f"v{name} (mm / 4 ms)")
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"{report.model}, {report.backend}, filter {report.filter}: "
                      f"R² {report.r2:.3f}")
    axes[1].set_xlabel("time in test part (s)")
    fig.tight_layout()
    fig.savefig(out_dir / "velocity.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, ops, r2 in pareto:
        ax.scatter(ops, r2)
        ax.annotate(label, (ops, r2), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("operations per decode (2 x ACs + 3 x MACs, as the paper plots)")
    ax.set_ylabel("R²")
    ax.set_title("R² vs operations")
    fig.tight_layout()
    fig.savefig(out_dir / "pareto.png", dpi=120)
    plt.close(fig)
    return [str(out_dir / "velocity.png"), str(out_dir / "pareto.png")]


def _paper_ops(ops):
    return 2 * ops.get("acs", 0.0) + 3 * (ops.get("macs", 0.0) + ops.get("filter_macs", 0.0))


# -- CLI ------------------------------------------------------------------------------------

def _run(args) -> int:
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    if args.data is not None and args.synthetic is not None:
        raise InputError("give --data FILE or --synthetic SEED, not both")
    if args.plots is not None:
        argtypes.check_output_dir(args.plots)
    if args.neurobench and args.backend == "rtl":
        raise InputError("--neurobench runs the golden, sim or torch backend (the rtl backend "
                         "simulates at most a few hundred bins)")
    synthetic = 0 if args.data is None and args.synthetic is None else args.synthetic
    session, data_name = load_session(args.data, synthetic, args.channels)
    backend, model, meta = make_backend(args.backend, model_path(args.model, session.channels),
                                        max_bins=args.max_bins or 200)
    if int(meta["channels"]) != session.channels:
        raise InputError(f"the model has {meta['channels']} channels, the data "
                         f"{session.channels}")
    if trained_on(meta, session, data_name) is False:
        source = (f"--data {args.data}" if args.data is not None
                  else f"--synthetic {synthetic} --channels {session.channels}")
        print(f"ternedge: warning: the model was trained on {_model_source(meta)}, not on "
              f"{data_name}: expect a low R²; train one on it with `ternedge train-neural "
              f"{source} --out MODEL.safetensors`", file=sys.stderr)
    max_bins = args.max_bins or (200 if args.backend == "rtl" else None)
    block = 50 if args.backend == "rtl" else 1024
    report = decode_session(session, backend, model, meta, filter=args.filter,
                            train_ratio=args.train_ratio, block=block, max_bins=max_bins,
                            clock_mhz=args.clock_mhz, data_name=data_name)
    out = report.to_dict()
    out.update(_energy(report, session.channels))
    if args.neurobench:
        from . import neural_neurobench

        fresh, _, _ = make_backend(args.backend, model_path(args.model, session.channels))
        bench = neural_neurobench.run(session, model, meta, fresh, filter=args.filter,
                                      train_ratio=args.train_ratio, max_bins=max_bins)
        bench.pop("predictions")
        bench.pop("labels")
        out["neurobench"] = bench
    if args.plots:
        pareto = []
        for name in ("snn_streaming", "snn_3d", "ann_2d"):
            try:
                path = model_path(name, session.channels)
            except CheckpointError:
                continue
            for filt in ("none", args.filter if args.filter != "none" else "block-middle"):
                if name == meta["topology"] and filt == args.filter:
                    rep = report
                else:
                    kind = "torch" if name != "snn_streaming" else "golden"
                    b, mdl, mt = make_backend(kind, path)
                    rep = decode_session(session, b, mdl, mt, filter=filt,
                                         train_ratio=args.train_ratio, max_bins=max_bins)
                pareto.append((f"{name}/{filt}", _paper_ops(rep.ops_per_decode), rep.r2))
        out["plots"] = _plots(Path(args.plots), report, pareto)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"[{report.backend}] {report.model} on {report.data}, filter {report.filter}, "
              f"{report.bins} test bins")
        print(f"  R² {report.r2:.4f} (x {report.r2_x:.4f}, y {report.r2_y:.4f})")
        ops = report.ops_per_decode
        print(f"  ops/decode: {ops['acs']:.0f} ACs, {ops['macs']:.0f} MACs, "
              f"filter {ops['filter_macs']:.0f} MACs; footprint {report.footprint_bytes} B")
        if report.cycles_per_bin:
            c, lat = report.cycles_per_bin, report.latency_us
            print(f"  cycles/bin: mean {c['mean']:.0f}, max {c['max']}, worst case "
                  f"{c['worst_case']}; {lat['mean_us']:.1f} µs mean at {lat['clock_mhz']} MHz "
                  f"(budget 4000 µs)")
        if out["energy"]:
            ice, ecp = out["energy"]["icebreaker"], out["energy"]["ulx3s-85f"]
            print(f"  energy (modeled, sim.snn_power) at 250 decodes/s: iCEBreaker "
                  f"{ice['energy_uj_per_decode']:.3f} µJ/decode, "
                  f"{ice['power_uw_per_channel']:.2f} µW/channel; ULX3S "
                  f"{ecp['energy_uj_per_decode']:.1f} µJ/decode, "
                  f"{ecp['power_uw_per_channel']:.0f} µW/channel")
        if "neurobench" in out:
            nb = out["neurobench"]
            syn = nb["SynapticOperations"]
            act = nb["ActivationSparsity"]
            print(f"  NeuroBench: R2 {nb['R2']:.4f}, Effective_ACs {syn['Effective_ACs']:.0f}, "
                  f"Effective_MACs {syn['Effective_MACs']:.0f}, Dense {syn['Dense']:.0f}, "
                  f"Footprint {nb['Footprint']:.0f} B, ConnectionSparsity "
                  f"{nb['ConnectionSparsity']:.3f}, ActivationSparsity "
                  + (f"{act:.3f}" if act is not None else "n/a"))
        for p in out.get("plots", []):
            print(f"  wrote {p}")
    return 0


def _energy(report, channels) -> dict:
    """``sim.snn_power`` per board for the decoder + filter cycles of this run; the top-level
    ``energy_uj_per_decode`` / ``power_uw_per_channel`` are the iCEBreaker's (the
    implant-class device). None for the float (torch) path, which has no cycle count."""
    if not report.cycles_per_bin:
        return {"energy": None, "energy_uj_per_decode": None, "power_uw_per_channel": None}
    from ..sim import snn_power

    busy = report.cycles_per_bin["mean"] + report.cycles_per_bin["filter"]
    energy = {board: snn_power.decode_energy(board, busy, channels=channels)
              for board in snn_power.DEVICES}
    return {"energy": energy,
            "energy_uj_per_decode": energy["icebreaker"]["energy_uj_per_decode"],
            "power_uw_per_channel": energy["icebreaker"]["power_uw_per_channel"]}


def register(commands):
    """Add ``decode-neural`` to an argparse subparsers object."""
    p = commands.add_parser("decode-neural",
                            help="decode finger velocity from binned spikes (SNN + Bessel filter)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="NeuroBench / O'Doherty .mat recording")
    src.add_argument("--synthetic", type=argtypes.seed("--synthetic"), metavar="SEED",
                     help="seeded synthetic session (default: seed 0)")
    p.add_argument("--channels", type=int, default=96, choices=[96, 192],
                   help="channels of a synthetic session")
    p.add_argument("--model", default=None,
                   help="snn_streaming (default), snn_3d, ann_2d, or a .safetensors path")
    p.add_argument("--filter", default="none", choices=list(FILTERS))
    p.add_argument("--backend", default="golden", choices=list(BACKENDS))
    p.add_argument("--train-ratio", type=float, default=0.5, choices=[0.5, 0.8])
    p.add_argument("--max-bins", type=argtypes.integer("--max-bins", 2), default=None,
                   help="decode only the first N test bins (rtl default: 200)")
    p.add_argument("--clock-mhz", type=argtypes.real("--clock-mhz", 0, 10_000, exclusive_min=True),
                   default=BOARD_CLOCK_MHZ["icebreaker"],
                   help="clock for µs figures (default: iCEBreaker 12 MHz)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--neurobench", action="store_true",
                   help="also score the run with NeuroBench's own Benchmark and metrics "
                        "(needs the neurobench extra)")
    p.add_argument("--plots", type=argtypes.output_dir(), default=None, metavar="DIR",
                   help="write velocity.png and pareto.png here")
    p.set_defaults(run=_run)
    _register_train(commands)
    return p


def _register_train(commands):
    """``train-neural``: train a decoder on a session's chronological training split."""
    p = commands.add_parser(
        "train-neural", help="train a neural decoder on your session (or a synthetic one)",
        description="Train on the chronological first --train-ratio of a session's reaches "
                    "(NeuroBench's split), convert to fixed point, write a .safetensors model "
                    "whose metadata names the session.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="NeuroBench / O'Doherty .mat recording")
    src.add_argument("--synthetic", type=argtypes.seed("--synthetic"), metavar="SEED",
                     help="seeded synthetic session")
    p.add_argument("--channels", type=int, default=None, choices=[96, 192],
                   help="channels of a synthetic session (default 96; --data: the file's)")
    p.add_argument("--topology", default="snn_streaming",
                   choices=["snn_streaming", "snn_3d", "ann_2d"],
                   help="snn_streaming (default) also has the fixed-point / RTL form")
    p.add_argument("--train-ratio", type=float, default=0.5, choices=[0.5, 0.8])
    p.add_argument("--epochs", type=argtypes.integer("--epochs", 1, 10_000), default=None,
                   help="default: neural_train.DEFAULT_EPOCHS (snn_streaming 12, others 6)")
    p.add_argument("--seed", type=argtypes.seed(), default=0, help="training seed")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_train)
    return p


def _run_train(args) -> int:
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    from . import neural_train

    return neural_train.run_cli(args)
