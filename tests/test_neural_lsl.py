# SPDX-License-Identifier: BSD-3-Clause
"""Live decoding over Lab Streaming Layer on localhost (host/neural_lsl.py): a synthetic outlet
feeds ``decode-neural --lsl-in`` bin by bin at the real-time rate, an inlet checks every
velocity (no drops, no duplicates, the offline stream's values, bounded latency); a stream that
is not there ends in one line of error."""

import os
import threading
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("pylsl")

from ternedge.host import cli, neural, neural_lsl  # noqa: E402

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
# before any other LSL call of this process: quiet liblsl, resolve on this machine only
pylsl = neural_lsl.configure(local_only=True)

#: Stated latency bound per bin, from the bin's push at the synthetic outlet to its velocity's
#: arrival at the test's inlet, beyond the filter's own look-ahead. Generous: the CI machine
#: has 2 loaded cores (measured on it: a few ms typical, under 100 ms worst).
LATENCY_BOUND_S = 1.0
BINS = 250                                             # 1 s of 4 ms bins


def unique(name):
    return f"ternedge-test-{name}-{uuid.uuid4().hex[:8]}"


def args_for(*argv):
    return cli._parser().parse_args(["decode-neural", *argv])


def start_decoder(args):
    """``stream_decode`` on a thread; returns (thread, result dict, ready event)."""
    result, ready = {}, threading.Event()

    def target():
        try:
            result["summary"] = neural_lsl.stream_decode(
                args, on_ready=lambda name: (result.setdefault("out", name), ready.set()))
        except Exception as exc:                         # reported by the test thread
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result, ready


def open_velocity_inlet(result, ready):
    assert ready.wait(60), "decoder never opened its outlet"
    if "error" in result:
        raise result["error"]
    found = pylsl.resolve_byprop("name", result["out"], timeout=30)
    assert found, "velocity outlet not found"
    inlet = pylsl.StreamInlet(found[0], as_numpy=True)
    inlet.open_stream(timeout=30)
    return inlet


class Receiver:
    """The test's velocity inlet: every sample with its arrival time (``local_clock``)."""

    def __init__(self, inlet):
        self.inlet, self.vals, self.stamps, self.arrived = inlet, [], [], []

    def poll(self, timeout=0.0):
        if timeout:                                     # wait for one, then take the rest
            sample, ts = self.inlet.pull_sample(timeout=timeout)
            if ts is not None:
                self.vals.append(np.asarray(sample).reshape(1, 2))
                self.stamps.append(ts)
                self.arrived.append(pylsl.local_clock())
        data, ts = self.inlet.pull_chunk(timeout=0.0)
        if len(ts):
            now = pylsl.local_clock()
            self.vals.append(np.asarray(data).reshape(len(ts), 2))
            self.stamps.extend(ts)
            self.arrived.extend([now] * len(ts))

    def collect(self, count, deadline_s=60):
        t_end = pylsl.local_clock() + deadline_s
        while len(self.stamps) < count and pylsl.local_clock() < t_end:
            self.poll(0.1)
        return (np.concatenate(self.vals) if self.vals else np.zeros((0, 2)),
                np.array(self.stamps), np.array(self.arrived))


def expected_velocity(bins, filter):
    backend, _, _ = neural.make_backend("golden", neural.model_path("snn_streaming", 96))
    stream = neural.NeuralStream(backend, filter=filter, block=64)
    stream.feed(0, bins)
    first, out = stream.poll()
    _, tail = stream.flush()
    return np.concatenate([out, tail]).astype(np.float32)


@pytest.mark.parametrize("filter,lookahead", [("none", 0), ("block-amortized", 31)])
def test_loopback_every_bin_once_bounded_latency(filter, lookahead):
    rng = np.random.default_rng(50)
    print("seed=50")
    bins = (rng.random((BINS, 96)) < 0.06).astype(np.int8)
    name = unique(filter)
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Spikes", 96, 1 / neural_lsl.BIN_S,
                                                 pylsl.cf_int8, name))
    args = args_for("--lsl-in", name, "--filter", filter, "--max-bins", str(BINS),
                    "--lsl-timeout", "30", "--json")
    thread, result, ready = start_decoder(args)
    rx = Receiver(open_velocity_inlet(result, ready))
    assert outlet.wait_for_consumers(30)
    t0 = pylsl.local_clock() + 0.05
    for k in range(BINS):                               # real time: one bin per 4 ms
        t = t0 + k * neural_lsl.BIN_S
        while pylsl.local_clock() < t:                  # receive while waiting for the bin
            rx.poll()
            time.sleep(0.0005)
        outlet.push_sample(bins[k], t)
    vals, stamps, arrived = rx.collect(BINS)
    thread.join(60)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    # every bin exactly once, in order: the stamps are the bins' own
    index = np.round((stamps - t0) / neural_lsl.BIN_S).astype(int)
    np.testing.assert_array_equal(index, np.arange(BINS))
    assert np.max(np.abs(stamps - (t0 + index * neural_lsl.BIN_S))) < 1e-3
    np.testing.assert_array_equal(vals, expected_velocity(bins, filter))
    latency = arrived - stamps - lookahead * neural_lsl.BIN_S
    print(f"latency beyond look-ahead: median {np.median(latency) * 1e3:.1f} ms, max "
          f"{latency.max() * 1e3:.1f} ms; decoder: {summary['latency_ms']}")
    # the tail of a stream (flushed at max-bins) waits for nothing, so only bound the rest
    assert latency[:BINS - lookahead].max() < LATENCY_BOUND_S
    assert summary["bins"] == summary["outputs"] == BINS and summary["end"] == "max-bins"
    assert summary["timestamp_gaps"] == 0 and summary["non_increasing_timestamps"] == 0
    assert summary["latency_ms"]["max"] < (LATENCY_BOUND_S + lookahead * 0.004) * 1e3


def test_spike_events_and_lost_stream():
    """Spike events (one channel: the electrode) are binned on the 4 ms grid; the decoder ends
    when the source outlet goes away."""
    rng = np.random.default_rng(51)
    print("seed=51")
    n_bins = 60
    bins = (rng.random((n_bins, 96)) < 0.05).astype(np.uint8)
    bins[0, 3] = 1                                      # the grid starts at the first event
    name = unique("events")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE,
                                                 pylsl.cf_int32, name))
    args = args_for("--lsl-in", name, "--lsl-events", "--lsl-event-slack", "2",
                    "--lsl-timeout", "30", "--json")
    thread, result, ready = start_decoder(args)
    rx = Receiver(open_velocity_inlet(result, ready))
    assert outlet.wait_for_consumers(30)
    t0 = pylsl.local_clock()
    outlet.push_sample([3], t0)                         # the first event: bin 0 starts here
    for k in range(n_bins):
        for ch in np.flatnonzero(bins[k]):
            if k or ch != 3:
                outlet.push_sample([int(ch)], t0 + (k + 0.5) * neural_lsl.BIN_S)
    time.sleep(1.0)                                     # sends are asynchronous
    outlet = None                                       # the source goes away
    vals, stamps, _ = rx.collect(n_bins)
    thread.join(60)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["end"] == "stream lost" and summary["events"]
    # bins up to the last event, then the empty bins of the silence until the source went
    # away (closed as the clock passed them): how many of those depends on the machine
    last = int(np.flatnonzero(bins.any(axis=1))[-1]) + 1
    got = summary["bins"]
    assert got >= last and summary["outputs"] == got == len(vals)
    full = np.concatenate([bins[:last], np.zeros((got - last, 96), np.uint8)])
    np.testing.assert_array_equal(vals, expected_velocity(full, "none"))
    np.testing.assert_array_equal(np.round((stamps - t0) / neural_lsl.BIN_S), np.arange(got))


def run_cli(capsys, *argv):
    code = cli.main(["decode-neural", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_stream_not_found_is_one_line(capsys):
    code, err = run_cli(capsys, "--lsl-in", unique("absent"), "--lsl-timeout", "0.5")
    assert code == 1 and len(err) == 1
    assert "no LSL stream named" in err[0] and "--lsl-timeout" in err[0]


@pytest.mark.parametrize("argv,message", [
    (["--lsl-in", "x", "--lsl-timeout", "0"], "--lsl-timeout must be a finite number in (0,"),
    (["--lsl-in", "x", "--lsl-timeout", "nan"], "--lsl-timeout must be a finite number"),
    (["--lsl-in", "x", "--lsl-timeout", "-1"], "--lsl-timeout must be a finite number"),
    (["--lsl-in", "x", "--lsl-timeout", "1e300"], "1e+06]"),
    (["--lsl-in", "x", "--lsl-event-slack", "0"], "--lsl-event-slack must be a finite number"),
    (["--lsl-in", "x", "--max-bins", "0"], "--max-bins must be"),
    (["--lsl-in", "x", "--synthetic", "0"], "not both"),
    (["--lsl-in", "x", "--backend", "rtl"], "too slow for a live stream"),
    (["--lsl-out", "y", "--synthetic", "0"], "--lsl-out needs --lsl-in"),
])
def test_bad_arguments_are_one_line(capsys, argv, message):
    code, err = run_cli(capsys, *argv)
    assert code == 1 and len(err) == 1 and message in err[0], err


def test_wrong_channel_count_is_one_line(capsys):
    name = unique("ten")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Spikes", 10, 250, pylsl.cf_int8, name))
    code, err = run_cli(capsys, "--lsl-in", name, "--lsl-timeout", "20")
    assert code == 1 and len(err) == 1 and "has 10 channels" in err[0], err
    del outlet
