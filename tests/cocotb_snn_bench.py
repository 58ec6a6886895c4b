# SPDX-License-Identifier: BSD-3-Clause
"""cocotb bench for rtl.snn.Decoder and the rtl.bessel filters (driver / monitor / golden
model / checker), run by tests/test_snn_cocotb.py through cocotb_tools.runner."""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer
from cocotb.types import LogicArray

from ternedge.golden import bessel as gbessel
from ternedge.golden import snn as golden

PERIOD_NS = 10


def bench_network(seed):
    """The random network the pytest side converted to Verilog (same seed, same network)."""
    rng = np.random.default_rng(seed)
    sizes, resets = (12, 6, 5, 2), ("subtract", "none", "none")
    layers = []
    for (k, n), reset in zip(zip(sizes, sizes[1:], strict=False), resets, strict=False):
        layers.append(golden.Layer(
            weights=rng.integers(-127, 128, size=(n, k)),
            bias=rng.integers(-(1 << 16), 1 << 16, size=n),
            beta=int(rng.integers(0, 4097)), theta=int(rng.integers(0, 1 << 18)),
            reset=reset, frac=int(rng.integers(12, 20))))
    return golden.Network(layers)


def _signed(word, width, count):
    vals = [(word >> (i * width)) & ((1 << width) - 1) for i in range(count)]
    return [v - (1 << width) if v >> (width - 1) else v for v in vals]


def _high(signal):
    """A handshake bit as a bool (X/Z before the first clock edge count as low)."""
    return str(signal.value) == "1"


def _cycle():
    return cocotb.utils.get_sim_time("ns") // PERIOD_NS


async def _reset(dut):
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    for name in ("i_valid", "o_ready"):
        getattr(dut, PORTS[name]).value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    # the handshake outputs must be known by now; an X here means the simulator never ran
    # the combinational blocks at time 0 (Icarus with -g2012, see test_snn_cocotb.py), and the
    # bench would silently disagree with the DUT about which beats were transferred
    for name in ("i_ready", "o_valid"):
        value = str(getattr(dut, PORTS[name]).value)
        assert value in ("0", "1"), \
            f"{PORTS[name]} is {value} in reset: combinational logic not evaluated at time 0"
    dut.rst.value = 0


PORTS = {}


async def _drive(dut, beats, rng, p_valid, stamps):
    valid, payload, ready = (getattr(dut, PORTS[k]) for k in ("i_valid", "i_payload", "i_ready"))
    for beat in beats:
        while rng.random() > p_valid:
            valid.value = 0
            await FallingEdge(dut.clk)
        # a LogicArray, not an int: Icarus' VPI mangles wide integer writes
        payload.value = LogicArray.from_unsigned(int(beat), len(payload))
        valid.value = 1
        while True:
            await Timer(1, unit="ns")
            if _high(ready):
                if os.environ.get("SNN_DEBUG"):
                    dut._log.info(f"wrote {int(beat):x} read {int(payload.value):x}")
                stamps.append(_cycle())
                await FallingEdge(dut.clk)
                break
            await FallingEdge(dut.clk)
        valid.value = 0


async def _collect(dut, count, width, lanes, rng, p_ready, got, stamps):
    valid, payload, ready = (getattr(dut, PORTS[k]) for k in ("o_valid", "o_payload", "o_ready"))
    while len(got) < count:
        ready.value = int(rng.random() < p_ready)
        await Timer(1, unit="ns")
        if _high(ready) and _high(valid):
            got.append(_signed(int(payload.value), width, lanes))
            stamps.append(_cycle())
        await FallingEdge(dut.clk)
    ready.value = 0


async def _run(dut, beats, width, lanes, rng, p_valid, p_ready, outputs=None):
    t_in, t_out, got = [], [], []
    drv = cocotb.start_soon(_drive(dut, beats, rng, p_valid, t_in))
    count = len(beats) if outputs is None else outputs
    await _collect(dut, count, width, lanes, rng, p_ready, got, t_out)
    await drv
    return np.array(got, dtype=np.int64), np.array(t_in), np.array(t_out)


@cocotb.test()
async def stream_matches_golden(dut):
    design = os.environ["SNN_DESIGN"]
    seed = int(os.environ["SNN_SEED"])
    rng = np.random.default_rng(seed + 1)
    dut._log.info(f"design={design} seed={seed}")
    if design == "decoder":
        PORTS.update(i_valid="spikes__valid", i_payload="spikes__payload",
                     i_ready="spikes__ready", o_valid="velocity__valid",
                     o_payload="velocity__payload", o_ready="velocity__ready")
        net = bench_network(seed)
        bins = (rng.random((60, net.channels)) < 0.3).astype(np.uint8)
        # phase 2 replays the first 20 bins on the live state (memories are not reset)
        bins = np.concatenate([bins, bins[:20]])
        expected, _, activity = golden.run(net, bins, activity=True)
        beats = [sum(int(b) << j for j, b in enumerate(row)) for row in bins]
        lanes = net.outputs
        n = np.array([layer.neurons for layer in net.layers])
        period = 2 + ((activity + 3) * n).sum(axis=1)          # Decoder.cycles_per_bin
    elif design == "filter":
        PORTS.update(i_valid="i__valid", i_payload="i__payload", i_ready="i__ready",
                     o_valid="o__valid", o_payload="o__payload", o_ready="o__ready")
        x = np.cumsum(rng.integers(-3000, 3000, size=(60, 2)), axis=0)
        x = np.concatenate([x, x[:20]])
        ref = gbessel.CausalFilter()
        expected = np.array([ref.push(row) for row in x])
        beats = [(int(a) & 0xFFFFFFFF) | ((int(b) & 0xFFFFFFFF) << 32) for a, b in x]
        lanes = 2
        period = np.full(len(x), 2 + 6 * 2 * 2)                 # CausalFilter.cycles_per_sample
    elif design == "amortized":                                  # block-amortized filter
        PORTS.update(i_valid="i__valid", i_payload="i__payload", i_ready="i__ready",
                     o_valid="o__valid", o_payload="o__payload", o_ready="o__ready")
        x = np.cumsum(rng.integers(-20000, 20000, size=(66, 2)), axis=0)
        x[36] = [1 << 30, -(1 << 30)]                            # saturation, padding extremes
        ref = gbessel.AmortizedBlockFilter()
        released = [ref.push(row) for row in x]
        expected = np.concatenate(released)
        beats = [(int(a) & 0xFFFFFFFF) | ((int(b) & 0xFFFFFFFF) << 32) for a, b in x]
        await _reset(dut)
        # pushes 1..40 under random stalls: the block released by push 32
        got, _, _ = await _run(dut, beats[:40], 32, 2, rng, 0.5, 0.6, outputs=16)
        np.testing.assert_array_equal(got, expected[:16])
        # pushes 41..66 at full rate: the blocks of pushes 48 and 64
        got, t_in, _ = await _run(dut, beats[40:], 32, 2, rng, 1.1, 1.1, outputs=32)
        np.testing.assert_array_equal(got, expected[16:])
        # AmortizedBlockFilter.cycles_per_sample: 1 + 2 * 12, plus 2 * (1 + 14*15 + 14*47) +
        # 2 * 16 on a push that ends a block
        period = [1 + 2 * 12 + (2 * (1 + 14 * 15 + 14 * 47) + 2 * 16 if len(released[k]) else 0)
                  for k in range(40, 65)]
        np.testing.assert_array_equal(np.diff(t_in), period)
        return
    else:                                                        # block filter, middle tap
        PORTS.update(i_valid="i__valid", i_payload="i__payload", i_ready="i__ready",
                     o_valid="o__valid", o_payload="o__payload", o_ready="o__ready")
        x = np.cumsum(rng.integers(-20000, 20000, size=(24, 2)), axis=0)
        ref = gbessel.BlockFilter(tap="middle")
        released = [ref.push(row) for row in x]
        expected = np.array([r for r in released if r is not None])
        beats = [(int(a) & 0xFFFFFFFF) | ((int(b) & 0xFFFFFFFF) << 32) for a, b in x]
        await _reset(dut)
        got, _, _ = await _run(dut, beats[:20], 32, 2, rng, 0.5, 0.6, outputs=4)
        np.testing.assert_array_equal(got, expected[:4])
        got, t_in, _ = await _run(dut, beats[20:], 32, 2, rng, 1.1, 1.1, outputs=4)
        np.testing.assert_array_equal(got, expected[4:])
        # BlockFilter.cycles_per_sample(emits=True): 3 + 2 + 2 * (2 + 14*62 + 14*32)
        np.testing.assert_array_equal(np.diff(t_in), [3 + 2 + 2 * (2 + 14 * 62 + 14 * 32)] * 3)
        return
    await _reset(dut)
    # random stalls on both streams
    got, _, _ = await _run(dut, beats[:60], 32, lanes, rng, 0.5, 0.6)
    np.testing.assert_array_equal(got, expected[:60])
    # full rate: measured cycles per bin equal the model
    got, t_in, _ = await _run(dut, beats[60:], 32, lanes, rng, 1.1, 1.1)
    np.testing.assert_array_equal(got, expected[60:])
    np.testing.assert_array_equal(np.diff(t_in), period[60:-1])
