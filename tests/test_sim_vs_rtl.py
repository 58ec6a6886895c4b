# SPDX-License-Identifier: BSD-3-Clause
"""sim.blocks.TlmmEngine.cycles == rtl.tlmm.Engine, measured on Amaranth's simulator.

Stall-free (every input valid, results always ready), counted as rtl/tlmm.py documents: clock
edges from the edge that accepts the job to the edge that accepts its last result. 24 random
shapes over three geometries are measured; many more are compared against ``Engine.cycles``
(whose equality to the measurement is what the measured shapes, and tests/test_rtl_tlmm.py,
establish).
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from rtl_streams import Counted

from ternedge.golden.config import AcceleratorConfig
from ternedge.sim import blocks

rtl_tlmm = pytest.importorskip("ternedge.rtl.tlmm", reason="rtl/tlmm.py is not importable")

GEOMETRIES = [(3, 2, 2), (3, 3, 4), (2, 4, 3)]       # (G, T, N = cols_per_cycle)
SHAPES_PER_GEOMETRY = 8


def measure(engine, rng, m, k, n) -> int:
    """Run one stall-free job on the simulator; return its measured cycle count."""
    cfg = engine.config
    fields = engine.job_fields(m, k, n)
    words = fields["k_steps"] * fields["n_blocks"]
    n_entries = words * cfg.cols_per_cycle
    n_acts = m * fields["k_steps"]
    n_results = m * fields["n_blocks"]
    entry_bits = len(engine.weights.payload.as_value())
    act_bits = len(engine.activations.payload.as_value())
    top = Counted(engine)
    stamps = {}

    async def job_driver(ctx):
        ctx.set(engine.job.payload.as_value(),
                engine.job.payload.shape().const(fields).as_bits())
        ctx.set(engine.job.valid, 1)
        await ctx.tick().until(engine.job.ready)
        stamps["job"] = ctx.get(top.counter) - 1
        ctx.set(engine.job.valid, 0)

    async def stream_driver(ctx, stream, count, bits):
        for _ in range(count):
            ctx.set(stream.payload.as_value(), int(rng.integers(0, 1 << min(bits, 62))))
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    async def weights(ctx):
        await stream_driver(ctx, engine.weights, n_entries, entry_bits)

    async def acts(ctx):
        await stream_driver(ctx, engine.activations, n_acts, act_bits)

    async def monitor(ctx):
        ctx.set(engine.results.ready, 1)
        for _ in range(n_results):
            (cycle,) = await ctx.tick().sample(top.counter).until(engine.results.valid)
        stamps["last"] = cycle

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for bench in (job_driver, weights, acts, monitor):
        sim.add_testbench(bench)
    sim.run()
    return stamps["last"] - stamps["job"]


@pytest.mark.parametrize("table_memory", ["registers", "lutram"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "G{}T{}N{}".format(*g))
def test_tlmm_cycles_equal_measured_rtl(geometry, table_memory):
    g, t, n_cols = geometry
    seed = 7000 + 100 * g + 10 * t + n_cols
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    cfg = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n_cols,
                            table_memory=table_memory)
    max_k, max_n, max_tokens = 4 * cfg.k_per_step, 3 * n_cols, 4
    engine = rtl_tlmm.Engine(config=cfg, max_k=max_k, max_n=max_n, max_tokens=max_tokens)
    model = blocks.TlmmEngine(cfg)
    for _ in range(SHAPES_PER_GEOMETRY):
        m = int(rng.integers(1, max_tokens + 1))
        k = int(rng.integers(1, max_k + 1))
        n = int(rng.integers(1, max_n + 1))
        measured = measure(engine, rng, m, k, n)
        assert model.cycles(m, k, n) == measured, f"seed={seed} shape={(m, k, n)}"


def test_tlmm_cycles_equal_rtl_formula_on_large_shapes():
    seed = 7100
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    for _ in range(200):
        g = int(rng.choice([2, 3, 4]))
        t = int(rng.integers(1, 65))
        n_cols = int(rng.integers(1, 33))
        memory = str(rng.choice(["registers", "lutram"]))
        cfg = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n_cols,
                                table_memory=memory)
        # LUTRAM tables wait when N-blocks < 13: small N exercises that
        n_max = 8193 if rng.random() < 0.5 else 12 * n_cols + 1
        k, n, m = (int(rng.integers(1, 8193)), int(rng.integers(1, n_max)),
                   int(rng.integers(1, 513)))
        engine = rtl_tlmm.Engine(config=cfg, max_k=k, max_n=n, max_tokens=m)
        engine._MustUse__silence = True       # only its timing is used, never elaborated
        assert blocks.TlmmEngine(cfg).cycles(m, k, n) == engine.cycles(m, k, n), \
            f"seed={seed} geometry={(g, t, n_cols)} {memory} shape={(m, k, n)}"
