# SPDX-License-Identifier: BSD-3-Clause
"""Train the neural decoders (PyTorch; CUDA when present) and convert them to fixed point.

Topologies follow the paper's code (Zhou, Sun, Basu, arXiv 2312.15889; ``research/
snn-decoding.md`` section 1): ``SNNStreaming`` (C -> 32 -> 48 -> 2, one LIF step per 4 ms
bin, persistent membranes, subtract / none / none resets), ``SNN3D`` (every bin, 7 sub-bins
of 7 bins of counts -> LayerNorm -> 7 LIF steps, membranes reset per decode) and the
``ANN2D`` baseline (counts over 200 ms -> 32 -> 48 -> 2 with batch norm). LIF semantics are
snnTorch's ``Leaky`` (delayed reset, strict threshold, atan surrogate with alpha = 2),
re-implemented here so training needs no snnTorch.

Seeded: the same seed and data give the same weights on the same machine (CPU, one thread
set). ``ternedge train-neural`` (``run_cli``) trains on a user's session (or a synthetic one)
with the ``streaming`` recipe; ``python -m ternedge.host.neural_train --out host/models/snn``
rebuilds the shipped models with their ``from-rest`` recipe.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np
import torch
from torch import nn

from ..golden import snn as gsnn
from .errors import CheckpointError, InputError

__all__ = [
    "LIF", "SNNStreaming", "SNN3D", "ANN2D", "TOPOLOGIES", "window_counts", "r2_score",
    "RECIPES", "DEFAULT_EPOCHS", "train", "save_model", "load_model", "to_fixed",
    "predict_float", "run_cli", "main",
]

TOPOLOGIES = ("snn_streaming", "snn_3d", "ann_2d")
#: training epochs when none are given
DEFAULT_EPOCHS = {("snn_streaming", "streaming"): 12, ("snn_streaming", "from-rest"): 30,
                  "snn_3d": 6, "ann_2d": 6}


class _ATan(torch.autograd.Function):
    """Heaviside forward (strict ``x > 0``), arctan surrogate backward (snnTorch ``atan``)."""

    alpha = 2.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = _ATan.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


class LIF(nn.Module):
    """snnTorch ``Leaky`` with learnable beta and threshold and the default delayed reset.

    ``beta_max`` bounds the learned decay (snnTorch clamps to [0, 1]): at ``beta = 1`` a
    subtract-reset layer is a perfect integrator whose membrane drifts without bound over a
    long stream, which 400 ms training windows never show.
    """

    def __init__(self, beta: float, theta: float, reset: str, beta_max: float = 1.0):
        super().__init__()
        if reset not in ("subtract", "none", "zero"):
            raise ValueError(f"reset must be subtract, none or zero, got {reset!r}")
        if not 0 < beta_max <= 1:
            raise ValueError(f"beta_max must be in (0, 1], got {beta_max!r}")
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.theta = nn.Parameter(torch.tensor(float(theta)))
        self.reset = reset
        self.beta_max = float(beta_max)

    def decay(self):
        """The decay the forward pass uses: ``beta`` clamped to ``[0, beta_max]``."""
        return self.beta.clamp(0, self.beta_max)

    def forward(self, current, mem):
        beta = self.decay()
        reset = (mem - self.theta > 0).to(mem.dtype).detach()
        if self.reset == "subtract":
            mem = beta * mem + current - reset * self.theta
        elif self.reset == "zero":
            mem = beta * (1 - reset) * mem + current
        else:
            mem = beta * mem + current
        return _ATan.apply(mem - self.theta), mem


class SNNStreaming(nn.Module):
    """C -> 32 -> 48 -> 2, one step per bin; ``forward(x (B, T, C))`` -> velocity (B, T, 2)."""

    def __init__(self, channels: int, hidden=(32, 48), dropout: float = 0.3,
                 beta_max: float = 1.0):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden[0])
        self.lif1 = LIF(0.9, 0.4, "subtract", beta_max)
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.lif2 = LIF(0.7, 0.6, "none", beta_max)
        self.fc3 = nn.Linear(hidden[1], 2)
        self.lif3 = LIF(0.8, 0.5, "none", beta_max)
        self.v = nn.Parameter(torch.ones(2))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state=None):
        b, t_len, _ = x.shape
        mems = state or [x.new_zeros(b, m.out_features) for m in (self.fc1, self.fc2, self.fc3)]
        cur1 = self.fc1(x)                              # binary input: a whole block at once
        outs = []
        m1, m2, m3 = mems
        for t in range(t_len):
            s1, m1 = self.lif1(cur1[:, t], m1)
            s2, m2 = self.lif2(self.fc2(self.drop(s1)), m2)
            _, m3 = self.lif3(self.fc3(self.drop(s2)), m3)
            outs.append(m3 * self.v)
        return torch.stack(outs, 1), [m1, m2, m3]

    def layer_inputs(self, x):
        """The inputs of fc1, fc2 and fc3 over one series ``x`` (T, C) from rest, layer by
        layer (the layers are feed-forward, so this is the arithmetic of ``forward``)."""
        inputs = [x]
        cur = self.fc1(x)
        for lif, fc in ((self.lif1, self.fc2), (self.lif2, self.fc3)):
            mem = x.new_zeros(cur.shape[1])
            spikes = []
            for t in range(len(cur)):
                s, mem = lif(cur[t], mem)
                spikes.append(s)
            inputs.append(torch.stack(spikes) if spikes else x.new_zeros(0, cur.shape[1]))
            cur = fc(inputs[-1])
        return inputs

    def synaptic_ops(self, x) -> float:
        """NeuroBench effective ACs per bin of the float model over ``x`` (T, C) binary:
        (non-zero input, non-zero weight) pairs of every layer (no bias operations)."""
        with torch.no_grad():
            inputs = self.layer_inputs(torch.as_tensor(np.asarray(x, np.float32)))
            total = sum(float(((xin != 0).float() @ (fc.weight != 0).float().T).sum())
                        for xin, fc in zip(inputs, (self.fc1, self.fc2, self.fc3), strict=True))
        return total / max(len(x), 1)


class SNN3D(nn.Module):
    """7 sub-bins of counts -> LayerNorm([7, C]) -> 7 LIF steps; ``forward(x (B, 7, C))``."""

    def __init__(self, channels: int, hidden=(32, 48), dropout: float = 0.5):
        super().__init__()
        self.norm = nn.LayerNorm([7, channels])
        self.fc1 = nn.Linear(channels, hidden[0])
        self.lif1 = LIF(0.5, 0.5, "subtract")
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.lif2 = LIF(0.5, 0.5, "subtract")
        self.fc3 = nn.Linear(hidden[1], 2)
        self.lif3 = LIF(0.5, 0.5, "none")
        self.v = nn.Parameter(torch.ones(2))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.norm(x)
        b = x.shape[0]
        m1 = x.new_zeros(b, self.fc1.out_features)
        m2 = x.new_zeros(b, self.fc2.out_features)
        m3 = x.new_zeros(b, 2)
        for k in range(x.shape[1]):
            s1, m1 = self.lif1(self.fc1(x[:, k]), m1)
            s2, m2 = self.lif2(self.fc2(self.drop(s1)), m2)
            _, m3 = self.lif3(self.fc3(self.drop(s2)), m3)
        return m3 * self.v


class ANN2D(nn.Module):
    """Counts summed over 200 ms -> 32 -> BN -> 48 -> BN -> 2 (ReLU, dropout)."""

    def __init__(self, channels: int, hidden=(32, 48), dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, hidden[0]), nn.BatchNorm1d(hidden[0]), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden[0], hidden[1]), nn.BatchNorm1d(hidden[1]),
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden[1], 2))

    def forward(self, x):
        return self.net(x.sum(1))


def window_counts(spikes, index, sub_bins: int = 7, sub_len: int = 7, cumsum=None):
    """Counts ``(len(index), sub_bins, C)`` of the ``sub_bins * sub_len`` bins ending at each
    index (oldest sub-bin first; bins before the start count as zero). ``cumsum`` is
    ``_cumsum(spikes)`` when the caller already has it."""
    cs = _cumsum(spikes) if cumsum is None else cumsum
    length = len(cs) - 1
    index = np.asarray(index)
    out = np.empty((len(index), sub_bins, cs.shape[1]), np.float32)
    for k in range(sub_bins):
        hi = index + 1 - sub_len * (sub_bins - 1 - k)
        lo = hi - sub_len
        out[:, k] = cs[np.clip(hi, 0, length)] - cs[np.clip(lo, 0, length)]
    return out


def _cumsum(spikes):
    x = np.asarray(spikes, np.float32)
    return np.concatenate([np.zeros((1, x.shape[1]), np.float32), np.cumsum(x, 0)])


def r2_score(y_true, y_pred):
    """NeuroBench R²: per axis ``1 - SSE / (N * var)``; returns ``(r2_x, r2_y, mean)``."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    sse = ((y_true - y_pred) ** 2).sum(0)
    sst = ((y_true - y_true.mean(0)) ** 2).sum(0)
    r2 = 1 - sse / sst
    return float(r2[0]), float(r2[1]), float(r2.mean())


def _device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _make(topology, channels, beta_max=1.0):
    if topology == "snn_streaming":
        return SNNStreaming(channels, beta_max=beta_max)
    if topology == "snn_3d":
        return SNN3D(channels)
    if topology == "ann_2d":
        return ANN2D(channels)
    raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")


#: how SNNStreaming is trained. ``streaming`` (the default, ``ternedge train-neural``): every
#: batch row continues where its last window ended, with the membranes carried over
#: (truncated BPTT), so training sees the long-run membrane state that inference does, and
#: decays are bounded by ``beta <= 0.95``. ``from-rest``: every window starts at zero
#: membranes, decays up to 1; the recipe of the shipped models, which needs about 30 epochs
#: and can fail on a long stream (a layer-1 decay of 1 drifts: R² 0.02 after 15 epochs on
#: synthetic seed 11, 0.70 after 30).
RECIPES = ("streaming", "from-rest")
_BETA_MAX = {"streaming": 0.95, "from-rest": 1.0}


def train(topology: str, session, train_ratio: float = 0.5, epochs: int | None = None,
          seed: int = 0, log=print, steps_per_epoch: int | None = None,
          recipe: str = "streaming"):
    """Train one topology on ``session``'s training part (chronological, NeuroBench's split);
    returns the model (eval mode, CPU) with the velocity scale folded into its readout.

    ``recipe`` (``RECIPES``) only affects SNNStreaming.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = _device()
    # one thread: the per-step ops are tiny, and spinning intra-op threads on a shared CPU
    # made training 10x slower (and thread count changes float summation order)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    split = session.split(train_ratio)
    tr = slice(*split.train)
    x = session.spikes[tr].astype(np.float32)
    y = session.velocity[tr].astype(np.float32)
    scale = y.std(0) + 1e-6
    yn = y / scale
    model = _make(topology, session.channels, beta_max=_BETA_MAX[recipe]).to(dev)
    lr, wd = 5e-3, (0.05 if topology == "snn_streaming" else 0.01)
    epochs = epochs or DEFAULT_EPOCHS[(topology, recipe) if topology == "snn_streaming"
                                      else topology]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    t0 = time.time()
    stream_pos = state = fresh = None
    for epoch in range(epochs):
        model.train()
        losses = []
        if topology == "snn_streaming" and recipe == "from-rest":
            # random 400 ms windows from rest (20 bins of burn-in excluded from the loss)
            win, burn, batch, steps = 100, 20, 64, steps_per_epoch or 40
            for _ in range(steps):
                starts = rng.integers(0, len(x) - win, size=batch)
                idx = starts[:, None] + np.arange(win)
                xb = torch.from_numpy(x[idx]).to(dev)
                yb = torch.from_numpy(yn[idx]).to(dev)
                out, _ = model(xb)
                loss = ((out[:, burn:] - yb[:, burn:]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        elif topology == "snn_streaming":
            # 64 streams of consecutive 400 ms windows, membranes carried across windows
            # (detached); a stream that reaches the end restarts at rest at a random bin,
            # and only its first 20 bins (burn-in) are left out of the loss
            win, burn, batch, steps = 100, 20, 64, steps_per_epoch or 40
            if stream_pos is None:
                stream_pos = rng.integers(0, len(x) - win, size=batch)
                fresh = np.ones(batch, bool)
            for _ in range(steps):
                ended = stream_pos + win > len(x)
                if ended.any() and state is not None:
                    stream_pos[ended] = rng.integers(0, len(x) - win, size=int(ended.sum()))
                    for mem in state:
                        mem[torch.from_numpy(ended).to(dev)] = 0
                    fresh |= ended
                idx = stream_pos[:, None] + np.arange(win)
                xb = torch.from_numpy(x[idx]).to(dev)
                yb = torch.from_numpy(yn[idx]).to(dev)
                out, state = model(xb, state)
                state = [mem.detach() for mem in state]
                weight = torch.ones(batch, win, device=dev)
                weight[torch.from_numpy(fresh).to(dev), :burn] = 0
                loss = (((out - yb) ** 2).mean(-1) * weight).sum() / weight.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                stream_pos += win
                fresh[:] = False
        else:
            order = rng.permutation(len(x))
            batch = 512
            if steps_per_epoch:
                order = order[:steps_per_epoch * batch]
            cs = _cumsum(x)
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                xb = torch.from_numpy(window_counts(x, idx, cumsum=cs)).to(dev)
                yb = torch.from_numpy(yn[idx]).to(dev)
                loss = ((model(xb) - yb) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        sched.step()
        log(f"{topology} epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} "
            f"({time.time() - t0:.0f} s)")
    torch.set_num_threads(threads)
    model = model.cpu().eval()
    with torch.no_grad():
        if topology == "ann_2d":
            model.net[-1].weight.mul_(torch.from_numpy(scale)[:, None])
            model.net[-1].bias.mul_(torch.from_numpy(scale))
        else:
            model.v.mul_(torch.from_numpy(scale))
    return model


def predict_float(model, spikes, chunk: int = 4096):
    """Float decode of a whole series (T, C) -> (T, 2): streaming for SNNStreaming (state
    carried across chunks), per-bin windows otherwise."""
    x = np.asarray(spikes, np.float32)
    outs = []
    with torch.no_grad():
        if isinstance(model, SNNStreaming):
            state = None
            for i in range(0, len(x), chunk):
                out, state = model(torch.from_numpy(x[None, i:i + chunk]), state)
                outs.append(out[0].numpy())
        else:
            cs = _cumsum(x)
            for i in range(0, len(x), chunk):
                idx = np.arange(i, min(i + chunk, len(x)))
                outs.append(model(torch.from_numpy(window_counts(x, idx, cumsum=cs))).numpy())
    return np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, 2))


def to_fixed(model: SNNStreaming) -> gsnn.Network:
    """Post-training conversion of an SNNStreaming model to ``golden.snn`` integers (readout
    scalars folded into the output layer)."""
    if not isinstance(model, SNNStreaming):
        raise ValueError("only SNNStreaming has a fixed-point (RTL) form")
    layers = []
    v = model.v.detach().double().numpy()
    for fc, lif, fold in ((model.fc1, model.lif1, None), (model.fc2, model.lif2, None),
                          (model.fc3, model.lif3, v)):
        w = fc.weight.detach().double().numpy()
        b = fc.bias.detach().double().numpy()
        beta = float(lif.decay().detach())
        theta = float(lif.theta.detach())
        if fold is not None:
            if lif.reset != "none":
                raise ValueError("the readout can only be folded into a reset='none' layer")
            w, b = w * fold[:, None], b * fold
            theta = theta * float(np.max(np.abs(fold)))
        layers.append(gsnn.quantize_layer(w, b, beta, max(theta, 0.0), lif.reset))
    return gsnn.Network(layers)


def save_model(model, path, meta: dict):
    """safetensors of the float parameters (no pickle) with topology metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()
               if v.dtype.is_floating_point}
    if isinstance(model, SNNStreaming):
        meta = {**meta, "beta_max": model.lif1.beta_max}
    meta = {k: json.dumps(v) for k, v in meta.items()}
    save_file(tensors, str(path), metadata=meta)


def load_model(path):
    """Load a model written by ``save_model``; returns ``(model, meta)``.

    Raises ``CheckpointError`` for missing, corrupt or mismatched files.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:                                     # safetensors raises several
        raise CheckpointError(f"{path}: not a readable safetensors model (corrupt or "
                              f"truncated?): {str(exc).splitlines()[0]}") from None
    if meta.get("topology") not in TOPOLOGIES or "channels" not in meta:
        raise CheckpointError(f"{path}: missing topology/channels metadata")
    model = _make(meta["topology"], int(meta["channels"]),
                  beta_max=float(meta.get("beta_max", 1.0)))
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: tensors do not match a {meta['topology']} model with "
                              f"{meta['channels']} channels: {str(exc).splitlines()[0]}"
                              ) from None
    missing = [k for k in missing if "num_batches_tracked" not in k]
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing {missing[:3]} / unexpected {unexpected[:3]}")
    return model.eval(), meta


def _check_out(out: Path) -> Path:
    from .argtypes import check_output_dir

    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"--out {out}: the model file must end in .safetensors")
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a FILE.safetensors path")
    check_output_dir(out.parent, "--out's folder")
    return out


def run_cli(args) -> int:
    """``ternedge train-neural``: train, evaluate on the validation and test parts, write the
    model (atomically: a temporary file renamed into place) with the session's fingerprint."""
    from . import neural

    out = _check_out(args.out)
    channels = args.channels or 96
    session, data_name = neural.load_session(args.data, args.synthetic, channels)
    if args.data is not None and args.channels is not None and session.channels != channels:
        raise InputError(f"--channels {channels}, but {args.data} has {session.channels} "
                         f"channels; leave --channels out for a file")
    split = session.split(args.train_ratio)                       # too few reaches: InputError
    progress = sys.stderr if args.json else sys.stdout
    start = time.perf_counter()
    model = train(args.topology, session, train_ratio=args.train_ratio, epochs=args.epochs,
                  seed=args.seed, log=lambda line: print(line, file=progress, flush=True))
    seconds = time.perf_counter() - start
    result = {"topology": args.topology, "channels": session.channels, "data": data_name,
              "train_ratio": args.train_ratio, "seed": args.seed,
              "epochs": args.epochs or DEFAULT_EPOCHS[
                  (args.topology, "streaming") if args.topology == "snn_streaming"
                  else args.topology],
              "train_bins": split.train[1] - split.train[0], "training_seconds": seconds}
    # SNNStreaming is scored as it runs (the fixed-point golden = RTL decoder; its float
    # twin streams one bin per Python step, 6x slower), the others in float
    fixed = to_fixed(model) if args.topology == "snn_streaming" else None
    result["arithmetic"] = "fixed point" if fixed is not None else "float"
    for part in ("val", "test"):
        lo, hi = getattr(split, part)
        if hi - lo < 2:
            result[f"{part}_r2"] = None
            continue
        bins = session.spikes[lo:hi]
        pred = (gsnn.run(fixed, bins)[0] / float(1 << gsnn.OUT_FRAC) if fixed is not None
                else predict_float(model, bins))
        result[f"{part}_r2"] = r2_score(session.velocity[lo:hi], pred)[2]
    session_meta = {"fingerprint": neural.session_fingerprint(session), "source": data_name,
                    "bins": session.bins, "channels": session.channels}
    meta = {"topology": args.topology, "channels": session.channels, "data": data_name,
            "train_ratio": args.train_ratio, "seed": args.seed, "epochs": result["epochs"],
            "recipe": "streaming", "session": session_meta,
            "test_r2": result["test_r2"], "arithmetic": result["arithmetic"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        save_model(model, tmp, meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    result.update(out=str(out), session=session_meta)
    if args.json:
        print(json.dumps(result))
    else:
        val = result["val_r2"]
        print(f"trained {args.topology} on {data_name} ({result['train_bins']} training bins, "
              f"{result['epochs']} epochs) in {seconds:.1f} s")
        print(f"  R² ({result['arithmetic']}, no filter): "
              + (f"validation {val:.4f}, " if val is not None else "")
              + f"test {result['test_r2']:.4f}")
        print(f"  wrote {out} (session {session_meta['fingerprint']})")
        print(f"  decode: ternedge decode-neural "
              f"{'--data ' + str(args.data) if args.data else '--synthetic ' + str(args.synthetic)}"
              f"{' --channels 192' if session.channels == 192 and not args.data else ''} "
              f"--model {out} --filter block-middle"
              f"{' --backend torch' if args.topology != 'snn_streaming' else ''}")
    return 0


def main(argv=None):
    from .neural_data import read_mat, synthetic_session, write_mat

    p = argparse.ArgumentParser(description="train the shipped neural decoders")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "models" / "snn")
    p.add_argument("--seed", type=int, default=0, help="synthetic session seed")
    p.add_argument("--channels", type=int, default=96)
    p.add_argument("--topologies", default=",".join(TOPOLOGIES))
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / f".synthetic_{args.seed}_{args.channels}.mat"
    write_mat(tmp, synthetic_session(args.seed, args.channels))
    session = read_mat(tmp)
    tmp.unlink()
    for topology in args.topologies.split(","):
        model = train(topology, session, epochs=args.epochs, recipe="from-rest")
        split = session.split(0.5)
        te = slice(*split.test)
        pred = predict_float(model, session.spikes[te])
        r2 = r2_score(session.velocity[te], pred)
        print(f"{topology}: test R2 {r2}")
        save_model(model, args.out / f"{topology}_c{args.channels}.safetensors",
                   {"topology": topology, "channels": args.channels,
                    "data": f"synthetic seed {args.seed}", "train_ratio": 0.5,
                    "float_r2": r2[2]})


if __name__ == "__main__":
    main()
