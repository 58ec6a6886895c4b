# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top: a sequencer that runs ``golden.isa`` programs from DDR through the units.

Blocks::

    AXI-Lite ── Registers ── start/done/error, counters
                    │
    DDR (AXI4) ── ReadDMA ── router ─┬─ instruction words
                                     ├─ RMSNorm (x, gamma)          ─┐
                                     ├─ Quantizer ─ gearbox ─ Engine ─ Dequantizer
                                     ├─ FIFO ─ RoPE (x, table)       ├─ WriteDMA ── DDR
                                     ├─ PrefillUnit (q, k, v)        │
                                     └─ FIFO ─ Pointwise (a, b)     ─┘
    DDR (AXI4 x P) ── WeightStreamer ── engine jobs and weight entries ── Engine

The sequencer fetches one instruction (four beats), checks it, then iterates over its
``tokens`` x ``heads``: it issues the iteration's write command, then its read commands (each
tagged with the unit input it feeds), and waits until the read stream is consumed and every
write is acknowledged before the next iteration. A LINEAR's tokens are pipelined instead: the
sequencer reads token t + 1's row (and its epilogue row) as soon as the ReadDMA is free and the
quantizer has a bank for it (``Quantizer``'s ping-pong buffer: at most two rows in it), while
token t is still in pass 2, the engine and the dequantizer; the quantizer starts a token's
pass 2 when the dequantizer takes its amax, once the token before has left the gearbox (the
engine took its last K-step) and the dequantizer has started on its results, so tokens meet
only in the engine, which loops over them, and the dequantizer prepares a token's scale while
it streams the token before. The LINEAR's write commands go out on their
own, (token, head) in order, each as soon as the WriteDMA is idle, and the instruction ends
once all are acknowledged. Reads and writes are checked against the DDR window (``DDR_BASE``,
``DDR_SIZE``) before they are issued.

The weights take ports of their own (``weight_ddr0`` .. ``weight_ddr{P-1}``, P =
``config.fill_entries_per_cycle``): the ``WeightStreamer`` (``rtl.weight_stream``) walks the
same program ahead of the sequencer and streams each LINEAR's weights (one part of the stream
a port) into the engine's free bank, P entries a cycle, so the next linear's weights arrive
while the engine computes this one and while the instructions in between run. A LINEAR's tokens wait
for its bank only if its weights are late. The run ends (FINISH) once both the sequencer and
the streamer's walk are done.

Faults (a bad opcode, an inconsistent or oversized length, an address outside the window, an
AXI error response on either port) stop the program: issued reads (the streamer's too) are
drained and discarded, issued writes completed with zeros, the units reset, and the run ends
with DONE and ERROR and the code in ``STATUS``; the accelerator never hangs on bad input.
Every run ends with a one-cycle reset of the units, so a faulted run leaves nothing behind.

Constraints of this top (checked at construction): 128-bit DDR beats of four Q16 lanes, so
the engine's ``cols_per_cycle`` and ``G*T`` must be multiples of 4; each engine result goes to
the dequantizer as ``cols_per_cycle / 4`` beats; the weights arrive as ``golden.isa``'s weight
stream (entries wider than a beat back to back, in P parts), which ``WeightUnpacker`` turns
into entries at line rate, at most P a row of P beats, so the engine's bank never holds the
read up. One engine
job holds at most ``max_job_n`` columns (its double-buffered weight banks are sized by it);
the host splits wider linears into column tiles. Attention runs on a ``PrefillUnit`` of
``attention_tile`` queries: a tile of up to that many consecutive queries of one head shares
one pass over the keys and one over the values (a decode step is a tile of one).
"""

import enum

from amaranth.hdl import Array, C, Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa, ops
from ..golden.config import AcceleratorConfig, ModelConfig
from ..golden.ddr import TOP_READS_IN_FLIGHT, TOP_WRITES_IN_FLIGHT
from .attention import PrefillUnit
from .axi import ReadDMA, WriteDMA, axi4_signature, axilite_signature
from .axi import in_window as command_in_window
from .elementwise import Pointwise, PointwiseOp, RMSNorm, RoPE
from .quant import Dequantizer, Quantizer
from .regs import ErrorCode, Registers
from .tlmm import Engine
from .weight_stream import WeightStreamer

__all__ = ["Route", "COUNTERS", "GATE_OPS", "ddr_signature", "Accelerator"]

DATA_WIDTH = 8 * isa.BEAT_BYTES


class Route(enum.IntEnum):
    """Where the router sends the beats of a read command."""
    INSTRUCTION = 0
    NORM_X = 1
    NORM_GAMMA = 2
    QUANT_X = 3
    ROPE_X = 4
    ROPE_TABLE = 5
    ATT_Q = 6
    ATT_K = 7
    ATT_V = 8
    POINTWISE_A = 9
    POINTWISE_B = 10


#: ``ModelConfig.hidden_act`` -> the ``Pointwise`` gate that computes it
GATE_OPS = {"relu2": PointwiseOp.RELU2_GATE, "silu": PointwiseOp.SILU_GATE}

#: performance counters, in register order (``COUNTER[i]`` at 0x20 + 4 i)
COUNTERS = ("instructions", "read_beats", "write_beats", "linear_cycles", "attention_cycles",
            "elementwise_cycles", "fetch_cycles")


def ddr_signature() -> wiring.Signature:
    """The DDR master port: AXI4 of 128-bit data plus one-bit IDs (always 0), which AXI
    memory models and interconnects expect."""
    members = dict(axi4_signature(data_width=DATA_WIDTH).members.items())
    members.update({"awid": Out(1), "bid": In(1), "arid": Out(1), "rid": In(1)})
    return wiring.Signature(members)


class Accelerator(wiring.Component):
    """The accelerator for one model's dimensions.

    Parameters
    ----------
    config : AcceleratorConfig
        TLMM geometry (``cols_per_cycle`` must be 4).
    model : ModelConfig
        Sizes the buffers (hidden, intermediate, head_dim) and sets the RMSNorm epsilon.
    max_tokens : int
        Most tokens one LINEAR instruction may carry (a prefill block).
    max_context : int
        Most keys an attention may see (KV-cache length).
    max_job_n : int or None
        Widest N of one LINEAR instruction (default: the widest linear of the model).
    attention_tile : int
        Queries per attention job (``PrefillUnit(queries=...)``).
    gates : tuple of str
        The MLP gates built into ``Pointwise`` (``hidden_act`` names: "relu2", "silu"; default
        both). A board build for one model keeps only its own; an instruction that asks for a
        gate left out ends in ``BAD_OPCODE``.

    Attributes
    ----------
    ctrl : In(axilite_signature(addr_width=8))
        Register block (``rtl.regs``).
    ddr : Out(ddr_signature())
        DDR master: reads from the ``ReadDMA``, writes from the ``WriteDMA``.
    weight_ddr0 .. weight_ddr{P-1} : Out(ddr_signature())
        DDR masters of the ``WeightStreamer``, one per weight port (P =
        ``config.fill_entries_per_cycle``): reads only (their write channels idle).
    """

    def __init__(self, *, config: AcceleratorConfig, model: ModelConfig, max_tokens: int = 64,
                 max_context: int = 256, max_job_n: int | None = None,
                 attention_tile: int = 4, gates: tuple = tuple(GATE_OPS)):
        self._MustUse__silence = True     # a rejected configuration leaves no warning behind
        if config.cols_per_cycle % isa.LANES:
            raise ValueError(f"the accelerator top streams {isa.LANES} lanes per DDR beat; "
                             f"cols_per_cycle must be a multiple of {isa.LANES}, got "
                             f"{config.cols_per_cycle}")
        if config.k_per_step % isa.LANES:
            raise ValueError(f"G*T={config.k_per_step} must be a multiple of {isa.LANES}")
        if max_context > (1 << 16) - 1 or max_tokens > (1 << 16) - 1:
            raise ValueError("max_tokens and max_context must be below 65536")
        self.config, self.model = config, model
        self.max_tokens, self.max_context = max_tokens, max_context
        if not 1 <= attention_tile <= min(255, max_context):
            raise ValueError(f"attention_tile must be 1 to {min(255, max_context)}, "
                             f"got {attention_tile}")
        self.attention_tile = attention_tile
        unknown = [g for g in gates if g not in GATE_OPS]
        if unknown or not gates:
            raise ValueError(f"gates must name some of {', '.join(GATE_OPS)}, got {gates!r}")
        self.gates = tuple(g for g in GATE_OPS if g in gates)
        self.head_dim = model.head_dim
        linear_dims = (model.hidden_size, model.intermediate_size,
                       model.num_attention_heads * model.head_dim,
                       model.num_key_value_heads * model.head_dim)
        self.max_dim = max(linear_dims)
        if self.max_dim % isa.LANES or self.head_dim % (2 * isa.LANES):
            raise ValueError(f"model dimensions must be multiples of {isa.LANES} (head_dim of "
                             f"{2 * isa.LANES})")
        self.max_job_n = self.max_dim if max_job_n is None else max_job_n
        if not 0 < self.max_job_n <= self.max_dim or self.max_job_n % config.cols_per_cycle:
            raise ValueError(f"max_job_n={max_job_n} must be a multiple of cols_per_cycle="
                             f"{config.cols_per_cycle} and at most {self.max_dim}")
        self._MustUse__silence = False
        super().__init__({
            "ctrl": In(axilite_signature(addr_width=8)),
            "ddr": Out(ddr_signature()),
            **{f"weight_ddr{p}": Out(ddr_signature())
               for p in range(config.fill_entries_per_cycle)},
        })

    @property
    def weight_ports(self) -> list:
        """The ``WeightStreamer``'s DDR masters, port 0 first."""
        return [getattr(self, f"weight_ddr{p}") for p in range(self.config.fill_entries_per_cycle)]

    @property
    def pointwise_ops(self) -> tuple:
        """The ``PointwiseOp``s built: the residual add and the gates."""
        return (PointwiseOp.ADD, *(GATE_OPS[g] for g in self.gates))

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.config, isa.LANES
        row_beats = self.max_dim // lanes
        head_beats = self.head_dim // lanes
        job_beats = self.max_job_n // lanes           # one token's outputs of one engine job
        steps_per_k = cfg.k_per_step // lanes         # DDR beats per engine K-step

        m.submodules.regs = regs = Registers(counters=len(COUNTERS))
        m.submodules.reader = reader = ReadDMA(data_width=DATA_WIDTH,
                                               max_in_flight=TOP_READS_IN_FLIGHT)
        m.submodules.writer = writer = WriteDMA(data_width=DATA_WIDTH,
                                                max_in_flight=TOP_WRITES_IN_FLIGHT)
        wiring.connect(m, wiring.flipped(self.ctrl), regs.bus)
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += getattr(self.ddr, name).eq(getattr(reader.bus, name))
        for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
            m.d.comb += getattr(reader.bus, name).eq(getattr(self.ddr, name))
        for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                     "wlast", "wvalid", "bready"):
            m.d.comb += getattr(self.ddr, name).eq(getattr(writer.bus, name))
        for name in ("awready", "wready", "bresp", "bvalid"):
            m.d.comb += getattr(writer.bus, name).eq(getattr(self.ddr, name))

        # ---- datapath units (reset together at the end of every run) ----
        unit_reset = Signal()
        engine = Engine(config=cfg, max_k=self.max_dim, max_n=self.max_job_n,
                        max_tokens=self.max_tokens)
        units = {
            "norm": RMSNorm(lanes=lanes, max_h=self.max_dim,
                            eps=ops.eps_q16(self.model.rms_norm_eps)),
            "quant": Quantizer(lanes=lanes, max_k=self.max_dim),
            "engine": engine,
            "streamer": WeightStreamer(config=cfg, max_tokens=self.max_tokens,
                                       max_k_steps=engine.max_k_steps,
                                       max_n_blocks=engine.max_n_blocks,
                                       max_in_flight=TOP_READS_IN_FLIGHT,
                                       data_width=DATA_WIDTH),
            "dequant": Dequantizer(lanes=lanes, acc_width=cfg.acc_width),
            "rope": RoPE(lanes=lanes, head_dim=self.head_dim),
            "attention": PrefillUnit(queries=self.attention_tile, lanes=lanes,
                                     head_dim=self.head_dim, max_keys=self.max_context),
            "pointwise": Pointwise(lanes=lanes, ops=self.pointwise_ops),
            # operands that arrive before their unit takes them, and the unit outputs on their
            # way to the WriteDMA: deep enough that neither DMA ever waits for a unit (a
            # pipelined LINEAR has the epilogue rows of up to three tokens in ``a_fifo``, and
            # up to two tokens' outputs wait for their write, see ``sim.accelerator``)
            "rope_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=head_beats),
            "a_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=max(row_beats, 3 * job_beats)),
            "gamma_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=row_beats),
            "out_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=max(row_beats, 2 * job_beats)),
        }
        for name, unit in units.items():
            m.submodules[name] = ResetInserter(unit_reset)(unit)
        norm, quant, dequant = (units[n] for n in ("norm", "quant", "dequant"))
        streamer = units["streamer"]
        wiring.connect(m, streamer.job, engine.job)
        wiring.connect(m, streamer.entries, engine.weights)
        for outer, bus in zip(self.weight_ports, streamer.buses, strict=True):
            for name, member in bus.signature.members.items():
                port, inner = getattr(outer, name), getattr(bus, name)
                m.d.comb += (inner.eq(port) if member.flow == In else port.eq(inner))
        rope, attn, pw = units["rope"], units["attention"], units["pointwise"]
        rope_fifo, a_fifo = units["rope_fifo"], units["a_fifo"]
        gamma_fifo, out_fifo = units["gamma_fifo"], units["out_fifo"]

        # ---- instruction register ----
        words = Array(Signal(32, name=f"word{i}") for i in range(isa.WORDS))
        op = Signal(8)
        m.d.comb += op.eq(words[0][:8])
        pw_op = words[0][8:10]
        epilogue = words[0][10]                      # LINEAR: output through Pointwise
        tokens, heads = words[1][:16], words[1][16:]
        k_steps, n_blocks = words[2][:16], words[2][16:]
        keys0, group_shift, tile = words[2][:16], words[2][16:24], words[2][24:32]
        w_m, w_e = words[3][:16], words[3][16:24]
        v_offset = words[3]
        src0 = [words[4 + i] for i in range(4)]     # addr, stride_t, stride_h, beats
        src1 = [words[8 + i] for i in range(4)]
        dst = [words[12 + i] for i in range(4)]

        def is_op(o):
            return op == int(o)

        # ---- read commands and the router ----
        rd_addr, rd_beats = Signal(32), Signal(20)
        rd_route = Signal(range(len(Route)))
        rd_issue = Signal()                          # the sequencer offers a read command
        rd_final = Signal(init=1)                    # ... which ends a token (``last``)
        wr_addr, wr_beats = Signal(32), Signal(20)
        wr_issue = Signal()
        drain = Signal()

        window_lo = regs.ddr_base
        window_hi = Signal(33)
        m.d.comb += window_hi.eq(regs.ddr_base + regs.ddr_size)

        def in_window(addr, beats):
            return command_in_window(m, addr, beats, window_lo, window_hi,
                                     beat_bytes=isa.BEAT_BYTES)

        rd_ok = in_window(rd_addr, rd_beats)
        wr_ok = in_window(wr_addr, wr_beats)
        m.d.comb += [
            reader.cmd.payload.addr.eq(rd_addr), reader.cmd.payload.beats.eq(rd_beats),
            reader.cmd.valid.eq(rd_issue & rd_ok),
            writer.cmd.payload.addr.eq(wr_addr), writer.cmd.payload.beats.eq(wr_beats),
            writer.cmd.valid.eq(wr_issue & wr_ok),
        ]

        route = Signal(range(len(Route)))
        remaining = Signal(20)
        final_cmd = Signal()                         # the command ends the unit's token
        beat = reader.data.payload
        last = (remaining == 1) & final_cmd
        with m.If(reader.cmd.valid & reader.cmd.ready):
            m.d.sync += [route.eq(rd_route), remaining.eq(rd_beats), final_cmd.eq(rd_final)]
        with m.Elif(reader.data.valid & reader.data.ready):
            m.d.sync += remaining.eq(remaining - 1)

        instr_beat = Signal(3)
        cos_beat = Signal(DATA_WIDTH)
        cos_held = Signal()

        sink_ready = Signal()
        m.d.comb += reader.data.ready.eq(drain | sink_ready)
        valid = reader.data.valid & ~drain
        with m.Switch(route):
            with m.Case(Route.INSTRUCTION):
                m.d.comb += sink_ready.eq(1)
                with m.If(valid):
                    for i in range(isa.WORDS):
                        with m.If(instr_beat == i // 4):
                            m.d.sync += words[i].eq(beat[32 * (i % 4):32 * (i % 4 + 1)])
                    m.d.sync += instr_beat.eq(instr_beat + 1)
            with m.Case(Route.NORM_X):
                m.d.comb += [norm.x.valid.eq(valid), norm.x.payload.x.eq(beat),
                             norm.x.payload.last.eq(last), sink_ready.eq(norm.x.ready)]
            with m.Case(Route.NORM_GAMMA):
                m.d.comb += [gamma_fifo.w_en.eq(valid), gamma_fifo.w_data.eq(beat),
                             sink_ready.eq(gamma_fifo.w_rdy)]
            with m.Case(Route.QUANT_X):
                m.d.comb += [quant.x.valid.eq(valid), quant.x.payload.x.eq(beat),
                             quant.x.payload.last.eq(last), sink_ready.eq(quant.x.ready)]
            with m.Case(Route.ROPE_X):
                m.d.comb += [rope_fifo.w_en.eq(valid), rope_fifo.w_data.eq(beat),
                             sink_ready.eq(rope_fifo.w_rdy)]
            with m.Case(Route.ROPE_TABLE):
                # a table beat is a cos beat then a sin beat (Q16, 18 bits used of each lane)
                table = rope.table.payload
                for i in range(lanes):
                    m.d.comb += [table.cos[i].eq(cos_beat[32 * i:32 * i + 18]),
                                 table.sin[i].eq(beat[32 * i:32 * i + 18])]
                m.d.comb += [rope.table.valid.eq(valid & cos_held),
                             sink_ready.eq(~cos_held | rope.table.ready)]
                with m.If(valid & sink_ready):
                    m.d.sync += cos_held.eq(~cos_held)
                    with m.If(~cos_held):
                        m.d.sync += cos_beat.eq(beat)
            with m.Case(Route.ATT_Q):
                m.d.comb += [attn.q.valid.eq(valid), attn.q.payload.eq(beat),
                             sink_ready.eq(attn.q.ready)]
            with m.Case(Route.ATT_K):
                m.d.comb += [attn.k.valid.eq(valid), attn.k.payload.eq(beat),
                             sink_ready.eq(attn.k.ready)]
            with m.Case(Route.ATT_V):
                m.d.comb += [attn.v.valid.eq(valid), attn.v.payload.eq(beat),
                             sink_ready.eq(attn.v.ready)]
            with m.Case(Route.POINTWISE_A):
                m.d.comb += [a_fifo.w_en.eq(valid), a_fifo.w_data.eq(beat),
                             sink_ready.eq(a_fifo.w_rdy)]
            with m.Case(Route.POINTWISE_B):
                m.d.comb += [pw.i.valid.eq(valid & a_fifo.r_rdy), pw.i.payload.op.eq(pw_op),
                             pw.i.payload.a.eq(a_fifo.r_data), pw.i.payload.b.eq(beat),
                             sink_ready.eq(pw.i.ready & a_fifo.r_rdy),
                             a_fifo.r_en.eq(valid & pw.i.ready & a_fifo.r_rdy)]
        for source, sink in ((rope_fifo, rope.x), (gamma_fifo, norm.gamma)):
            m.d.comb += [sink.valid.eq(source.r_rdy), sink.payload.eq(source.r_data),
                         source.r_en.eq(sink.ready & source.r_rdy)]

        # ---- the linear chain: quantizer -> gearbox -> engine -> dequantizer ----
        # Two K-step registers: ``gear`` fills from the quantizer while ``gear_out`` waits for
        # the engine (LUTRAM tables hold it for their P writes), so the quantizer never waits
        # for the table writes of the K-step before. A completed K-step goes straight to
        # ``gear_out`` when that is free (or being taken), else waits in ``gear`` (``gear_ready``,
        # the quantizer held) and moves in the cycle ``gear_out`` is taken.
        gear = Signal(data.ArrayLayout(signed(8), cfg.k_per_step))
        gear_next = Signal.like(gear)                # ``gear`` with this cycle's beat in
        gear_fill = Signal(range(steps_per_k + 1))
        gear_ready = Signal()
        gear_out = Signal.like(gear)
        gear_full = Signal()                         # ``gear_out`` valid to the engine
        beat_in = quant.q.valid & quant.q.ready
        completes = beat_in & (quant.q.payload.last | (gear_fill == steps_per_k - 1))
        out_free = ~gear_full | engine.activations.ready
        m.d.comb += [quant.q.ready.eq(~gear_ready), engine.activations.valid.eq(gear_full),
                     engine.activations.payload.eq(gear_out), gear_next.eq(gear)]
        with m.If(beat_in):
            for i in range(steps_per_k):
                with m.If(gear_fill == i):
                    for j in range(lanes):
                        m.d.comb += gear_next[i * lanes + j].eq(quant.q.payload.q[j])
        with m.If(engine.activations.valid & engine.activations.ready):
            m.d.sync += gear_full.eq(0)
        with m.If(gear_ready & out_free):
            m.d.sync += [gear_out.eq(gear), gear_full.eq(1), gear_ready.eq(0)]
        with m.Elif(completes & out_free):
            m.d.sync += [gear_out.eq(gear_next), gear_full.eq(1), gear_fill.eq(0)]
        with m.Elif(completes):
            m.d.sync += [gear.eq(gear_next), gear_ready.eq(1), gear_fill.eq(0)]
        with m.Elif(beat_in):
            m.d.sync += [gear.eq(gear_next), gear_fill.eq(gear_fill + 1)]

        # A token's amax goes to the dequantizer (and its pass 2 starts) once the token before
        # has left the quantizer and the gearbox: the engine has taken its last K-step, so the
        # tokens meet only in the engine, which loops over them.
        token_open = Signal()
        gear_clear = ~token_open & ~gear_full & ~gear_ready
        m.d.comb += [dequant.scale.valid.eq(quant.amax.valid & gear_clear),
                     dequant.scale.payload.amax.eq(quant.amax.payload),
                     dequant.scale.payload.w_m.eq(w_m), dequant.scale.payload.w_e.eq(w_e),
                     quant.amax.ready.eq(dequant.scale.ready & gear_clear)]
        with m.If(quant.amax.valid & quant.amax.ready):
            m.d.sync += token_open.eq(1)
        with m.If(quant.q.valid & quant.q.ready & quant.q.payload.last):
            m.d.sync += token_open.eq(0)
        # each engine result (cols_per_cycle accumulators) goes out as parts of 4 lanes
        parts = cfg.cols_per_cycle // lanes
        part_bits = lanes * cfg.acc_width
        result = Signal.like(engine.results.payload)
        held = Signal()
        part = Signal(range(parts))
        n_block = Signal(16)
        last_part = part == parts - 1
        emit = dequant.acc.valid & dequant.acc.ready
        take = engine.results.valid & engine.results.ready
        m.d.comb += [dequant.acc.valid.eq(held),
                     dequant.acc.payload.acc.eq(Array(result.as_value()[i * part_bits:
                                                                        (i + 1) * part_bits]
                                                      for i in range(parts))[part]),
                     dequant.acc.payload.last.eq(last_part & (n_block == n_blocks - 1)),
                     engine.results.ready.eq(~held | (last_part & dequant.acc.ready))]
        with m.If(emit):
            m.d.sync += part.eq(Mux(last_part, 0, part + 1))
            with m.If(last_part):
                m.d.sync += [held.eq(0),
                             n_block.eq(Mux(n_block == n_blocks - 1, 0, n_block + 1))]
        with m.If(take):
            m.d.sync += [result.eq(engine.results.payload), held.eq(1), part.eq(0)]

        # ---- write data: the instruction's unit output ----
        # the LINEAR epilogue: Pointwise(pw_op, a = a row from DDR, b = the linear's output)
        with m.If(is_op(isa.Op.LINEAR) & epilogue):
            m.d.comb += [pw.i.valid.eq(dequant.y.valid & a_fifo.r_rdy),
                         pw.i.payload.op.eq(pw_op), pw.i.payload.a.eq(a_fifo.r_data),
                         pw.i.payload.b.eq(dequant.y.payload.y),
                         a_fifo.r_en.eq(dequant.y.valid & pw.i.ready & a_fifo.r_rdy)]
        linear_out = (Mux(epilogue, pw.o.valid, dequant.y.valid),
                      Mux(epilogue, pw.o.payload.as_value(), dequant.y.payload.y.as_value()))
        sources = {isa.Op.NORM: (norm.y, norm.y.payload.y),
                   isa.Op.LINEAR: (None, None),
                   isa.Op.ROPE: (rope.y, rope.y.payload),
                   isa.Op.ATTENTION: (attn.o, attn.o.payload),
                   isa.Op.POINTWISE: (pw.o, pw.o.payload)}
        for o, (port, payload) in sources.items():
            with m.If(is_op(o)):
                if port is None:                     # LINEAR: the dequantizer or the epilogue
                    m.d.comb += [out_fifo.w_en.eq(linear_out[0]),
                                 out_fifo.w_data.eq(linear_out[1])]
                    with m.If(epilogue):
                        m.d.comb += [pw.o.ready.eq(out_fifo.w_rdy),
                                     dequant.y.ready.eq(pw.i.ready & a_fifo.r_rdy)]
                    with m.Else():
                        m.d.comb += dequant.y.ready.eq(out_fifo.w_rdy)
                else:
                    m.d.comb += [out_fifo.w_en.eq(port.valid), out_fifo.w_data.eq(payload),
                                 port.ready.eq(out_fifo.w_rdy)]
        with m.If(drain):
            m.d.comb += [writer.data.valid.eq(1), writer.data.payload.eq(0)]
        with m.Else():
            m.d.comb += [writer.data.valid.eq(out_fifo.r_rdy),
                         writer.data.payload.eq(out_fifo.r_data),
                         out_fifo.r_en.eq(writer.data.ready & out_fifo.r_rdy)]

        # ---- sequencer ----
        pc = Signal(16)
        t = Signal(16)
        h = Signal(16)
        row0, row1, rowd = Signal(32), Signal(32), Signal(32)
        rowe = Signal(32)                            # LINEAR epilogue operand row
        off0, offd, kv_off = Signal(32), Signal(32), Signal(32)
        keys = Signal(16)                            # keys seen by query t
        seg = Signal(16)                             # NORM: segment of the row being read
        is_attention = is_op(isa.Op.ATTENTION)
        left = Signal(16)
        m.d.comb += left.eq(tokens - t)
        step_t = Signal(8)                           # tokens this iteration: a query tile or 1
        m.d.comb += step_t.eq(Mux(is_attention, Mux(left < tile, left, tile), 1))
        tile_keys = Signal(16)                       # keys of the tile's last query
        m.d.comb += tile_keys.eq(keys + step_t - 1)
        key_beats = Signal(32)
        m.d.comb += key_beats.eq(tile_keys * src1[3])
        iter_heads = Mux(is_op(isa.Op.NORM), 1, heads)
        fault_code = Signal(8)
        faulted = Signal()
        group_mask = Signal(16)
        m.d.comb += group_mask.eq((1 << group_shift[:4]) - 1)
        # A LINEAR's tokens are pipelined: the read side issues a token's reads while the
        # tokens before are still in the quantizer, engine and dequantizer; its write commands
        # ((token, head) in order) go out on their own, each as soon as the WriteDMA is idle.
        # ``in_quant``: tokens read into the quantizer not yet handed to the gearbox; a row is
        # read only while at most one other is, so it always finds a free quantizer bank.
        in_quant = Signal(2)
        w_pending, w_t, w_h = Signal(), Signal(16), Signal(16)
        w_row, w_off = Signal(32), Signal(32)

        def raise_fault(code):
            m.d.sync += [fault_code.eq(code), faulted.eq(1)]
            m.next = "FAULT"

        # consistency and size checks of the decoded instruction
        beats0, beats1, beatsd = src0[3], src1[3], dst[3]
        k_beats = steps_per_k * k_steps             # beats of K covered by k_steps K-steps
        lengths_ok = Signal()
        with m.Switch(op):
            with m.Case(isa.Op.NORM):
                m.d.comb += lengths_ok.eq((heads * beats0 <= row_beats)
                                          & (beats1 == heads * beats0) & (beatsd == beats1))
            with m.Case(isa.Op.LINEAR):
                m.d.comb += lengths_ok.eq(
                    (tokens <= self.max_tokens) & (k_steps != 0)
                    & (k_steps <= engine.max_k_steps) & (n_blocks != 0)
                    & (n_blocks <= engine.max_n_blocks) & (beats0 <= row_beats)
                    & (beats0 <= k_beats) & (beats0 + steps_per_k > k_beats)
                    & (beats1 == streamer.stream_beats(k_steps * n_blocks))
                    & (heads * beatsd == n_blocks * parts)
                    & (~epilogue | ((heads == 1) & (pw_op != 3))))
            with m.Case(isa.Op.ROPE):
                m.d.comb += lengths_ok.eq((beats0 == head_beats) & (beats1 == head_beats)
                                          & (beatsd == head_beats))
            with m.Case(isa.Op.ATTENTION):
                m.d.comb += lengths_ok.eq((keys0 != 0)
                                          & (keys0 + tokens - 1 <= self.max_context)
                                          & (beats0 == head_beats) & (beats1 == head_beats)
                                          & (beatsd == head_beats) & (group_shift < 16)
                                          & (tile != 0) & (tile <= self.attention_tile))
            with m.Case(isa.Op.POINTWISE):
                m.d.comb += lengths_ok.eq((heads == 1) & (beats0 <= row_beats)
                                          & (beats1 == beats0) & (beatsd == beats0)
                                          & (pw_op != 3))
        # LINEAR: the streamer's reads (all the stream's parts)
        weights_in_window = in_window(src1[0], streamer.region_beats(beats1))
        # the op must exist, and so must the Pointwise operation it streams through
        known_op = Signal()
        uses_pointwise = is_op(isa.Op.POINTWISE) | (is_op(isa.Op.LINEAR) & epilogue)
        pointwise_built = Cat(pw_op == op_.value for op_ in self.pointwise_ops).any()
        m.d.comb += known_op.eq((op >= int(min(isa.Op))) & (op <= int(max(isa.Op)))
                                & (~uses_pointwise | pointwise_built))

        m.d.comb += [regs.busy.eq(0), regs.done.eq(0), regs.fault.eq(0),
                     regs.fault_code.eq(fault_code), reader.clear.eq(0), writer.clear.eq(0)]

        axi_fault = Signal(8)
        m.d.comb += axi_fault.eq(Mux(reader.error | streamer.error, ErrorCode.AXI_READ,
                                     Mux(writer.error, ErrorCode.AXI_WRITE, 0)))
        m.d.comb += [streamer.start.eq(regs.start), streamer.program_addr.eq(regs.program_addr),
                     streamer.program_len.eq(regs.program_len),
                     streamer.window_lo.eq(window_lo), streamer.window_hi.eq(window_hi),
                     streamer.drain.eq(drain)]

        def iteration_reads(step):
            """(issue?, addr, beats, route) of read ``step`` of the current iteration."""
            yes = C(1, 1)
            table = {
                isa.Op.NORM: [(yes, row0 + off0, beats0, Route.NORM_X),
                              (yes, src1[0], beats1, Route.NORM_GAMMA)],
                isa.Op.LINEAR: [(h == 0, row0, beats0, Route.QUANT_X, in_quant != 2),
                                (epilogue & (h == 0), rowe, beatsd, Route.POINTWISE_A)],
                isa.Op.ROPE: [(yes, row0 + off0, beats0, Route.ROPE_X),
                              (yes, row1, beats1, Route.ROPE_TABLE)],
                isa.Op.ATTENTION: [(yes, row0 + off0, beats0 * step_t, Route.ATT_Q),
                                   (yes, src1[0] + kv_off, key_beats, Route.ATT_K),
                                   (yes, src1[0] + v_offset + kv_off, key_beats, Route.ATT_V)],
                isa.Op.POINTWISE: [(yes, row0, beats0, Route.POINTWISE_A),
                                   (yes, row1, beats1, Route.POINTWISE_B)],
            }
            return {o: reads[step] for o, reads in table.items() if step < len(reads)}

        def issue_read(options, next_state, segments=None):
            """Offer the op's read; with ``segments`` (op, count) that op's read repeats over
            ``count`` segments ``stride_h`` apart, only the last one ending the token."""
            with m.Switch(op):
                for o, (when, addr, beats, rt, *go) in options.items():
                    with m.Case(o):
                        more = C(0, 1)
                        if segments is not None and segments[0] == o:
                            more = seg + 1 < segments[1]
                            m.d.comb += rd_final.eq(~more)
                        m.d.comb += [rd_addr.eq(addr), rd_beats.eq(beats), rd_route.eq(rt)]
                        with m.If(~when):
                            m.next = next_state
                        with m.Elif(~rd_ok):
                            raise_fault(ErrorCode.ADDRESS_RANGE)
                        with m.Elif(go[0] if go else C(1, 1)):      # else wait
                            m.d.comb += rd_issue.eq(1)
                            with m.If(reader.cmd.ready):
                                with m.If(more):
                                    m.d.sync += [seg.eq(seg + 1), off0.eq(off0 + src0[2])]
                                with m.Else():
                                    m.next = next_state
                                    if segments is not None and segments[0] == o:
                                        m.d.sync += [seg.eq(0), off0.eq(0)]
                with m.Default():
                    m.next = next_state

        def linear_writes():
            """LINEAR: offer the next write command; in every state of the token loop."""
            with m.If(is_op(isa.Op.LINEAR) & w_pending):
                m.d.comb += [wr_addr.eq(w_row + w_off), wr_beats.eq(beatsd)]
                with m.If(~wr_ok):
                    raise_fault(ErrorCode.ADDRESS_RANGE)
                with m.Else():
                    m.d.comb += wr_issue.eq(1)
                    with m.If(writer.cmd.ready):
                        with m.If(w_h + 1 < heads):
                            m.d.sync += [w_h.eq(w_h + 1), w_off.eq(w_off + dst[2])]
                        with m.Else():
                            m.d.sync += [w_h.eq(0), w_off.eq(0), w_t.eq(w_t + 1),
                                         w_row.eq(w_row + dst[1])]
                            with m.If(w_t + 1 == tokens):
                                m.d.sync += w_pending.eq(0)

        read_in = reader.cmd.valid & reader.cmd.ready & (rd_route == Route.QUANT_X)
        handed = quant.q.valid & quant.q.ready & quant.q.payload.last
        m.d.sync += in_quant.eq(in_quant + read_in - handed)

        fetching = Signal()
        retire = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.d.sync += [pc.eq(0), faulted.eq(0), fault_code.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [regs.busy.eq(1), fetching.eq(1),
                             rd_addr.eq(regs.program_addr + (pc << 6)),
                             rd_beats.eq(isa.WORDS // 4), rd_route.eq(Route.INSTRUCTION),
                             rd_issue.eq(1)]
                m.d.sync += instr_beat.eq(0)
                with m.If(~rd_ok):
                    raise_fault(ErrorCode.ADDRESS_RANGE)
                with m.Elif(reader.cmd.ready):
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.comb += [regs.busy.eq(1), fetching.eq(1)]
                with m.If(axi_fault != 0):
                    raise_fault(axi_fault)
                with m.Elif(instr_beat == isa.WORDS // 4):
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += regs.busy.eq(1)
                m.d.sync += [t.eq(0), h.eq(0), row0.eq(src0[0]), row1.eq(src1[0]),
                             rowd.eq(dst[0]), rowe.eq(src1[1]), off0.eq(0), offd.eq(0),
                             kv_off.eq(0),
                             keys.eq(keys0), seg.eq(0), w_pending.eq(is_op(isa.Op.LINEAR)),
                             w_t.eq(0), w_h.eq(0), w_row.eq(dst[0]), w_off.eq(0)]
                with m.If(~known_op):
                    raise_fault(ErrorCode.BAD_OPCODE)
                with m.Elif(~lengths_ok | (tokens == 0) | (heads == 0) | (beats0 == 0)):
                    raise_fault(ErrorCode.BAD_LENGTH)
                with m.Elif(is_op(isa.Op.LINEAR) & ~weights_in_window):
                    raise_fault(ErrorCode.ADDRESS_RANGE)
                with m.Else():
                    m.next = "UNIT_JOB"
            with m.State("UNIT_JOB"):
                m.d.comb += regs.busy.eq(1)
                with m.If(is_op(isa.Op.ATTENTION)):
                    m.d.comb += [attn.job.valid.eq(1), attn.job.payload.keys.eq(tile_keys),
                                 attn.job.payload.queries.eq(step_t)]
                    with m.If(attn.job.ready):
                        m.next = "WRITE"
                with m.Else():
                    m.next = "WRITE"
                linear_writes()
            with m.State("WRITE"):
                m.d.comb += regs.busy.eq(1)
                with m.If(is_op(isa.Op.LINEAR)):
                    m.next = "READ0"
                with m.Else():
                    m.d.comb += [wr_addr.eq(rowd + offd),
                                 wr_beats.eq(Mux(is_attention, beatsd * step_t, beatsd))]
                    with m.If(~wr_ok):
                        raise_fault(ErrorCode.ADDRESS_RANGE)
                    with m.Else():
                        m.d.comb += wr_issue.eq(1)
                        with m.If(writer.cmd.ready):
                            m.next = "READ0"
                linear_writes()
            for step in range(3):
                with m.State(f"READ{step}"):
                    m.d.comb += regs.busy.eq(1)
                    issue_read(iteration_reads(step), f"READ{step + 1}" if step < 2 else "WAIT",
                               segments=(isa.Op.NORM, heads) if step == 0 else None)
                    linear_writes()
            with m.State("WAIT"):
                m.d.comb += regs.busy.eq(1)
                settled = ((remaining == 0) & reader.idle & writer.idle & ~writer.cmd.valid
                           & ~w_pending)
                with m.If(axi_fault != 0):
                    raise_fault(axi_fault)
                with m.Elif(is_op(isa.Op.LINEAR) & (t + 1 < tokens)):
                    # the next token's reads go out while this one is still on its way
                    m.d.sync += [t.eq(t + 1), row0.eq(row0 + src0[1]), rowe.eq(rowe + src1[2])]
                    m.next = "UNIT_JOB"
                with m.Elif(settled):
                    with m.If((h + 1 < iter_heads) & ~is_op(isa.Op.LINEAR)):
                        advance_kv = ((h + 1) & group_mask) == 0
                        m.d.sync += [h.eq(h + 1), off0.eq(off0 + src0[2]),
                                     offd.eq(offd + dst[2]),
                                     kv_off.eq(Mux(advance_kv, kv_off + src1[2], kv_off))]
                        m.next = "UNIT_JOB"
                    with m.Elif(t + step_t < tokens):
                        m.d.sync += [t.eq(t + step_t), h.eq(0), off0.eq(0), offd.eq(0),
                                     kv_off.eq(0), row0.eq(row0 + src0[1] * step_t),
                                     row1.eq(row1 + src1[1] * step_t),
                                     rowe.eq(rowe + src1[2]),
                                     rowd.eq(rowd + dst[1] * step_t), keys.eq(keys + step_t)]
                        m.next = "UNIT_JOB"
                    with m.Else():
                        m.d.comb += retire.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        with m.If(pc + 1 == regs.program_len):
                            with m.If(streamer.done):
                                m.next = "FINISH"
                            with m.Else():
                                m.next = "END"
                        with m.Else():
                            m.next = "FETCH"
                linear_writes()
            with m.State("END"):                     # the streamer's walk is not over yet
                m.d.comb += regs.busy.eq(1)
                with m.If(streamer.done):
                    m.next = "FINISH"
            with m.State("FAULT"):
                m.d.comb += [regs.busy.eq(1), drain.eq(1)]
                with m.If(reader.idle & writer.idle & ~reader.data.valid & streamer.idle):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [regs.busy.eq(1), unit_reset.eq(1), regs.done.eq(1),
                             regs.fault.eq(faulted), reader.clear.eq(1), writer.clear.eq(1)]
                m.d.sync += [remaining.eq(0), cos_held.eq(0), gear_fill.eq(0),
                             gear_full.eq(0), gear_ready.eq(0), n_block.eq(0), held.eq(0),
                             part.eq(0), seg.eq(0), off0.eq(0), in_quant.eq(0),
                             w_pending.eq(0), token_open.eq(0)]
                m.next = "IDLE"

        # ---- counters ----
        cycles = Signal(64)
        counters = [Signal(32, name=f"count_{n}") for n in COUNTERS]
        count = dict(zip(COUNTERS, counters, strict=True))
        with m.If(regs.start):
            m.d.sync += [cycles.eq(0)] + [counter.eq(0) for counter in counters]
        with m.Elif(regs.busy):
                m.d.sync += cycles.eq(cycles + 1)
        with m.If(retire):
            m.d.sync += count["instructions"].eq(count["instructions"] + 1)
        with m.If(fetching):
            m.d.sync += count["fetch_cycles"].eq(count["fetch_cycles"] + 1)
        with m.Elif(regs.busy):
            with m.If(is_op(isa.Op.LINEAR)):
                m.d.sync += count["linear_cycles"].eq(count["linear_cycles"] + 1)
            with m.Elif(is_op(isa.Op.ATTENTION)):
                m.d.sync += count["attention_cycles"].eq(count["attention_cycles"] + 1)
            with m.Else():
                m.d.sync += count["elementwise_cycles"].eq(count["elementwise_cycles"] + 1)
        read_beat = reader.data.valid & reader.data.ready
        weight_beats = [port.rvalid & port.rready for port in self.weight_ports]
        with m.If(read_beat | Cat(weight_beats).any()):
            m.d.sync += count["read_beats"].eq(count["read_beats"] + read_beat
                                               + sum(weight_beats))
        with m.If(writer.data.valid & writer.data.ready):
            m.d.sync += count["write_beats"].eq(count["write_beats"] + 1)
        m.d.comb += regs.cycles.eq(cycles)
        for i, counter in enumerate(counters):
            m.d.comb += regs.counter[i].eq(counter)
        return m
