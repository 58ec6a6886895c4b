# SPDX-License-Identifier: BSD-3-Clause
"""cocotb bench for the streaming units of ``rtl.quant``, ``rtl.elementwise`` and
``rtl.attention`` (run through ``tests/test_cocotb_units.py``).

One bench for all of them, the unit picked by the environment; driver / monitor / model /
scoreboard as in ``cocotb_tlmm_bench.py``:

- one driver per input stream applying beats at the falling edge with random valid gaps; a
  beat is taken when ``valid & ready`` one nanosecond later (the value at the next rising
  edge, since inputs only change at falling edges);
- one monitor per output stream with random ready back-pressure, time-stamping every
  handshake;
- the model: the unit's golden function (``golden.quant``, ``golden.ops``,
  ``golden.attention``), checked by the scoreboard with ``np.testing.assert_array_equal``,
  together with the ``last`` flags of token streams;
- stall-free runs, one job at a time: the unit's ``cycles(...)`` must equal the measured count
  from the cycle accepting the job's first beat on the unit's first input (``x``, ``scale``,
  ``i`` or ``job``) to the cycle accepting its last output beat, both included (the
  definition in each unit's docstring).

The stimulus generators and golden wrappers are those of the Amaranth-simulator tests
(``test_rtl_quant.py``, ``test_rtl_elementwise.py``, ``test_rtl_attention.py``), so both
simulators see the same corner cases (int32 extremes, zero tokens, operand clipping, ties).

Configured by environment (set by the runner): UNIT (quantizer, dequantizer, rmsnorm, rope,
pointwise, decode, prefill), UNIT_PARAMS (JSON keyword arguments of the unit's constructor, the
same as the Verilog was built with), SEED, P_VALID and P_READY (stall probabilities of the
random run; 1 = no stalls).
"""

import json
import os
import warnings
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer
from rtl_streams import beats, pack, unpack_signed
from test_rtl_attention import prefill_job, random_job
from test_rtl_attention import reference as attention_reference
from test_rtl_elementwise import pointwise_job, pointwise_reference, rms_job, rope_job
from test_rtl_quant import random_dequant_job, random_tokens

from ternedge.golden import ops
from ternedge.golden import quant as golden_quant
from ternedge.rtl import attention, elementwise, quant

# The unit object is only used for its layouts and cycle model, never elaborated here.
warnings.filterwarnings("ignore", message=".*created but never used")

UNITS = {
    "quantizer": quant.Quantizer,
    "dequantizer": quant.Dequantizer,
    "rmsnorm": elementwise.RMSNorm,
    "rope": elementwise.RoPE,
    "pointwise": elementwise.Pointwise,
    "decode": attention.DecodeUnit,
    "prefill": attention.PrefillUnit,
}


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"{name} is not set; run this bench through tests/test_cocotb_units.py")
    return value


def make_unit(name, params):
    return UNITS[name](**params)


# -- jobs: stimulus beats per input stream, beat counts per output stream, model check ------

@dataclass
class Job:
    """One run's stimulus and expectations.

    ``inputs``: beats per input stream (driven concurrently); ``outputs``: beats expected per
    output stream; ``check(words, err)``: the scoreboard, given the received words per output
    stream; ``start``: the input stream whose first handshake starts the cycle count;
    ``cycles``: the unit's ``cycles(...)`` for this job (stall-free runs).
    """
    inputs: dict
    outputs: dict
    check: object
    start: str
    cycles: int = None
    label: str = ""


def _lasts(words, bit, beats_per_token, tokens):
    got = [(w >> bit) & 1 for w in words]
    return got == ([0] * (beats_per_token - 1) + [1]) * tokens


def _unpack_rows(words, width, lanes, rows):
    return np.array([unpack_signed(w, width, lanes) for w in words],
                    dtype=np.int64).reshape(rows, -1)


def quantizer_job(unit, rng, tokens, k):
    lanes = unit.lanes
    x = random_tokens(rng, tokens, k)
    n_beats = -(-k // lanes)
    q_ref, amax_ref = golden_quant.quantize_activations(x)

    def check(words, err):
        assert _lasts(words["q"], 8 * lanes, n_beats, tokens), f"{err}: q last flags"
        q = _unpack_rows(words["q"], 8, lanes, tokens)
        np.testing.assert_array_equal(q[:, :k], q_ref, err_msg=f"{err}: q")
        assert not q[:, k:].any(), f"{err}: padding lanes of q not zero"
        np.testing.assert_array_equal(words["amax"], amax_ref, err_msg=f"{err}: amax")

    return Job(inputs={"x": [b for token in x for b in beats(token, lanes, 32)]},
               outputs={"q": tokens * n_beats, "amax": tokens}, check=check, start="x",
               cycles=unit.cycles(tokens, k), label=f"tokens={tokens} k={k}")


def dequantizer_job(unit, rng, tokens, n):
    lanes, width = unit.lanes, unit.acc_width
    acc, amax = random_dequant_job(rng, tokens, n, width)
    # a weight Scale per token (the scale beat carries it), spanning small and large layers
    scales = [golden_quant.weight_scale(float(s))
              for s in np.exp(rng.uniform(np.log(1e-3), np.log(1e3), tokens))]
    scales[:3] = [golden_quant.weight_scale(s) for s in (0.0123, 1.7, 350.0)][:tokens]
    layout = unit.scale.payload.shape()
    scale_beats = [layout.const({"amax": int(a), "w_m": int(m), "w_e": int(e)}).as_bits()
                   for a, (m, e) in zip(amax, scales, strict=True)]
    y_ref = np.concatenate([golden_quant.dequantize(acc[t:t + 1], amax[t:t + 1], scales[t])
                            for t in range(tokens)])
    n_beats = -(-n // lanes)

    def check(words, err):
        assert _lasts(words["y"], 32 * lanes, n_beats, tokens), f"{err}: y last flags"
        y = _unpack_rows(words["y"], 32, lanes, tokens)
        np.testing.assert_array_equal(y[:, :n], y_ref, err_msg=f"{err}: y")

    return Job(inputs={"scale": scale_beats,
                       "acc": [b for token in acc for b in beats(token, lanes, width)]},
               outputs={"y": tokens * n_beats}, check=check, start="scale",
               cycles=unit.cycles(tokens, n), label=f"tokens={tokens} n={n}")


def rmsnorm_job(unit, rng, tokens, h):
    lanes = unit.lanes
    x, gamma = rms_job(rng, tokens, h)
    y_ref = ops.rmsnorm(x, gamma, unit.eps)
    n_beats = h // lanes
    gamma_beats = [pack(gamma[i * lanes:(i + 1) * lanes], 32) for i in range(n_beats)]

    def check(words, err):
        assert _lasts(words["y"], 32 * lanes, n_beats, tokens), f"{err}: y last flags"
        np.testing.assert_array_equal(_unpack_rows(words["y"], 32, lanes, tokens), y_ref,
                                      err_msg=f"{err}: y")

    return Job(inputs={"x": [b for token in x for b in beats(token, lanes, 32)],
                       "gamma": gamma_beats * tokens},
               outputs={"y": tokens * n_beats}, check=check, start="x",
               cycles=unit.cycles(tokens, h), label=f"tokens={tokens} h={h}")


def rope_job_(unit, rng, tokens, heads):
    lanes, d = unit.lanes, unit.head_dim
    half = d // 2
    x, positions, cos, sin = rope_job(rng, tokens, heads, d)
    y_ref = ops.rope(x, positions, cos, sin)
    flat = x.reshape(-1, d)
    x_beats = [pack(head[i * lanes:(i + 1) * lanes], 32) for head in flat
               for i in range(d // lanes)]
    table_beats = []
    for t in range(tokens):
        row_c, row_s = cos[positions[t]], sin[positions[t]]
        for _ in range(heads):
            table_beats += [pack(row_c[i * lanes:(i + 1) * lanes], 18)
                            | (pack(row_s[i * lanes:(i + 1) * lanes], 18) << (18 * lanes))
                            for i in range(half // lanes)]

    def check(words, err):
        y = _unpack_rows(words["y"], 32, lanes, flat.shape[0]).reshape(x.shape)
        np.testing.assert_array_equal(y, y_ref, err_msg=f"{err}: y")

    return Job(inputs={"x": x_beats, "table": table_beats}, outputs={"y": flat.size // lanes},
               check=check, start="x", cycles=unit.cycles(tokens * heads),
               label=f"tokens={tokens} heads={heads}")


def pointwise_job_(unit, rng, n_beats):
    lanes = unit.lanes
    assert n_beats >= 3, "pointwise_job puts the three ops in the first three beats"
    ops_per_beat, a, b = pointwise_job(rng, n_beats, lanes)
    y_ref = pointwise_reference(ops_per_beat, a, b, lanes)
    layout = unit.i.payload.shape()
    words = [layout.const({"op": op,
                           "a": [int(v) for v in a[i * lanes:(i + 1) * lanes]],
                           "b": [int(v) for v in b[i * lanes:(i + 1) * lanes]]}).as_bits()
             for i, op in enumerate(ops_per_beat)]

    def check(got, err):
        np.testing.assert_array_equal(_unpack_rows(got["o"], 32, lanes, 1)[0], y_ref,
                                      err_msg=f"{err}: o ops={[op.name for op in ops_per_beat]}")

    return Job(inputs={"i": words}, outputs={"o": n_beats}, check=check, start="i",
               cycles=unit.cycles(n_beats), label=f"beats={n_beats}")


def attention_jobs(unit, jobs):
    """One Job streaming ``jobs`` ((q, k, v) triples, q of shape (n, D) or (D,)) back to back."""
    lanes, d = unit.lanes, unit.head_dim
    prefill = isinstance(unit, attention.PrefillUnit)
    layout = unit.job.payload.shape()

    def rows(matrix):
        return [pack(row[i * lanes:(i + 1) * lanes], 32) for row in matrix.reshape(-1, d)
                for i in range(d // lanes)]

    job_beats = []
    for q, k, _ in jobs:
        fields = {"keys": k.shape[0]}
        if prefill:
            fields["queries"] = q.reshape(-1, d).shape[0]
        job_beats.append(layout.const(fields).as_bits())
    rows_out = sum(q.reshape(-1, d).shape[0] for q, _, _ in jobs)
    expected = np.concatenate([attention_reference(*job) for job in jobs])
    shapes = [(q.reshape(-1, d).shape[0], k.shape[0]) for q, k, _ in jobs]

    def check(words, err):
        o = _unpack_rows(words["o"], 32, lanes, rows_out)
        np.testing.assert_array_equal(o, expected, err_msg=f"{err}: o (queries, keys)={shapes}")

    if len(jobs) == 1:
        n, s = shapes[0]
        cycles = unit.cycles(n, s) if prefill else unit.cycles(s)
    else:
        cycles = None
    return Job(inputs={"job": job_beats, "q": [w for q, _, _ in jobs for w in rows(q)],
                       "k": [w for _, k, _ in jobs for w in rows(k)],
                       "v": [w for _, _, v in jobs for w in rows(v)]},
               outputs={"o": rows_out * (d // lanes)}, check=check, start="job",
               cycles=cycles, label=f"(queries, keys)={shapes}")


def random_run(name, unit, rng):
    """The random-stall run: several tokens / heads / jobs back to back."""
    if name == "quantizer":
        return quantizer_job(unit, rng, 5, unit.max_k - 2)             # padded final beat
    if name == "dequantizer":
        return dequantizer_job(unit, rng, 5, 4 * unit.lanes - 1)
    if name == "rmsnorm":
        return rmsnorm_job(unit, rng, 4, unit.max_h - unit.lanes)
    if name == "rope":
        return rope_job_(unit, rng, 3, 2)
    if name == "pointwise":
        return pointwise_job_(unit, rng, 30)
    d, top = unit.head_dim, unit.max_keys
    if name == "decode":
        return attention_jobs(unit, [random_job(rng, keys, d, spread)
                                     for keys, spread in ((5, 18), (1, 20), (top, 14), (3, 22))])
    n = unit.queries
    return attention_jobs(unit, [prefill_job(rng, q, keys, d, spread)
                                 for q, keys, spread in ((n, 5, 18), (1, 1, 20), (2, 2, 16),
                                                         (n, top, 22))])


def stall_free_runs(name, unit, rng):
    """Single jobs for the cycle-count check (each run on its own, the unit idle in between)."""
    if name == "quantizer":
        return [quantizer_job(unit, rng, 1, 2 * unit.lanes),
                quantizer_job(unit, rng, 3, unit.max_k)]
    if name == "dequantizer":
        return [dequantizer_job(unit, rng, 1, unit.lanes),
                dequantizer_job(unit, rng, 3, 4 * unit.lanes)]
    if name == "rmsnorm":
        return [rmsnorm_job(unit, rng, 2, 2 * unit.lanes), rmsnorm_job(unit, rng, 1, unit.max_h)]
    if name == "rope":
        return [rope_job_(unit, rng, 1, 1), rope_job_(unit, rng, 2, 2)]
    if name == "pointwise":
        return [pointwise_job_(unit, rng, 3), pointwise_job_(unit, rng, 6)]
    d, top = unit.head_dim, unit.max_keys
    if name == "decode":
        return [attention_jobs(unit, [random_job(rng, keys, d, 17)]) for keys in (1, top)]
    return [attention_jobs(unit, [prefill_job(rng, n, keys, d, 17)])
            for n, keys in ((1, 1), (2, 2), (unit.queries, top))]


# -- transactors ------------------------------------------------------------------------------

class Ticker:
    """Counts rising edges, so handshakes can be time-stamped in cycles."""

    def __init__(self, clk):
        self.clk, self.now = clk, 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1


def _ports(dut, name):
    return (getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
            getattr(dut, f"{name}__payload"))


class StreamDriver:
    """Drives ``<name>__valid/__payload`` of an input stream with random valid gaps."""

    def __init__(self, dut, name, rng, p_valid, ticker):
        self.clk, self.name = dut.clk, name
        self.valid, self.ready, self.payload = _ports(dut, name)
        self.rng, self.p_valid, self.ticker = rng, p_valid, ticker
        self.stamps = []

    async def send(self, words):
        i = 0
        while i < len(words):
            await FallingEdge(self.clk)
            offer = self.p_valid >= 1 or self.rng.random() < self.p_valid
            self.valid.value = int(offer)
            if offer:
                self.payload.value = words[i]
            await Timer(1, "ns")
            assert self.ready.value.is_resolvable, f"{self.name}__ready is {self.ready.value}"
            if offer and int(self.ready.value):
                self.stamps.append(self.ticker.now)
                i += 1
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamMonitor:
    """Takes beats of an output stream with random back-pressure, time-stamping each one."""

    def __init__(self, dut, name, rng, p_ready, ticker):
        self.clk, self.name = dut.clk, name
        self.valid, self.ready, self.payload = _ports(dut, name)
        self.rng, self.p_ready, self.ticker = rng, p_ready, ticker
        self.words, self.stamps = [], []

    async def receive(self, count):
        while len(self.words) < count:
            await FallingEdge(self.clk)
            take = self.p_ready >= 1 or self.rng.random() < self.p_ready
            self.ready.value = int(take)
            await Timer(1, "ns")
            assert self.valid.value.is_resolvable, f"{self.name}__valid is {self.valid.value}"
            if take and int(self.valid.value):
                self.words.append(self.payload.value.to_unsigned())
                self.stamps.append(self.ticker.now)
        await FallingEdge(self.clk)
        self.ready.value = 0


class Bench:
    def __init__(self, dut, seed_offset):
        self.dut = dut
        self.name = _env("UNIT")
        self.params = json.loads(_env("UNIT_PARAMS", "{}"))
        self.unit = make_unit(self.name, self.params)
        self.seed = int(_env("SEED")) + seed_offset
        self.rng = np.random.default_rng(self.seed)
        self.inputs = [n for n, _ in self._streams(is_input=True)]
        self.outputs = [n for n, _ in self._streams(is_input=False)]
        dut._log.info(f"unit={self.name} params={self.params} seed={self.seed}")

    def _streams(self, is_input):
        from amaranth.lib.wiring import Flow
        for name, member in self.unit.signature.members.items():
            if member.is_port:
                continue
            if (member.flow == Flow.In) == is_input:
                yield name, member

    async def setup(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ticker = Ticker(dut.clk)
        cocotb.start_soon(self.ticker.run())
        for name in self.inputs:
            getattr(dut, f"{name}__valid").value = 0
        for name in self.outputs:
            getattr(dut, f"{name}__ready").value = 0
        dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def run(self, job, p_valid, p_ready):
        """Drive ``job``, check it; return (first handshake on ``job.start``, last output)."""
        assert set(job.inputs) == set(self.inputs), (job.inputs.keys(), self.inputs)
        assert set(job.outputs) == set(self.outputs), (job.outputs.keys(), self.outputs)
        drivers = {n: StreamDriver(self.dut, n, self.rng, p_valid, self.ticker)
                   for n in self.inputs}
        monitors = {n: StreamMonitor(self.dut, n, self.rng, p_ready, self.ticker)
                    for n in self.outputs}
        tasks = [cocotb.start_soon(d.send(job.inputs[n])) for n, d in drivers.items()]
        tasks += [cocotb.start_soon(m.receive(job.outputs[n])) for n, m in monitors.items()]
        for task in tasks:
            await task
        err = f"unit={self.name} seed={self.seed} {job.label}"
        job.check({n: m.words for n, m in monitors.items()}, err)
        return drivers[job.start].stamps[0], max(m.stamps[-1] for m in monitors.values())

    async def expect_quiet(self, cycles=8):
        """No output offers a beat beyond the expected ones."""
        for name in self.outputs:
            getattr(self.dut, f"{name}__ready").value = 0
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
            for name in self.outputs:
                valid = getattr(self.dut, f"{name}__valid").value
                assert valid.is_resolvable and not int(valid), \
                    f"unit={self.name} seed={self.seed}: extra beat on {name}"


@cocotb.test(timeout_time=1, timeout_unit="ms")      # 100k cycles; a run takes < 1k
async def random_stalls(dut):
    """Several tokens / heads / jobs back to back under random valid gaps and ready stalls."""
    bench = Bench(dut, 0)
    await bench.setup()
    job = random_run(bench.name, bench.unit, bench.rng)
    await bench.run(job, float(_env("P_VALID", "0.6")), float(_env("P_READY", "0.5")))
    await bench.expect_quiet()


@cocotb.test(timeout_time=1, timeout_unit="ms")      # 100k cycles; a run takes < 1k
async def stall_free_cycles_exact(dut):
    """One job at a time with no stalls: the unit's ``cycles(...)`` equals the measured count
    (first beat on the start stream to last output beat, both included)."""
    bench = Bench(dut, 1)
    await bench.setup()
    for job in stall_free_runs(bench.name, bench.unit, bench.rng):
        first, last = await bench.run(job, 1.0, 1.0)
        measured = last - first + 1
        assert job.cycles == measured, \
            f"unit={bench.name} seed={bench.seed} {job.label}: cycles() {job.cycles} != " \
            f"measured {measured}"
        dut._log.info(f"{job.label}: {measured} cycles, as cycles() says")
        await bench.expect_quiet(2)
    await bench.expect_quiet()
