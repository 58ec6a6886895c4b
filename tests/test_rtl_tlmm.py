# SPDX-License-Identifier: BSD-3-Clause
"""rtl.tlmm on Amaranth's simulator vs golden.tlmm, under random stalls on every stream."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from rtl_streams import Counted, pack, unpack_signed

from ternedge.golden import tlmm as golden
from ternedge.golden.config import AcceleratorConfig, ConfigError
from ternedge.rtl import tlmm

# -- jobs -------------------------------------------------------------------------------------

def make_job(cfg, rng, m, k, n):
    """Random job: activations (M, K) int8, ternary weights (N, K); plus its stream beats."""
    g, t, nc = cfg.group_size, cfg.tables_per_step, cfg.cols_per_cycle
    b = golden.index_bits(g)
    acts = rng.integers(-128, 128, size=(m, k), dtype=np.int64)
    w = rng.integers(-1, 2, size=(n, k), dtype=np.int64)
    k_steps = -(-k // cfg.k_per_step)
    n_blocks = -(-n // nc)
    idx = np.zeros((n_blocks * nc, k_steps * t), dtype=np.int64)
    enc = golden.encode_weights(w, g)
    idx[:n, :enc.shape[1]] = enc
    entries = [pack(idx[col, s * t:(s + 1) * t], b)
               for s in range(k_steps) for col in range(n_blocks * nc)]
    # Lanes beyond K are don't-care: drive garbage to prove it.
    padded = rng.integers(-128, 128, size=(m, k_steps * cfg.k_per_step), dtype=np.int64)
    padded[:, :k] = acts
    act_beats = [pack(padded[row, s * cfg.k_per_step:(s + 1) * cfg.k_per_step], 8)
                 for row in range(m) for s in range(k_steps)]
    expected = golden.tlmm(acts, enc, g)
    np.testing.assert_array_equal(expected, golden.int_matmul(acts, w))
    return {"m": m, "k": k, "n": n, "entries": entries, "acts": act_beats,
            "expected": expected, "n_blocks": n_blocks}


# -- async stream helpers -------------------------------------------------------------------

async def put(ctx, stream, value, rng, p_valid):
    while p_valid < 1 and rng.random() > p_valid:
        ctx.set(stream.valid, 0)
        await ctx.tick()
    ctx.set(stream.payload.as_value(), value)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def get(ctx, stream, rng, p_ready, counter):
    while p_ready < 1 and rng.random() > p_ready:
        ctx.set(stream.ready, 0)
        await ctx.tick()
    ctx.set(stream.ready, 1)
    value, cycle = await ctx.tick().sample(stream.payload.as_value(), counter).until(stream.valid)
    ctx.set(stream.ready, 0)
    return value, cycle


def simulate(top, benches):
    sim = Simulator(top)
    sim.add_clock(1e-8, if_exists=True)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def seeded(seed):
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    return rng


TABLE_MEMORIES = ["registers", "lutram"]


# -- TableBuilder ---------------------------------------------------------------------------

async def get_lutram_tables(ctx, dut, rng, p_ready, cols):
    """One K-step from a lutram TableBuilder: wait (randomly stalled) for a claimable bank,
    claim it, read every magnitude 0..P of every table through every column's port from
    ``CLAIM_LEAD`` cycles after the claim, then release the bank. Returns the (T, 3**G) tables,
    the mirror half rebuilt from the canonical one."""
    t = len(dut.read.addr[0])
    p = dut.canonical
    while p_ready < 1 and rng.random() > p_ready:
        await ctx.tick()
    while not ctx.get(dut.tables.valid):
        await ctx.tick()
    ctx.set(dut.tables.ready, 1)
    await ctx.tick()
    ctx.set(dut.tables.ready, 0)
    for _ in range(dut.CLAIM_LEAD - 1):
        await ctx.tick()
    canonical = np.zeros((t, p + 1), dtype=np.int64)
    for mag in range(p + 1):
        for col in range(cols):
            ctx.set(dut.read.addr[col].as_value(), pack([mag] * t, tlmm.magnitude_bits(
                dut._config.group_size)))
        for col in range(cols):
            row = unpack_signed(ctx.get(dut.read.data[col].as_value()), dut.entry_width, t)
            if col == 0:
                canonical[:, mag] = row
            else:
                np.testing.assert_array_equal(row, canonical[:, mag])
    ctx.set(dut.release, 1)
    await ctx.tick()
    ctx.set(dut.release, 0)
    return np.concatenate([canonical, -canonical[:, 1:]], axis=1)


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
@pytest.mark.parametrize("group_size", [2, 3, 4])
def test_table_builder(group_size, table_memory):
    seed = 1000 + group_size
    rng = seeded(seed)
    # 9 columns: each lutram table is two memory copies (7 + 2 read ports), all read here.
    cfg = AcceleratorConfig(group_size=group_size, tables_per_step=3, cols_per_cycle=9,
                            table_memory=table_memory)
    dut = tlmm.TableBuilder(config=cfg)
    size = golden.table_size(group_size)
    steps = rng.integers(-128, 128, size=(12, cfg.k_per_step))
    steps[0] = -128                                   # the widest entries: +-128*G
    steps[1] = 127
    got = []

    async def driver(ctx):
        for row in steps:
            await put(ctx, dut.activations, pack(row, 8), rng, 0.6)

    async def monitor(ctx):
        for _ in steps:
            if table_memory == "lutram":
                tables = await get_lutram_tables(ctx, dut, rng, 0.6, cfg.cols_per_cycle)
                got.append(tables.ravel())
            else:
                value, _ = await get(ctx, dut.tables, rng, 0.6, top.counter)
                got.append(unpack_signed(value, dut.entry_width, size * cfg.tables_per_step))

    top = Counted(dut)
    simulate(top, [driver, monitor])
    expected = golden.build_tables(steps, group_size).reshape(len(steps), -1)
    np.testing.assert_array_equal(np.array(got), expected, err_msg=f"seed={seed}")


def test_lutram_table_builder_double_buffers():
    """Stall-free, the writer fills one bank while the other is read; a bank is claimable
    CLAIM_LEAD cycles before its last write lands, and is refilled from the cycle that releases
    it, so K-steps come every max(P, reads) cycles."""
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=1,
                            table_memory="lutram")
    dut = tlmm.TableBuilder(config=cfg)
    p = dut.canonical
    rng = seeded(1100)
    steps = rng.integers(-128, 128, size=(6, cfg.k_per_step))
    claims = []

    async def driver(ctx):
        for row in steps:
            await put(ctx, dut.activations, pack(row, 8), rng, 1)

    async def monitor(ctx):
        for hold in (2, 2, 20, 20, 2, 2):             # cycles from a claim to its release
            while not ctx.get(dut.tables.valid):
                await ctx.tick()
            claims.append(ctx.get(top.counter))
            ctx.set(dut.tables.ready, 1)
            await ctx.tick()
            ctx.set(dut.tables.ready, 0)
            for _ in range(hold - 1):
                await ctx.tick()
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)

    top = Counted(dut)
    simulate(top, [driver, monitor])
    # The first bank is claimable in the cycle that writes its entry P - 1 (written from
    # cycle 0: P - 2), then writer-bound (P per K-step) while banks are released soon;
    # reader-bound while they are held 20 cycles (claim, 19 cycles, release: 21 a K-step). The
    # last K-step's bank, released 20 cycles after the fourth claim, is written from that very
    # cycle and claimable P - 2 cycles later: P - 3 after the fifth claim.
    assert claims[0] == p - 2, claims
    gaps = np.diff(claims).tolist()
    assert gaps == [p, p, 21, 21, p - 3], gaps


# -- LookupAccumulate -----------------------------------------------------------------------

@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
def test_lookup_accumulate(table_memory):
    """Items with random gaps; back-to-back items on one accumulator word see each other's
    sums (the transparent read); a last item's sum comes out exactly ``latency`` cycles on."""
    seed = 2000
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=5, cols_per_cycle=3,
                            table_memory=table_memory)
    blocks = 3
    dut = tlmm.LookupAccumulate(config=cfg, max_n_blocks=blocks)
    g, t, n = 3, 5, 3
    b = golden.index_bits(g)
    width = tlmm.table_entry_width(g)
    p = (golden.table_size(g) - 1) // 2
    acc = np.zeros((blocks, n), dtype=np.int64)
    expected, got = [], []
    trials = 60

    def wrap(x):
        half = 1 << (cfg.acc_width - 1)
        return (x + half) % (2 * half) - half

    async def driver(ctx):
        for trial in range(trials):
            while rng.random() > 0.7:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            acts = rng.integers(-128, 128, size=(1, g * t))
            if trial == 1:
                acts[:] = -128                                             # widest entries
            tables = golden.build_tables(acts, g)[0]                       # (T, 27)
            idx = rng.integers(0, golden.table_size(g), size=(n, t))
            n_block = int(rng.integers(0, blocks)) if trial % 4 else 0
            clear, last = bool(rng.random() < 0.3), bool(rng.random() < 0.5)
            payload = dut.i.payload
            ctx.set(payload.indices.as_value(), pack(tlmm.lookup_codes(idx, g).ravel(), b))
            ctx.set(payload.n_block, n_block)
            ctx.set(payload.clear, clear)
            ctx.set(payload.last, last)
            if table_memory == "lutram":
                # Serve the asynchronous reads: the canonical half (magnitudes 0..P) only.
                addr = ctx.get(dut.read.addr.as_value())
                mags = np.array([(addr >> (i * (b - 1))) & ((1 << (b - 1)) - 1)
                                 for i in range(n * t)]).reshape(n, t)
                np.testing.assert_array_equal(mags, np.where(idx > p, idx - p, idx))
                ctx.set(dut.read.data.as_value(),
                        pack(tables[np.arange(t), mags].ravel(), width))
            else:
                ctx.set(payload.tables.as_value(), pack(tables[:, :p + 1].ravel(), width))
            ctx.set(dut.i.valid, 1)
            total = tables[np.arange(t), idx].sum(axis=1)
            acc[n_block] = wrap((0 if clear else acc[n_block]) + total)
            if last:
                expected.append((ctx.get(top.counter) + dut.latency, acc[n_block].tolist()))
            await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        while ctx.get(top.counter) <= 4 * trials:
            if ctx.get(dut.o.valid):
                got.append((ctx.get(top.counter),
                            unpack_signed(ctx.get(dut.o.payload.as_value()), cfg.acc_width, n)))
            await ctx.tick()

    top = Counted(dut)
    simulate(top, [driver, monitor])
    assert got == expected, f"seed={seed}"


# -- WeightBuffer ---------------------------------------------------------------------------

def test_weight_buffer_double_buffered():
    seed = 3000
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=3)
    dut = tlmm.WeightBuffer(config=cfg, max_k_steps=3, max_n_blocks=2, max_tokens=4)
    b = golden.index_bits(3)
    jobs = []
    for _ in range(4):
        k_steps, n_blocks = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        entries = rng.integers(0, 27, size=(k_steps * n_blocks * 3, 2))
        jobs.append((k_steps, n_blocks, [pack(e, b) for e in entries]))
    seen = []

    async def filler(ctx):
        for k_steps, n_blocks, entries in jobs:
            desc = {"tokens": 1, "k_steps": k_steps, "n_blocks": n_blocks}
            await put(ctx, dut.job, dut.job.payload.shape().const(desc).as_bits(), rng, 0.7)
            for e in entries:
                await put(ctx, dut.entries, e, rng, 0.7)

    async def reader(ctx):
        for k_steps, n_blocks, _ in jobs:
            while not ctx.get(dut.bank.valid):
                await ctx.tick()
            words = []
            for addr in range(k_steps * n_blocks):
                ctx.set(dut.read_addr, addr)
                await ctx.tick()
                words.append(ctx.get(dut.read_data.as_value()))
            desc = ctx.get(dut.bank.payload)
            seen.append(((desc.k_steps, desc.n_blocks), words))
            ctx.set(dut.bank.ready, 1)
            await ctx.tick()
            ctx.set(dut.bank.ready, 0)

    simulate(dut, [filler, reader])
    entry_bits = 2 * b
    for (k_steps, n_blocks, entries), (desc, words) in zip(jobs, seen, strict=True):
        assert desc == (k_steps, n_blocks), f"seed={seed}"
        flat = [(w >> (i * entry_bits)) & ((1 << entry_bits) - 1) for w in words for i in range(3)]
        np.testing.assert_array_equal(flat, entries, err_msg=f"seed={seed}")


# -- Engine ---------------------------------------------------------------------------------

def run_engine(engine, jobs, rng, p_valid, p_ready):
    """Drive all jobs back to back; return (per-job results (M, N), handshake cycles)."""
    cfg = engine.config
    top = Counted(engine)
    results = []
    stamps = {"job": [], "last": []}

    async def job_driver(ctx):
        for job in jobs:
            fields = engine.job_fields(job["m"], job["k"], job["n"])
            await put(ctx, engine.job, engine.job.payload.shape().const(fields).as_bits(),
                      rng, p_valid)
            stamps["job"].append(ctx.get(top.counter) - 1)

    async def weight_driver(ctx):
        for job in jobs:
            for entry in job["entries"]:
                await put(ctx, engine.weights, entry, rng, p_valid)

    async def act_driver(ctx):
        for job in jobs:
            for beat in job["acts"]:
                await put(ctx, engine.activations, beat, rng, p_valid)

    async def monitor(ctx):
        for job in jobs:
            rows = []
            for _ in range(job["m"]):
                row = []
                for _ in range(job["n_blocks"]):
                    value, cycle = await get(ctx, engine.results, rng, p_ready, top.counter)
                    row += unpack_signed(value, cfg.acc_width, cfg.cols_per_cycle)
                rows.append(row)
            results.append(np.array(rows, dtype=np.int64))
            stamps["last"].append(cycle)

    simulate(top, [job_driver, weight_driver, act_driver, monitor])
    return results, stamps


def check_results(jobs, results, seed):
    for i, (job, got) in enumerate(zip(jobs, results, strict=True)):
        np.testing.assert_array_equal(got[:, :job["n"]], job["expected"],
                                      err_msg=f"seed={seed} job={i}")
        assert not got[:, job["n"]:].any(), f"seed={seed} job={i}: padding columns not zero"


GEOMETRIES = [(3, 2, 2), (3, 3, 4), (2, 3, 3), (4, 2, 2)]


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "G{}T{}N{}".format(*g))
def test_engine_random_stalls(geometry, table_memory):
    g, t, n = geometry
    seed = 4000 + 100 * g + 10 * t + n
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n,
                            table_memory=table_memory)
    engine = tlmm.Engine(config=cfg, max_k=5 * cfg.k_per_step, max_n=3 * n, max_tokens=4)
    jobs = []
    for _ in range(4):
        m = int(rng.integers(1, 5))
        k = int(rng.integers(1, 5 * cfg.k_per_step + 1))
        cols = int(rng.integers(1, 3 * n + 1))
        jobs.append(make_job(cfg, rng, m, k, cols))
    results, _ = run_engine(engine, jobs, rng, p_valid=0.7, p_ready=0.7)
    check_results(jobs, results, seed)


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
def test_engine_slow_results_use_up_the_credits(table_memory):
    """Results taken rarely: one K-step jobs (every lookup is a last K-step one) issue until
    the result credits run out, then one per result taken; nothing is lost or reordered."""
    seed = 4900
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=2,
                            table_memory=table_memory)
    engine = tlmm.Engine(config=cfg, max_k=6, max_n=40, max_tokens=4)
    assert 4 * 20 > engine.result_credits
    jobs = [make_job(cfg, rng, 4, 6, 40), make_job(cfg, rng, 3, 5, 37)]
    results, _ = run_engine(engine, jobs, rng, p_valid=1, p_ready=0.15)
    check_results(jobs, results, seed)


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 5), (3, 12, 4), (1, 13, 6), (4, 5, 2)])
def test_engine_cycles_exact(shape, table_memory):
    m, k, n = shape
    seed = 5000 + 100 * m + 10 * k + n
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=2,
                            table_memory=table_memory)
    engine = tlmm.Engine(config=cfg, max_k=16, max_n=8, max_tokens=4)
    job = make_job(cfg, rng, m, k, n)
    results, stamps = run_engine(engine, [job], rng, p_valid=1, p_ready=1)
    check_results([job], results, seed)
    assert engine.cycles(m, k, n) == stamps["last"][0] - stamps["job"][0]


# (G, T, N, shape): n_blocks around P (G=3: 13, G=2: 4), where the lutram writes start to hide
LUTRAM_SHAPES = [(3, 2, 1, (2, 12, 12)), (3, 2, 1, (2, 12, 13)), (3, 2, 1, (3, 7, 14)),
                 (3, 2, 2, (2, 12, 26)), (3, 2, 2, (1, 19, 30)), (2, 2, 1, (3, 9, 3)),
                 (2, 2, 1, (3, 9, 4)), (2, 3, 2, (2, 20, 9))]


@pytest.mark.parametrize("case", LUTRAM_SHAPES, ids=lambda c: "G{}T{}N{}-{}x{}x{}".format(
    *c[:3], *c[3]))
def test_engine_lutram_cycles_exact_around_p(case):
    g, t, cols, (m, k, n) = case
    seed = 5500 + 100 * m + 10 * k + n
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=cols,
                            table_memory="lutram")
    engine = tlmm.Engine(config=cfg, max_k=k, max_n=n, max_tokens=m)
    job = make_job(cfg, rng, m, k, n)
    results, stamps = run_engine(engine, [job], rng, p_valid=1, p_ready=1)
    check_results([job], results, seed)
    measured = stamps["last"][0] - stamps["job"][0]
    assert engine.cycles(m, k, n) == measured
    registers = tlmm.Engine(config=AcceleratorConfig(group_size=g, tables_per_step=t,
                                                     cols_per_cycle=cols),
                            max_k=k, max_n=n, max_tokens=m)
    registers._MustUse__silence = True
    p = (golden.table_size(g) - 1) // 2
    if job["n_blocks"] >= p:                          # the table writes hide completely
        assert measured == registers.cycles(m, k, n)
    else:
        assert measured > registers.cycles(m, k, n)


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
def test_engine_double_buffer_overlaps_fill_with_compute(table_memory):
    seed = 6000
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=2,
                            table_memory=table_memory)
    engine = tlmm.Engine(config=cfg, max_k=12, max_n=4, max_tokens=8)
    shapes = [(8, 12, 4), (8, 12, 4), (8, 12, 4)]
    jobs = [make_job(cfg, rng, *s) for s in shapes]
    results, stamps = run_engine(engine, jobs, rng, p_valid=1, p_ready=1)
    check_results(jobs, results, seed)
    total = stamps["last"][-1] - stamps["job"][0]
    # The second job is accepted (its fill starts) before the first one's compute ends.
    assert stamps["job"][1] < stamps["last"][0]
    assert total < sum(engine.cycles(*s) for s in shapes)


@pytest.mark.parametrize("table_memory", TABLE_MEMORIES)
def test_engine_tellme_geometry(table_memory):
    seed = 7000
    rng = seeded(seed)
    cfg = AcceleratorConfig(group_size=3, tables_per_step=28, cols_per_cycle=16,
                            table_memory=table_memory)
    engine = tlmm.Engine(config=cfg, max_k=2 * cfg.k_per_step, max_n=32, max_tokens=2)
    jobs = [make_job(cfg, rng, 2, 100, 20), make_job(cfg, rng, 1, 84, 16)]
    results, _ = run_engine(engine, jobs, rng, p_valid=0.7, p_ready=0.7)
    check_results(jobs, results, seed)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_parameter_validation():
    cfg = AcceleratorConfig(group_size=3, tables_per_step=2, cols_per_cycle=2, acc_width=24)
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        tlmm.TableBuilder(config=(3, 2, 2))
    with pytest.raises(ValueError, match="max_k must be a positive integer"):
        tlmm.Engine(config=cfg, max_k=0, max_n=4)
    with pytest.raises(ValueError, match="acc_width 24 cannot hold 128\\*max_k"):
        tlmm.Engine(config=cfg, max_k=1 << 16, max_n=4)
    engine = tlmm.Engine(config=cfg, max_k=12, max_n=4, max_tokens=2)
    Fragment.get(engine, None)                        # elaborated: no UnusedElaboratable warning
    with pytest.raises(ValueError, match="n=5 exceeds this engine's max_n=4"):
        engine.cycles(1, 12, 5)
    with pytest.raises(ValueError, match="tokens must be a positive integer"):
        engine.job_fields(0, 12, 4)
    with pytest.raises(ConfigError, match="table_memory must be one of registers, lutram"):
        AcceleratorConfig(table_memory="bram")
