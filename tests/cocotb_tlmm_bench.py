# SPDX-License-Identifier: BSD-3-Clause
"""cocotb bench for ``rtl.tlmm.Engine`` (run through ``tests/test_cocotb_tlmm.py``).

Driver / monitor / model / scoreboard, the cocotb examples' way:

- one driver per input stream (job, weights, activations) applying beats at the falling edge
  with random valid gaps; a beat is taken when ``valid & ready`` one nanosecond later (the
  value at the next rising edge, since inputs only change at falling edges);
- a monitor on ``results`` with random back-pressure, time-stamping every handshake;
- the model: ``golden.tlmm.tlmm`` (and ``int_matmul``), checked by the scoreboard with
  ``np.testing.assert_array_equal``; for stall-free runs, ``Engine.cycles`` must equal the
  measured count.

Configured by environment (set by the runner): TLMM_G, TLMM_T, TLMM_N, TLMM_MAX_K, TLMM_MAX_N,
TLMM_MAX_TOKENS, TLMM_SEED, TLMM_JOBS, TLMM_P (valid/ready probability; 1 = no stalls).
"""

import os
import warnings

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from ternedge.golden import tlmm as golden
from ternedge.golden.config import AcceleratorConfig
from ternedge.rtl import tlmm

# The engine object is only used for its job layout and cycle model, never elaborated here.
warnings.filterwarnings("ignore", message=".*created but never used")


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"{name} is not set; run this bench through tests/test_cocotb_tlmm.py")
    return value


def _pack(values, width):
    out, mask = 0, (1 << width) - 1
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def _unpack_signed(word, width, count):
    vals = [(word >> (i * width)) & ((1 << width) - 1) for i in range(count)]
    return [v - (1 << width) if v >> (width - 1) else v for v in vals]


class Geometry:
    """The engine under test, rebuilt from the environment for its job layout and ``cycles``."""

    def __init__(self):
        self.config = AcceleratorConfig(group_size=int(_env("TLMM_G")),
                                        tables_per_step=int(_env("TLMM_T")),
                                        cols_per_cycle=int(_env("TLMM_N")))
        self.max_k = int(_env("TLMM_MAX_K"))
        self.max_n = int(_env("TLMM_MAX_N"))
        self.max_tokens = int(_env("TLMM_MAX_TOKENS"))
        self.engine = tlmm.Engine(config=self.config, max_k=self.max_k, max_n=self.max_n,
                                  max_tokens=self.max_tokens)

    def job_word(self, m, k, n):
        layout = self.engine.job.payload.shape()
        return layout.const(self.engine.job_fields(m, k, n)).as_bits()

    def cycles(self, m, k, n):
        return self.engine.cycles(m, k, n)


def make_job(geo, rng, m, k, n):
    """Stimulus beats and the model's expected (M, N) result for one random job."""
    c = geo.config
    g, t, nc = c.group_size, c.tables_per_step, c.cols_per_cycle
    b = golden.index_bits(g)
    acts = rng.integers(-128, 128, size=(m, k), dtype=np.int64)
    w = rng.integers(-1, 2, size=(n, k), dtype=np.int64)
    k_steps, n_blocks = -(-k // c.k_per_step), -(-n // nc)
    enc = golden.encode_weights(w, g)
    idx = np.zeros((n_blocks * nc, k_steps * t), dtype=np.int64)
    idx[:n, :enc.shape[1]] = enc
    entries = [_pack(idx[col, s * t:(s + 1) * t], b)
               for s in range(k_steps) for col in range(n_blocks * nc)]
    padded = rng.integers(-128, 128, size=(m, k_steps * c.k_per_step), dtype=np.int64)
    padded[:, :k] = acts
    acts_beats = [_pack(padded[r, s * c.k_per_step:(s + 1) * c.k_per_step], 8)
                  for r in range(m) for s in range(k_steps)]
    expected = golden.tlmm(acts, enc, g)
    np.testing.assert_array_equal(expected, golden.int_matmul(acts, w))
    return {"shape": (m, k, n), "job": geo.job_word(m, k, n), "entries": entries,
            "acts": acts_beats, "expected": expected, "beats": m * n_blocks}


class Ticker:
    """Counts rising edges, so handshakes can be time-stamped in cycles."""

    def __init__(self, clk):
        self.clk, self.now = clk, 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1


class StreamDriver:
    """Drives ``<name>__valid/__payload`` of an input stream with random valid gaps."""

    def __init__(self, dut, name, rng, p_valid, ticker):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_valid, self.ticker = rng, p_valid, ticker
        self.name = name
        self.stamps = []

    async def send(self, beats):
        i = 0
        while i < len(beats):
            await FallingEdge(self.clk)
            offer = self.p_valid >= 1 or self.rng.random() < self.p_valid
            self.valid.value = int(offer)
            if offer:
                self.payload.value = beats[i]
            await Timer(1, "ns")
            assert self.ready.value.is_resolvable, f"{self.name}__ready is {self.ready.value}"
            if offer and int(self.ready.value):
                self.stamps.append(self.ticker.now)
                i += 1
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamMonitor:
    """Takes ``results`` beats with random back-pressure, time-stamping each handshake."""

    def __init__(self, dut, name, rng, p_ready, ticker):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_ready, self.ticker = rng, p_ready, ticker

    async def receive(self, count):
        beats, stamps = [], []
        while len(beats) < count:
            await FallingEdge(self.clk)
            take = self.p_ready >= 1 or self.rng.random() < self.p_ready
            self.ready.value = int(take)
            await Timer(1, "ns")
            if take and int(self.valid.value):
                beats.append(self.payload.value.to_unsigned())
                stamps.append(self.ticker.now)
        await FallingEdge(self.clk)
        self.ready.value = 0
        return beats, stamps


class Scoreboard:
    def __init__(self, geo, seed):
        self.geo, self.seed, self.checked = geo, seed, 0

    def check(self, job, beats, index):
        c = self.geo.config
        m, _, n = job["shape"]
        values = [v for beat in beats for v in _unpack_signed(beat, c.acc_width, c.cols_per_cycle)]
        got = np.array(values, dtype=np.int64).reshape(m, -1)
        np.testing.assert_array_equal(got[:, :n], job["expected"],
                                      err_msg=f"seed={self.seed} job={index} shape={job['shape']}")
        assert not got[:, n:].any(), f"seed={self.seed} job={index}: padding columns not zero"
        self.checked += 1


async def _setup(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ticker = Ticker(dut.clk)
    cocotb.start_soon(ticker.run())
    for name in ("job", "weights", "activations"):
        getattr(dut, f"{name}__valid").value = 0
    dut.results__ready.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return ticker


def _random_jobs(geo, rng, count):
    jobs = []
    for _ in range(count):
        m = int(rng.integers(1, geo.max_tokens + 1))
        k = int(rng.integers(1, geo.max_k + 1))
        n = int(rng.integers(1, geo.max_n + 1))
        jobs.append(make_job(geo, rng, m, k, n))
    return jobs


async def _run_jobs(dut, geo, rng, jobs, p, ticker):
    drivers = {name: StreamDriver(dut, name, rng, p, ticker)
               for name in ("job", "weights", "activations")}
    monitor = StreamMonitor(dut, "results", rng, p, ticker)
    tasks = [
        cocotb.start_soon(drivers["job"].send([j["job"] for j in jobs])),
        cocotb.start_soon(drivers["weights"].send([e for j in jobs for e in j["entries"]])),
        cocotb.start_soon(drivers["activations"].send([a for j in jobs for a in j["acts"]])),
    ]
    beats, stamps = await monitor.receive(sum(j["beats"] for j in jobs))
    for task in tasks:
        await task
    return beats, stamps, drivers["job"].stamps


@cocotb.test()
async def random_jobs_with_stalls(dut):
    """Random shapes (K, N not multiples of the geometry), random valid/ready stalls."""
    seed = int(_env("TLMM_SEED"))
    rng = np.random.default_rng(seed)
    dut._log.info(f"seed={seed}")
    geo = Geometry()
    ticker = await _setup(dut)
    jobs = _random_jobs(geo, rng, int(_env("TLMM_JOBS", "3")))
    beats, _, _ = await _run_jobs(dut, geo, rng, jobs, float(_env("TLMM_P", "0.7")), ticker)
    board = Scoreboard(geo, seed)
    offset = 0
    for index, job in enumerate(jobs):
        board.check(job, beats[offset:offset + job["beats"]], index)
        offset += job["beats"]
    assert board.checked == len(jobs)


@cocotb.test()
async def stall_free_cycles_exact(dut):
    """One job at a time with no stalls: ``Engine.cycles`` equals the measured count."""
    seed = int(_env("TLMM_SEED")) + 1
    rng = np.random.default_rng(seed)
    geo = Geometry()
    ticker = await _setup(dut)
    board = Scoreboard(geo, seed)
    for index, job in enumerate(_random_jobs(geo, rng, 2)):
        beats, stamps, job_stamps = await _run_jobs(dut, geo, rng, [job], 1.0, ticker)
        board.check(job, beats, index)
        measured = stamps[-1] - job_stamps[0]
        assert geo.cycles(*job["shape"]) == measured, \
            f"seed={seed} shape={job['shape']}: model {geo.cycles(*job['shape'])} != {measured}"
