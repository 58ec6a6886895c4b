# SPDX-License-Identifier: BSD-3-Clause
"""Live neural decoding over Lab Streaming Layer: ``ternedge decode-neural --lsl-in NAME``.

The decoder resolves the LSL stream named ``NAME`` (within ``--lsl-timeout`` seconds, else one
line of error), reads it sample by sample and decodes bin by bin through the same
``NeuralStream`` as a file (``host/neural.py``: backend, then the ``--filter``), and publishes
the velocity on an LSL outlet (``--lsl-out``, default ``NAME-velocity``).

Input: **binned spikes**, one LSL sample per 4 ms bin with one value per channel (96 or 192,
the model's channel count), any numeric channel format; a value above zero is a spike (the
sorted units of a channel are OR-ed, as NeuroBench bins them). Or **spike events**
(``--lsl-events``): an irregular-rate stream of one integer channel, the electrode channel
(0-based) of each spike, binned on a 4 ms grid of the stream's (clock-corrected) timestamps
that starts at the first event; a bin is decoded once the clock is ``--lsl-event-slack``
seconds past its end.

Output: one sample per bin, two float32 channels ``vx``, ``vy`` (the decoder's units: position
units per 4 ms bin), stamped with the bin's own timestamp (clock-corrected to this machine),
so a consumer can line the velocity up with its bins whatever the filter's look-ahead.

Latency per bin (``latency_ms``) is measured from the bin's timestamp (the source's clock,
corrected to this machine's) to the push of its velocity: transport, queueing, decoding and the
filter's look-ahead (``block-middle``: 16 bins; ``block-amortized``: 16 to 31; with
``--lsl-events`` also the bin's width and the slack). ``processing_ms`` counts from the bin's
arrival at the inlet instead. Text mode prints the latency about once a second (median and
maximum over the last second's bins); the summary (``--json``: one JSON object) gives the
mean, median, 99th percentile and maximum, the decode time per bin, and the timestamp gaps
(bins missing upstream) and non-increasing timestamps (duplicates) it saw. Decoding ends after
``--max-bins`` bins, when the source stream is lost, when no sample arrives for
``--lsl-timeout`` seconds, or on Ctrl-C; the filter's look-ahead is then flushed.
"""

import functools
import json
import math
import sys
import time

import numpy as np

from . import argtypes
from .errors import InputError

__all__ = ["LSLStreamError", "configure", "add_arguments", "run", "BIN_S"]

#: the decoder's bin width (s): NeuroBench's 4 ms
BIN_S = 0.004


class LSLStreamError(InputError):
    """A Lab Streaming Layer stream is missing, lost or not what the decoder reads."""


_CONFIGURED = []


def configure(local_only: bool = False):
    """liblsl settings, before any other LSL call in the process: only its fatal messages on
    stderr (its INFO lines, and the ERR lines it logs when a source stops, would interleave
    with the output; the decoder reports those ends itself); ``local_only`` resolves
    streams on this machine only (the tests). Later calls have no effect."""
    import pylsl

    if _CONFIGURED:
        return pylsl
    content = "[log]\nlevel = -3\n"
    if local_only:
        content += "[multicast]\nResolveScope = machine\n"
    try:
        pylsl.set_config_content(content)
    except (NotImplementedError, AttributeError):        # an older liblsl: keep its defaults
        pass
    _CONFIGURED.append(content)
    return pylsl


def _import_pylsl():
    try:
        return configure()
    except ImportError as exc:
        raise LSLStreamError(f"--lsl-in needs pylsl ({exc}); install it: pip install "
                             f"'ternedge[stream]'") from None


def add_arguments(parser):
    """Add the LSL options to the ``decode-neural`` parser and route ``--lsl-in`` runs here
    (file runs keep the parser's own ``run``)."""
    g = parser.add_argument_group("live streaming over Lab Streaming Layer")
    g.add_argument("--lsl-in", metavar="NAME", default=None,
                   help="decode the LSL stream NAME live (binned spikes, one sample per 4 ms "
                        "bin) instead of --data / --synthetic")
    g.add_argument("--lsl-out", metavar="NAME", default=None,
                   help="name of the velocity outlet (default: NAME-velocity)")
    g.add_argument("--lsl-timeout", default=10.0, metavar="S",
                   type=argtypes.real("--lsl-timeout", 0, 1e6, exclusive_min=True),
                   help="seconds to wait for the stream, and for data once it runs (default 10)")
    g.add_argument("--lsl-events", action="store_true",
                   help="the stream carries spike events (the channel of each spike) instead "
                        "of bins")
    g.add_argument("--lsl-event-slack", default=0.02, metavar="S",
                   type=argtypes.real("--lsl-event-slack", 0, 60, exclusive_min=True),
                   help="with --lsl-events: decode a bin this long after its end (default "
                        "0.02 s)")
    parser.set_defaults(run=functools.partial(_dispatch, parser.get_default("run")))
    return parser


def _dispatch(file_run, args) -> int:
    if getattr(args, "lsl_in", None) is None:
        for flag in ("lsl_out", "lsl_events"):
            if getattr(args, flag, None):
                raise InputError(f"--{flag.replace('_', '-')} needs --lsl-in NAME")
        return file_run(args)
    return run(args)


def _check_args(args):
    # --lsl-timeout and --lsl-event-slack are bounded by their argparse types
    if getattr(args, "data", None) is not None or getattr(args, "synthetic", None) is not None:
        raise InputError("give --lsl-in NAME or --data / --synthetic, not both")
    if getattr(args, "plots", None):
        raise InputError("--plots needs a recording (--data or --synthetic), not --lsl-in")
    if args.max_bins is not None and args.max_bins < 1:
        raise InputError(f"--max-bins must be a positive number of bins, got {args.max_bins}")
    if args.backend == "rtl":
        raise InputError("the rtl backend simulates a few hundred bins, too slow for a live "
                         "stream; use --backend golden, sim or torch")
    if not args.lsl_in.strip():
        raise InputError("--lsl-in needs a stream name")


def _resolve(pylsl, name, timeout):
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    if not found:
        raise LSLStreamError(f"no LSL stream named {name!r} found within {timeout:g} s; start "
                             f"its outlet (or check the name and network), or wait longer "
                             f"with --lsl-timeout S")
    return found[0]


class _EventBinner:
    """Spike events (channel per sample, clock-corrected timestamps) to 4 ms binary bins on a
    grid from the first event; a bin is closed once ``now`` is ``slack`` past its end."""

    def __init__(self, channels, slack):
        self.channels, self.slack = channels, slack
        self.t0 = None
        self.next_bin = 0                 # first bin not yet handed out
        self.open = {}                    # bin -> set of channels

    def add(self, chans, stamps):
        for ch, ts in zip(np.asarray(chans).reshape(len(stamps), -1)[:, 0], stamps,
                          strict=True):
            if not (np.isfinite(ch) and float(ch).is_integer() and 0 <= ch < self.channels):
                raise LSLStreamError(f"spike event for channel {ch}: channels are 0 to "
                                     f"{self.channels - 1}")
            if self.t0 is None:
                self.t0 = ts
            k = int(math.floor((ts - self.t0) / BIN_S))
            if k >= self.next_bin:                        # late events of a closed bin: dropped
                self.open.setdefault(k, set()).add(int(ch))

    def closed(self, now):
        """Bins whose end plus slack has passed: ``(bins (n, C), stamps (n,))``."""
        if self.t0 is None:
            return np.zeros((0, self.channels), np.uint8), np.zeros(0)
        last = int(math.floor((now - self.slack - self.t0) / BIN_S))   # bins < last are done
        n = max(0, last - self.next_bin)
        bins = np.zeros((n, self.channels), np.uint8)
        for i in range(n):
            for ch in self.open.pop(self.next_bin + i, ()):
                bins[i, ch] = 1
        stamps = self.t0 + (self.next_bin + np.arange(n)) * BIN_S
        self.next_bin += n
        return bins, stamps

    def drain(self):
        """Every bin up to the last event's (end of stream)."""
        if not self.open:
            return np.zeros((0, self.channels), np.uint8), np.zeros(0)
        return self.closed(self.t0 + (max(self.open) + 1.5) * BIN_S + self.slack)


def _stats(lat_s):
    if len(lat_s) == 0:
        return {"mean": None, "p50": None, "p99": None, "max": None}
    ms = np.asarray(lat_s) * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def run(args) -> int:
    """``ternedge decode-neural --lsl-in NAME``: decode live, print the summary."""
    summary = stream_decode(args, progress=not args.json)
    if args.json:
        print(json.dumps(summary))
        return 0
    lat, fed, end = summary["latency_ms"], summary["bins"], summary["end"]
    print(f"{fed} bins decoded, {summary['outputs']} velocities sent to "
          f"{summary['lsl_out']!r} (end: {end})")
    if lat["mean"] is not None:
        print(f"  latency per bin (bin timestamp to velocity push): mean {lat['mean']:.2f} ms, "
              f"median {lat['p50']:.2f}, p99 {lat['p99']:.2f}, max {lat['max']:.2f}; "
              f"decode {summary['decode_ms_per_bin']:.2f} ms per bin")
    if summary["timestamp_gaps"] or summary["non_increasing_timestamps"]:
        print(f"  upstream: {summary['timestamp_gaps']} bins missing (timestamp gaps), "
              f"{summary['non_increasing_timestamps']} non-increasing timestamps")
    return 0


def stream_decode(args, on_ready=None, progress=False) -> dict:
    """Decode the LSL stream ``args.lsl_in`` live (see the module docstring) and return the
    summary. ``on_ready``, if given, is called with the outlet's name once the outlet exists;
    ``progress`` prints the running latency to stderr about once a second."""
    import os

    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    from . import neural

    _check_args(args)
    pylsl = _import_pylsl()
    info = _resolve(pylsl, args.lsl_in, args.lsl_timeout)
    fmt = info.channel_format()
    if fmt == pylsl.cf_string:
        raise LSLStreamError(f"stream {args.lsl_in!r} carries strings; the decoder reads numeric "
                             f"spike bins (or spike events with --lsl-events)")
    if args.lsl_events:
        if info.channel_count() != 1:
            raise LSLStreamError(f"a spike-event stream has one channel (the electrode of "
                                 f"each spike); {args.lsl_in!r} has {info.channel_count()}")
        channels = args.channels
    else:
        channels = info.channel_count()
        if channels not in (96, 192):
            raise LSLStreamError(f"stream {args.lsl_in!r} has {channels} channels; the decoder "
                                 f"reads 96 or 192 (one value per electrode per 4 ms bin)")
    backend, model, meta = neural.make_backend(args.backend,
                                               neural.model_path(args.model, channels))
    if int(meta["channels"]) != channels:
        raise LSLStreamError(f"the model has {meta['channels']} channels, the stream "
                             f"{channels}")
    stream = neural.NeuralStream(backend, filter=args.filter, block=1)
    rate = info.nominal_srate()
    inlet = pylsl.StreamInlet(info, max_buflen=60, recover=False,
                              processing_flags=pylsl.proc_clocksync, as_numpy=True)
    try:
        inlet.open_stream(timeout=args.lsl_timeout)
    except pylsl.util.TimeoutError:
        raise LSLStreamError(f"stream {args.lsl_in!r} was found but did not open within "
                             f"{args.lsl_timeout:g} s; raise --lsl-timeout") from None
    try:            # measure the clock offset now: the first pull would otherwise block on it
        inlet.time_correction(timeout=args.lsl_timeout)
    except pylsl.util.TimeoutError:
        raise LSLStreamError(f"stream {args.lsl_in!r} did not answer the clock "
                             f"synchronisation within {args.lsl_timeout:g} s; raise "
                             f"--lsl-timeout") from None
    out_name = args.lsl_out or f"{args.lsl_in}-velocity"
    out_info = pylsl.StreamInfo(out_name, "Velocity", 2, rate if rate > 0 else 1 / BIN_S,
                                pylsl.cf_float32, f"ternedge-{out_name}")
    chans = out_info.desc().append_child("channels")
    for label in ("vx", "vy"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "position units per 4 ms bin")
    out_info.desc().append_child_value("filter", args.filter)
    out_info.desc().append_child_value("model", str(meta.get("topology")))
    outlet = pylsl.StreamOutlet(out_info)
    if on_ready is not None:
        on_ready(out_name)
    quiet = not progress
    if rate > 0 and abs(rate * BIN_S - 1) > 0.01:
        print(f"ternedge: warning: stream {args.lsl_in!r} runs at {rate:g} Hz; the decoder "
              f"takes each sample as one 4 ms bin (250 Hz)", file=sys.stderr, flush=True)
    if not quiet:
        print(f"[{backend.name}] {meta.get('topology')} on LSL stream {args.lsl_in!r} "
              f"({channels} channels{', spike events' if args.lsl_events else ''}), filter "
              f"{args.filter}; velocity on {out_name!r}", file=sys.stderr, flush=True)

    binner = _EventBinner(channels, args.lsl_event_slack) if args.lsl_events else None
    arrivals, stamps = {}, {}          # bin index -> local arrival time / timestamp (pending)
    latencies, processing, decode_s = [], [], []
    fed = emitted = gaps = non_increasing = 0
    last_ts = None
    last_data = pylsl.local_clock()
    window_lat, next_report = [], time.monotonic() + 1.0
    end = None

    def emit(first, out, now):
        nonlocal emitted
        if len(out) == 0:
            return
        if first != emitted:
            raise AssertionError(f"stream emitted bin {first}, expected {emitted}")
        ts = [stamps.pop(first + i) for i in range(len(out))]
        outlet.push_chunk(np.asarray(out, np.float32), ts)
        for i, t in enumerate(ts):
            lat = now - t
            latencies.append(lat)
            window_lat.append(lat)
            processing.append(now - arrivals.pop(first + i))
        emitted += len(out)

    def feed(bins, ts, arrived):
        nonlocal fed, gaps, non_increasing, last_ts
        if args.max_bins is not None:
            bins, ts = bins[:args.max_bins - fed], ts[:args.max_bins - fed]
        if len(bins) == 0:
            return
        if not np.isfinite(bins).all() or (bins < 0).any():
            raise LSLStreamError(f"stream {args.lsl_in!r} sent a negative or non-finite spike "
                                 f"value; bins hold spike counts or 0/1 per channel")
        if rate > 0 and not args.lsl_events:
            d = np.diff(np.concatenate([[last_ts], ts]) if last_ts is not None else ts)
            gaps += int(np.maximum(np.round(d * rate) - 1, 0)[d * rate > 1.5].sum())
            non_increasing += int((d <= 0).sum())
        last_ts = ts[-1]
        for i in range(len(bins)):
            arrivals[fed + i] = arrived
            stamps[fed + i] = float(ts[i])
        start = time.perf_counter()
        for i in range(len(bins)):                         # bin by bin
            stream.feed(fed + i, (bins[i] > 0).astype(np.uint8))
        decode_s.append((time.perf_counter() - start) / len(bins))
        fed += len(bins)
        emit(*stream.poll(), pylsl.local_clock())

    try:
        while end is None:
            wait = min(0.05, args.lsl_event_slack / 2) if binner else 0.1
            try:
                # block for one sample (pull_chunk with a timeout would wait for a full
                # chunk), then take whatever else is there
                sample, t_first = inlet.pull_sample(timeout=wait)
                data, ts = inlet.pull_chunk(timeout=0.0, max_samples=4096)
            except pylsl.util.LostError:
                end = "stream lost"
                sample, t_first, data, ts = None, None, None, []
            now = pylsl.local_clock()
            if t_first is not None:
                width = np.size(sample)
                data = np.concatenate([np.asarray(sample, np.float64).reshape(1, width),
                                       np.asarray(data, np.float64).reshape(len(ts), width)])
                ts = np.concatenate([[t_first], np.asarray(ts, np.float64)])
            if len(ts):
                last_data = now
                if binner:
                    binner.add(data, np.asarray(ts))
                else:
                    feed(data, np.asarray(ts), now)
            if binner:
                bins, bts = binner.closed(now)
                if len(bins):
                    feed(bins.astype(np.float64), bts, now)
            if args.max_bins is not None and fed >= args.max_bins:
                end = "max-bins"
            elif end is None and now - last_data > args.lsl_timeout:
                end = "idle"
            if not quiet and time.monotonic() >= next_report and window_lat:
                ms = np.asarray(window_lat) * 1e3
                print(f"  bins {fed}: latency median {np.median(ms):.1f} ms, max "
                      f"{ms.max():.1f} ms over the last {len(ms)}", file=sys.stderr, flush=True)
                window_lat, next_report = [], time.monotonic() + 1.0
    except KeyboardInterrupt:
        end = "interrupted"
    if binner and end != "max-bins":
        bins, bts = binner.drain()
        feed(bins.astype(np.float64), bts, pylsl.local_clock())
    emit(*stream.flush(), pylsl.local_clock())
    # let the last samples leave before the outlet closes (its sends are asynchronous)
    time.sleep(0.5)
    outlet = None
    inlet.close_stream()
    summary = {"lsl_in": args.lsl_in, "lsl_out": out_name, "channels": channels,
               "events": bool(args.lsl_events), "nominal_rate_hz": rate,
               "model": str(meta.get("topology")), "backend": backend.name,
               "filter": args.filter, "bins": fed, "outputs": emitted, "end": end,
               "latency_ms": _stats(latencies), "processing_ms": _stats(processing),
               "decode_ms_per_bin": float(np.mean(decode_s) * 1e3) if decode_s else None,
               "timestamp_gaps": gaps, "non_increasing_timestamps": non_increasing}
    return summary
