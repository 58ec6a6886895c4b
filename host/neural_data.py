# SPDX-License-Identifier: BSD-3-Clause
"""Primate-reaching data: a seeded synthetic session and a reader for the NeuroBench layout.

The file layout is O'Doherty et al.'s (zenodo 583331) MATLAB v7.3 ``.mat``, which is HDF5:
``t`` (1 x k, seconds, 250 Hz), ``cursor_pos`` and ``target_pos`` (2 x k, mm), and ``spikes``
(units x channels) of object references to per-unit spike-time arrays. Reading follows
NeuroBench's ``PrimateReaching`` with ``bin_width=0.004, num_steps=1, biological_delay=0``:
spike times binned on the grid starting at ``t[0] - bin_width`` (a spike lands one bin after
its histogram bin), the units of a channel OR-ed into one binary value per bin, velocity as
``torch.gradient``-style central differences of ``cursor_pos`` (mm per 4 ms sample), segments
cut where ``target_pos`` changes, and a chronological split by segment (first ``train_ratio``
of the segments to train, half of the rest to validation, the rest to test).

The synthetic generator follows ``research/snn-decoding.md`` section 3: self-paced
minimum-jerk reaches between targets on an 8 x 8 grid with holds, and a cosine-tuned
(velocity, 100 ms lead) Poisson population with a slow shared gain, drawn as one Bernoulli per
4 ms bin, so the channel values the reader recovers are exactly NeuroBench's binary ones.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "BIN_S", "NeuralSession", "Split", "synthetic_session", "write_mat", "read_mat",
    "spike_stream",
]

BIN_S = 0.004


@dataclasses.dataclass
class Split:
    """Index ranges (half-open, in bins) of the chronological train / validation / test parts."""

    train: tuple
    val: tuple
    test: tuple

    def slices(self):
        return tuple(slice(*r) for r in (self.train, self.val, self.test))


@dataclasses.dataclass
class NeuralSession:
    """Binned spikes ``(T, C)`` uint8 in {0, 1}, velocity ``(T, 2)`` float64 (mm per 4 ms
    sample), and segment ``(start, end)`` pairs (one per target)."""

    name: str
    spikes: np.ndarray
    velocity: np.ndarray
    segments: np.ndarray

    @property
    def channels(self) -> int:
        return self.spikes.shape[1]

    @property
    def bins(self) -> int:
        return self.spikes.shape[0]

    def split(self, train_ratio: float = 0.5) -> Split:
        """NeuroBench's ``split_data`` with ``split_num=1``: chronological by segment."""
        if not 0 < train_ratio < 1:
            raise InputError(f"train ratio must be in (0, 1), got {train_ratio}")
        n = len(self.segments)
        train_len = math.floor(train_ratio * n)
        val_len = math.floor((n - train_len) / 2)
        if train_len < 1 or n - train_len - val_len < 1:
            raise InputError(f"{self.name}: {n} segments are too few to split at {train_ratio}")
        edges = [int(s) for s in self.segments[:, 0]] + [int(self.segments[-1, 1])]
        a, b = edges[train_len], edges[train_len + val_len]
        return Split(train=(0, a), val=(a, b), test=(b, edges[-1]))


# -- synthetic session ----------------------------------------------------------------------

def _min_jerk(n):
    s = np.arange(1, n + 1) / n
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _trajectory(rng, samples, grid_mm=12.0):
    """Cursor and target positions (samples, 2), mm, sampled every 4 ms."""
    grid = (np.arange(8) - 3.5) * grid_mm
    pos = np.zeros((samples, 2))
    tgt = np.zeros((samples, 2))
    cur = np.array([0.0, 0.0])
    i = 0
    while i < samples:
        target = np.array([rng.choice(grid), rng.choice(grid)])
        dist = float(np.hypot(*(target - cur)))
        if dist < 1.0:
            continue
        move_s = 0.25 + 0.012 * dist + rng.gamma(2.0, 0.05)
        hold_s = rng.uniform(0.05, 0.30)
        n_move = max(2, int(round(move_s / BIN_S)))
        n_hold = int(round(hold_s / BIN_S))
        path = cur + np.outer(_min_jerk(n_move), target - cur)
        drift = np.cumsum(rng.normal(0, 0.02, size=(n_hold, 2)), axis=0) + target
        seg = np.concatenate([path, drift])[: samples - i]
        pos[i:i + len(seg)] = seg
        tgt[i:i + len(seg)] = target
        cur = seg[-1].copy()
        i += len(seg)
    return pos, tgt


def synthetic_session(seed: int = 0, channels: int = 96, duration_s: float = 600.0,
                      units_per_channel: int = 2, t0: float = 100.0):
    """A seeded synthetic recording as the raw file contents (times, positions, spike times).

    Returns a dict with ``t`` (k,), ``cursor_pos`` and ``target_pos`` (2, k) and ``spikes``:
    a (units, channels) nested list of spike-time arrays. Same seed, same bytes.
    """
    if channels not in (96, 192):
        raise InputError(f"channels must be 96 (Indy) or 192 (Loco), got {channels}")
    if not duration_s > 1:
        raise InputError(f"duration must be more than 1 s, got {duration_s}")
    rng = np.random.default_rng(seed)
    samples = int(round(duration_s / BIN_S))
    pos, tgt = _trajectory(rng, samples)
    vel = np.gradient(pos, axis=0) / BIN_S                       # mm/s
    lead = int(round(0.100 / BIN_S))
    v_lead = np.concatenate([vel[lead:], np.repeat(vel[-1:], lead, axis=0)])
    speed = np.hypot(v_lead[:, 0], v_lead[:, 1])
    # shared slow gain: OU process, tau 20 s, sigma 0.15
    a = math.exp(-BIN_S / 20.0)
    noise = rng.normal(0, 0.15 * math.sqrt(1 - a * a), size=samples)
    ou = np.zeros(samples)
    for n in range(1, samples):
        ou[n] = a * ou[n - 1] + noise[n]
    gain = np.exp(ou)
    units = units_per_channel * channels
    base = rng.lognormal(math.log(6.0), 0.5, size=units)
    depth = rng.lognormal(math.log(0.035), 0.5, size=units) * (rng.random(units) < 0.5)
    angle = rng.uniform(0, 2 * math.pi, size=units)
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    speed_gain = rng.normal(0.0, 0.01, size=units)
    t = t0 + BIN_S * np.arange(samples)
    spikes = [[None] * channels for _ in range(units_per_channel)]
    for u in range(units):
        drive = base[u] + depth[u] * (v_lead @ direction[u]) + speed_gain[u] * speed
        rate = gain * np.maximum(drive, 0.0)
        fired = rng.random(samples) < -np.expm1(-rate * BIN_S)
        idx = np.nonzero(fired)[0]
        # keep spike times away from bin edges so float binning is unambiguous
        times = t[idx] + BIN_S * rng.uniform(0.1, 0.9, size=len(idx)) - BIN_S
        spikes[u // channels][u % channels] = times
    return {"t": t, "cursor_pos": pos.T.copy(), "target_pos": tgt.T.copy(), "spikes": spikes}


def write_mat(path, contents):
    """Write contents (as from ``synthetic_session``) in the O'Doherty / NeuroBench layout."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("t", data=np.asarray(contents["t"], dtype=np.float64)[None, :])
        f.create_dataset("cursor_pos", data=contents["cursor_pos"])
        f.create_dataset("target_pos", data=contents["target_pos"])
        f.create_dataset("finger_pos", data=np.concatenate(
            [contents["cursor_pos"], np.zeros((1, contents["cursor_pos"].shape[1]))]))
        refs_group = f.create_group("#refs#")
        units = len(contents["spikes"])
        chans = len(contents["spikes"][0])
        refs = np.empty((units, chans), dtype=h5py.ref_dtype)
        for u in range(units):
            for c in range(chans):
                ds = refs_group.create_dataset(
                    f"s{u}_{c}", data=np.asarray(contents["spikes"][u][c],
                                                 dtype=np.float64)[None, :])
                refs[u, c] = ds.ref
        f.create_dataset("spikes", data=refs, dtype=h5py.ref_dtype)
    return path


def read_mat(path, bin_width: float = BIN_S) -> NeuralSession:
    """Read an O'Doherty / NeuroBench ``.mat`` (HDF5) into binned binary spikes and velocity.

    Raises ``InputError`` with a one-line message for missing, corrupt or truncated files.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable HDF5 .mat file (corrupt or truncated?): "
                         f"{str(exc).splitlines()[0]}") from None
    try:
        with f:
            for key in ("t", "cursor_pos", "target_pos", "spikes"):
                if key not in f:
                    raise InputError(f"{path}: missing '{key}' (not an O'Doherty/NeuroBench "
                                     f"primate-reaching file)")
            t = np.asarray(f["t"][()], dtype=np.float64).reshape(-1)
            cursor = np.asarray(f["cursor_pos"][()], dtype=np.float64)
            target = np.asarray(f["target_pos"][()], dtype=np.float64)
            k = len(t)
            if cursor.shape != (2, k) or target.shape != (2, k) or k < 3:
                raise InputError(f"{path}: cursor_pos/target_pos must be 2 x {k} like t, got "
                                 f"{cursor.shape} and {target.shape}")
            refs = f["spikes"][()]
            if refs.ndim != 2:
                raise InputError(f"{path}: 'spikes' must be a units x channels array")
            edges = np.arange(t[0] - bin_width, t[-1], bin_width)
            channels = refs.shape[1]
            spikes = np.zeros((k, channels), dtype=np.uint8)
            for row in refs:
                for c, ref in enumerate(row):
                    if isinstance(ref, np.ndarray):
                        times = ref
                    else:
                        ds = f[ref]
                        if ds.attrs.get("MATLAB_empty", 0):
                            continue
                        times = ds[()]
                    counts, _ = np.histogram(np.asarray(times, dtype=np.float64).reshape(-1),
                                             bins=edges)
                    idx = np.nonzero(counts)[0] + 1
                    spikes[idx[idx < k], c] = 1
    except InputError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"{path}: unreadable data (corrupt or truncated?): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    if not np.all(np.isfinite(cursor)) or not np.all(np.isfinite(t)):
        raise InputError(f"{path}: non-finite values in t or cursor_pos")
    velocity = np.gradient(cursor, axis=1).T.copy()
    diff = np.diff(target, axis=1, append=target[:, -1:])
    flags = np.nonzero(np.abs(diff).sum(axis=0))[0]
    bounds = np.concatenate([[0], flags, [k]])
    segments = np.stack([bounds[:-1], bounds[1:]], axis=1)
    return NeuralSession(name=path.stem, spikes=spikes, velocity=velocity, segments=segments)


def spike_stream(seed: int, channels: int, bins: int, rate: float = 0.05, chunk: int = 4096):
    """Untuned random binary bins for soak tests: yields ``(first_index, (n, C) uint8)``."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < bins:
        n = min(chunk, bins - done)
        yield done, (rng.random((n, channels)) < rate).astype(np.uint8)
        done += n
