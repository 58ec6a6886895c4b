# SPDX-License-Identifier: BSD-3-Clause
"""rtl.attention on Amaranth's simulator vs golden.attention, under random valid/ready stalls
on every stream, plus exact stall-free cycle counts."""

import numpy as np
import pytest
from rtl_streams import get, pack, put, seeded, simulate, unpack_signed

from ternedge.golden import attention as golden
from ternedge.golden import fixed
from ternedge.rtl import attention

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_attention(dut, jobs, rng, p_valid, p_ready):
    """Run (q, k, v) jobs back to back (q is (n, D) for a prefill tile, (D,) for decode);
    return the concatenated output rows and the total cycles."""
    lanes, d = dut.lanes, dut.head_dim
    prefill = isinstance(dut, attention.PrefillUnit)
    out = {"o": [], "first": None, "last": None}

    def rows(matrix):
        return [pack(row[i * lanes:(i + 1) * lanes], 32) for row in matrix
                for i in range(d // lanes)]

    async def job_driver(ctx):
        for q, k, _ in jobs:
            word = k.shape[0]
            if prefill:
                word |= q.shape[0] << dut.job.payload.shape()["queries"].offset
            cycle = await put(ctx, dut.job, word, rng, p_valid)
            if out["first"] is None:
                out["first"] = cycle

    def driver(stream, index):
        async def bench(ctx):
            for job in jobs:
                matrix = job[index] if index else job[0].reshape(-1, d)
                for word in rows(matrix):
                    await put(ctx, stream, word, rng, p_valid)
        return bench

    rows_out = sum(job[0].reshape(-1, d).shape[0] for job in jobs)

    async def monitor(ctx):
        for _ in range(rows_out * (d // lanes)):
            word, cycle = await get(ctx, dut.o, rng, p_ready)
            out["o"].append(word)
            out["last"] = cycle

    simulate(dut, [job_driver, driver(dut.q, 0), driver(dut.k, 1), driver(dut.v, 2), monitor])
    o = np.array([unpack_signed(w, 32, lanes) for w in out["o"]]).reshape(rows_out, d)
    return o, out["last"] - out["first"] + 1


def reference(q, k, v):
    """golden.attention for the last n positions of a length-S sequence (n = rows of q)."""
    q = q.reshape(-1, k.shape[1])
    positions = np.arange(k.shape[0] - q.shape[0], k.shape[0])
    return golden.attention(q[:, None, :], k[:, None, :], v[:, None, :], positions)[:, 0]


def random_job(rng, keys, d, spread):
    """Q16 q, k, v of magnitude up to 2**spread, with some beyond the operand limit."""
    q = rng.integers(-(1 << spread), 1 << spread, size=d)
    k = rng.integers(-(1 << spread), 1 << spread, size=(keys, d))
    v = rng.integers(-(1 << 24), 1 << 24, size=(keys, d)) >> rng.integers(0, 10, (keys, 1))
    q[0], k[0, 0], v[0, :2] = fixed.INT32_MAX, fixed.INT32_MIN, [fixed.INT32_MIN, fixed.INT32_MAX]
    return q, k, v


def test_parameter_validation():
    with pytest.raises(ValueError, match="head_dim=10 must be a multiple of lanes=4"):
        attention.DecodeUnit(lanes=4, head_dim=10)
    with pytest.raises(ValueError, match="max_keys must be a positive integer"):
        attention.DecodeUnit(max_keys=0)
    with pytest.raises(ValueError, match="keys=9 exceeds"):
        attention.DecodeUnit(max_keys=8).cycles(9)
    with pytest.raises(ValueError, match="max_keys=2 must be at least queries=4"):
        attention.PrefillUnit(queries=4, max_keys=2)
    with pytest.raises(ValueError, match="queries=3 must be at most the tile size 4 and at most"):
        attention.PrefillUnit(queries=4, max_keys=8).cycles(3, 2)


@pytest.mark.parametrize("lanes,head_dim", [(4, 8), (2, 6)])
def test_decode_random_stalls(lanes, head_dim):
    seed = 400 + lanes * head_dim
    rng = seeded(seed)
    jobs = [random_job(rng, keys, head_dim, spread)
            for keys, spread in ((5, 18), (1, 20), (7, 14), (3, 22))]
    dut = attention.DecodeUnit(lanes=lanes, head_dim=head_dim, max_keys=8)
    o, _ = run_attention(dut, jobs, rng, p_valid=0.6, p_ready=0.5)
    expected = np.concatenate([reference(*job) for job in jobs])
    np.testing.assert_array_equal(o, expected, err_msg=f"seed={seed}")


@pytest.mark.parametrize("keys", [1, 6])
def test_decode_cycles_exact(keys):
    rng = seeded(500 + keys)
    dut = attention.DecodeUnit(lanes=4, head_dim=16, max_keys=8)
    job = random_job(rng, keys, 16, 17)
    o, cycles = run_attention(dut, [job], rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(o, reference(*job))
    assert dut.cycles(keys) == cycles


def prefill_job(rng, n, keys, d, spread):
    q, k, v = random_job(rng, keys, d, spread)
    tile = rng.integers(-(1 << spread), 1 << spread, size=(n, d))
    tile[0] = q
    return tile, k, v


def test_prefill_random_stalls():
    seed = 600
    rng = seeded(seed)
    jobs = [prefill_job(rng, n, keys, 8, spread)
            for n, keys, spread in ((3, 5, 18), (1, 1, 20), (2, 2, 16), (3, 7, 22))]
    dut = attention.PrefillUnit(queries=3, lanes=4, head_dim=8, max_keys=8)
    o, _ = run_attention(dut, jobs, rng, p_valid=0.6, p_ready=0.5)
    expected = np.concatenate([reference(*job) for job in jobs])
    np.testing.assert_array_equal(o, expected, err_msg=f"seed={seed}")
    # a tile gives the rows that decoding its queries one at a time gives
    q, k, v = jobs[3]
    for t in range(3):
        keys = k.shape[0] - 3 + t + 1
        np.testing.assert_array_equal(o[-3 + t], reference(q[t], k[:keys], v[:keys])[0])


@pytest.mark.parametrize("n,keys,max_keys", [(2, 2, 8), (4, 6, 8), (3, 7, 7)])
def test_prefill_cycles_exact(n, keys, max_keys):
    """max_keys = 7: the keys field is 3 bits wide, one less than (max_keys + 1).bit_length()."""
    rng = seeded(700 + keys)
    dut = attention.PrefillUnit(queries=4, lanes=2, head_dim=8, max_keys=max_keys)
    job = prefill_job(rng, n, keys, 8, 17)
    o, cycles = run_attention(dut, [job], rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(o, reference(*job))
    assert dut.cycles(n, keys) == cycles


def test_decode_one_beat_rows_random_stalls():
    """head_dim == lanes: every beat is a whole row, so the accumulators' read-modify-write
    meets the previous key's write to the same address in the same cycle."""
    seed = 800
    rng = seeded(seed)
    jobs = [random_job(rng, keys, 4, spread) for keys, spread in ((6, 18), (1, 22), (8, 23))]
    dut = attention.DecodeUnit(lanes=4, head_dim=4, max_keys=8)
    o, _ = run_attention(dut, jobs, rng, p_valid=0.7, p_ready=0.6)
    expected = np.concatenate([reference(*job) for job in jobs])
    np.testing.assert_array_equal(o, expected, err_msg=f"seed={seed}")
    job = random_job(rng, 5, 4, 20)
    o, cycles = run_attention(dut, [job], rng, p_valid=1.0, p_ready=1.0)
    np.testing.assert_array_equal(o, reference(*job))
    assert dut.cycles(5) == cycles


def test_decode_saturating_scores():
    """Operands at and beyond the limit: scores saturate at both ends of int32, a peaked
    softmax (one weight 2**24, the rest 0) and the largest value magnitudes."""
    seed = 810
    rng = seeded(seed)
    d, keys = 8, 7
    limit = golden.OPERAND_LIMIT
    q = np.where(rng.random(d) < 0.5, fixed.INT32_MAX, fixed.INT32_MIN)
    k = np.where(rng.random((keys, d)) < 0.5, limit, -limit)
    k[0], k[1] = np.sign(q) * limit, -np.sign(q) * limit
    v = np.where(rng.random((keys, d)) < 0.5, fixed.INT32_MAX, fixed.INT32_MIN)
    scores, _ = golden.attention_scores(q[None, None, :], k[:, None, :], [keys - 1])
    assert scores.max() == fixed.INT32_MAX and scores.min() == fixed.INT32_MIN
    dut = attention.DecodeUnit(lanes=4, head_dim=d, max_keys=8)
    o, _ = run_attention(dut, [(q, k, v)], rng, p_valid=0.8, p_ready=0.8)
    np.testing.assert_array_equal(o, reference(q, k, v), err_msg=f"seed={seed}")


def test_prefill_mini_geometry():
    """The ``mini`` accelerator's unit (head_dim 32, 64 keys): a full cache, random stalls."""
    seed = 820
    rng = seeded(seed)
    jobs = [prefill_job(rng, 2, 64, 32, 17), prefill_job(rng, 1, 23, 32, 21)]
    dut = attention.PrefillUnit(queries=2, lanes=4, head_dim=32, max_keys=64)
    o, _ = run_attention(dut, jobs, rng, p_valid=0.9, p_ready=0.7)
    expected = np.concatenate([reference(*job) for job in jobs])
    np.testing.assert_array_equal(o, expected, err_msg=f"seed={seed}")
