# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top: a sequencer that runs ``golden.isa`` programs from DDR through the units.

Blocks::

    AXI-Lite ── Registers ── start/done/error, counters
                    │
    DDR (AXI4) ── ReadDMA ── router ─┬─ instruction words
                                     ├─ RMSNorm (x, gamma)          ─┐
                                     ├─ Quantizer ─ gear ─ Engine ─ splitter ─ Dequantizer
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
pass 2 when the dequantizer takes its amax, once the token before has left the gear (the
engine took its last K-step) and the dequantizer has started on its results, so tokens meet
only in the engine, which loops over them, and the dequantizer prepares a token's scale while
it streams the token before. The gear (``rtl.linear_chain.ActivationGear``) turns the
quantizer's beats into the engine's K-steps, the splitter (``ResultSplitter``) each engine
result into the dequantizer's beats. The LINEAR's write commands go out on their
own, (token, head) in order, each as soon as the WriteDMA is idle, and the instruction ends
once all are acknowledged. Before an instruction's first command, ``rtl.checks.InstructionCheck``
checks its op, its lengths and its whole extent against the DDR window (``DDR_BASE``,
``DDR_SIZE``): DECODE, then CHECK until its pipelined verdicts hold (``LATENCY`` cycles), so
no command is issued outside the window and no path between registers runs through the
checks' products and sums (the KV260's logic-level budget). An ATTENTION instruction's next
tile waits in TILE for its registered sizes (``TILE_LATENCY``).

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

from amaranth.hdl import Array, C, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa, ops
from ..golden.config import AcceleratorConfig, ModelConfig
from ..golden.ddr import TOP_READS_IN_FLIGHT, TOP_WRITES_IN_FLIGHT
from .attention import PrefillUnit
from .axi import ReadDMA, WriteDMA, axi4_signature, axilite_signature
from .checks import InstructionCheck
from .counter import Counter
from .elementwise import Pointwise, PointwiseOp, RMSNorm, RoPE
from .linear_chain import ActivationGear, ResultSplitter
from .quant import Dequantizer, Quantizer
from .regs import ErrorCode, Registers
from .router import ReadRouter, Route
from .tlmm import Engine
from .weight_stream import WeightStreamer

__all__ = ["Route", "COUNTERS", "GATE_OPS", "ddr_signature", "Accelerator"]

DATA_WIDTH = 8 * isa.BEAT_BYTES
#: cycles the sequencer waits in TILE after an ATTENTION instruction moves on to its next
#: tile: the tile's registered sizes follow ``t`` and ``keys`` four registers deep
TILE_LATENCY = 4


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

        # the sizes the sequencer's instruction checks need
        check_sizes = dict(row_beats=row_beats, head_beats=head_beats,
                           max_context=self.max_context, attention_tile=self.attention_tile,
                           pointwise_ops=self.pointwise_ops)

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
            # the linear chain's adapters: quantizer beats -> K-steps, results -> beats
            "gear": ActivationGear(lanes=lanes, k_per_step=cfg.k_per_step),
            "splitter": ResultSplitter(lanes=lanes, cols_per_cycle=cfg.cols_per_cycle,
                                       acc_width=cfg.acc_width),
            "rope": RoPE(lanes=lanes, head_dim=self.head_dim),
            "attention": PrefillUnit(queries=self.attention_tile, lanes=lanes,
                                     head_dim=self.head_dim, max_keys=self.max_context),
            "pointwise": Pointwise(lanes=lanes, ops=self.pointwise_ops),
            "router": ReadRouter(lanes=lanes),
            # operands that arrive before their unit takes them, and the unit outputs on their
            # way to the WriteDMA: deep enough that neither DMA ever waits for a unit (a
            # pipelined LINEAR has the epilogue rows of up to three tokens in ``a_fifo``, and
            # up to two tokens' outputs wait for their write, see ``sim.accelerator``)
            "rope_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=head_beats),
            "a_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=max(row_beats, 3 * job_beats)),
            "gamma_fifo": fifo.SyncFIFO(width=DATA_WIDTH, depth=row_beats),
            # (one beat more than it ever holds: its ``ready`` to the units is registered)
            "out_fifo": fifo.SyncFIFO(width=DATA_WIDTH,
                                      depth=max(row_beats, 2 * job_beats) + 1),
        }
        for name, unit in units.items():
            m.submodules[name] = ResetInserter(unit_reset)(unit)
        norm, quant, dequant = (units[n] for n in ("norm", "quant", "dequant"))
        gear, splitter = units["gear"], units["splitter"]
        streamer = units["streamer"]
        wiring.connect(m, streamer.job, engine.job)
        wiring.connect(m, streamer.entries, engine.weights)
        for outer, bus in zip(self.weight_ports, streamer.buses, strict=True):
            for name, member in bus.signature.members.items():
                port, inner = getattr(outer, name), getattr(bus, name)
                m.d.comb += (inner.eq(port) if member.flow == In else port.eq(inner))
        rope, attn, pw = units["rope"], units["attention"], units["pointwise"]
        router = units["router"]
        rope_fifo, a_fifo = units["rope_fifo"], units["a_fifo"]
        gamma_fifo, out_fifo = units["gamma_fifo"], units["out_fifo"]

        # ---- instruction register ----
        words = Array(Signal(32, name=f"word{i}") for i in range(isa.WORDS))
        op = Signal(8)
        m.d.comb += op.eq(words[0][:8])
        pw_op = words[0][8:10]
        epilogue = words[0][10]                      # LINEAR: output through Pointwise
        tokens, heads = words[1][:16], words[1][16:]
        n_blocks = words[2][16:]
        keys0, group_shift, tile = words[2][:16], words[2][16:24], words[2][24:32]
        w_m, w_e = words[3][:16], words[3][16:24]
        v_offset = words[3]
        src0 = [words[4 + i] for i in range(4)]     # addr, stride_t, stride_h, beats
        src1 = [words[8 + i] for i in range(4)]
        dst = [words[12 + i] for i in range(4)]

        # the op, decoded into registers: they follow the words by a cycle, which DECODE
        # already is after the words settle (the words only change in FETCH_WAIT, when no
        # unit or counter looks at the op)
        op_flags = {o: Signal(name=f"op_{o.name.lower()}") for o in isa.Op}
        m.d.sync += [flag.eq(op == int(o)) for o, flag in op_flags.items()]

        def is_op(o):
            return op_flags[o]

        # ---- read commands and the router ----
        rd_addr = Signal(32)
        rd_beats = Signal(20)
        rd_route = Signal(range(len(Route)))
        rd_issue = Signal()                          # the sequencer offers a read command
        rd_final = Signal(init=1)                    # ... which ends a token (``last``)
        wr_addr = Signal(32)
        wr_beats = Signal(20)
        wr_issue = Signal()
        drain = Signal()

        # the DDR window (registered: the registers are written long before a START)
        window_lo = regs.ddr_base
        window_hi = Signal(33)
        m.d.sync += window_hi.eq(regs.ddr_base + regs.ddr_size)
        m.d.comb += [
            reader.cmd.payload.addr.eq(rd_addr), reader.cmd.payload.beats.eq(rd_beats),
            reader.cmd.valid.eq(rd_issue),
            writer.cmd.payload.addr.eq(wr_addr), writer.cmd.payload.beats.eq(wr_beats),
            writer.cmd.valid.eq(wr_issue),
        ]

        # the router hands each read command's beats to the unit input it is tagged with
        m.d.comb += [router.cmd_taken.eq(reader.cmd.valid & reader.cmd.ready),
                     router.cmd_route.eq(rd_route), router.cmd_beats.eq(rd_beats),
                     router.cmd_final.eq(rd_final), router.drain.eq(drain)]
        wiring.connect(m, reader.data, router.data)
        for source, sink in ((router.norm_x, norm.x), (router.quant_x, quant.x),
                             (router.rope_table, rope.table), (router.att_q, attn.q),
                             (router.att_k, attn.k), (router.att_v, attn.v)):
            wiring.connect(m, source, sink)
        for source, sink in ((router.norm_gamma, gamma_fifo), (router.rope_x, rope_fifo),
                             (router.pointwise_a, a_fifo)):
            m.d.comb += [sink.w_en.eq(source.valid), sink.w_data.eq(source.payload),
                         source.ready.eq(sink.w_rdy)]
        instr_beat = Signal(3)
        m.d.comb += router.instruction.ready.eq(1)
        with m.If(router.instruction.valid):
            for i in range(isa.WORDS):
                with m.If(instr_beat == i // 4):
                    m.d.sync += words[i].eq(router.instruction.payload[32 * (i % 4):
                                                                       32 * (i % 4 + 1)])
            m.d.sync += instr_beat.eq(instr_beat + 1)
        # a Pointwise b beat goes in with the a beat buffered before it
        pw_b = router.pointwise_b
        m.d.comb += pw_b.ready.eq(pw.i.ready & a_fifo.r_rdy)
        with m.If(pw_b.valid):
            m.d.comb += [pw.i.valid.eq(a_fifo.r_rdy), pw.i.payload.op.eq(pw_op),
                         pw.i.payload.a.eq(a_fifo.r_data), pw.i.payload.b.eq(pw_b.payload),
                         a_fifo.r_en.eq(pw.i.ready & a_fifo.r_rdy)]
        for source, sink in ((rope_fifo, rope.x), (gamma_fifo, norm.gamma)):
            m.d.comb += [sink.valid.eq(source.r_rdy), sink.payload.eq(source.r_data),
                         source.r_en.eq(sink.ready & source.r_rdy)]

        # ---- the linear chain: quantizer -> gear -> engine -> splitter -> dequantizer ----
        wiring.connect(m, quant.q, gear.i)
        wiring.connect(m, gear.o, engine.activations)
        wiring.connect(m, engine.results, splitter.results)
        wiring.connect(m, splitter.acc, dequant.acc)
        m.d.comb += splitter.n_blocks.eq(n_blocks)
        # A token's amax goes to the dequantizer (and its pass 2 starts) once the token before
        # has left the quantizer and the gear: the engine has taken its last K-step, so the
        # tokens meet only in the engine, which loops over them.
        token_open = Signal()
        gear_clear = ~token_open & gear.empty
        m.d.comb += [dequant.scale.valid.eq(quant.amax.valid & gear_clear),
                     dequant.scale.payload.amax.eq(quant.amax.payload),
                     dequant.scale.payload.w_m.eq(w_m), dequant.scale.payload.w_e.eq(w_e),
                     quant.amax.ready.eq(dequant.scale.ready & gear_clear)]
        with m.If(quant.amax.valid & quant.amax.ready):
            m.d.sync += token_open.eq(1)
        with m.If(quant.q.valid & quant.q.ready & quant.q.payload.last):
            m.d.sync += token_open.eq(0)

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
        # the units' ready into the output FIFO, registered: a free beat as of the cycle
        # before, so at least one now (its level never comes near; the extra beat of depth)
        out_ready = Signal()
        m.d.sync += out_ready.eq(out_fifo.level < out_fifo.depth - 1)
        for o, (port, payload) in sources.items():
            with m.If(is_op(o)):
                if port is None:                     # LINEAR: the dequantizer or the epilogue
                    m.d.comb += [out_fifo.w_en.eq(linear_out[0] & out_ready),
                                 out_fifo.w_data.eq(linear_out[1])]
                    with m.If(epilogue):
                        m.d.comb += [pw.o.ready.eq(out_ready),
                                     dequant.y.ready.eq(pw.i.ready & a_fifo.r_rdy)]
                    with m.Else():
                        m.d.comb += dequant.y.ready.eq(out_ready)
                else:
                    m.d.comb += [out_fifo.w_en.eq(port.valid & out_ready),
                                 out_fifo.w_data.eq(payload), port.ready.eq(out_ready)]
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
        row0 = Signal(32)
        row1 = Signal(32)
        rowd = Signal(32)
        rowe = Signal(32)                            # LINEAR epilogue operand row
        off0 = Signal(32)
        offd = Signal(32)
        kv_off = Signal(32)
        keys = Signal(16)                            # keys seen by query t
        seg = Signal(16)                             # NORM: segment of the row being read
        is_attention = is_op(isa.Op.ATTENTION)
        # The iteration's sizes, registered from ``t`` and ``keys`` (``TILE_LATENCY`` cycles
        # after they change: the TILE state waits for them): tokens this iteration (a query
        # tile or 1), the keys of its last query, its query (and output) and key lengths,
        # and whether a tile follows. No general product: an ATTENTION's rows are
        # ``head_beats`` long (its checks), and it moves on only from a whole tile, whose
        # rows are contiguous, so the next tile's rows are ``tile * 16 * head_beats`` bytes on
        # (a tile of one: ``stride_t``).
        left = Signal(16)
        step_t = Signal(8)
        tile_keys = Signal(16)
        q_beats = Signal(20)
        key_beats = Signal(32)
        more_tiles = Signal()
        tile_bytes = Signal(32)
        m.d.sync += [
            left.eq(tokens - t),
            step_t.eq(Mux(is_attention, Mux(left < tile, left, tile), 1)),
            more_tiles.eq(left > step_t),
            tile_keys.eq(keys + step_t - 1),
            q_beats.eq(step_t * head_beats),
            key_beats.eq(tile_keys * head_beats),
            tile_bytes.eq(tile * (isa.BEAT_BYTES * head_beats)),
        ]
        steps = [Signal(32, name=f"tile_step{i}") for i in range(3)]       # src0, src1, dst
        m.d.sync += [step.eq(Mux(is_attention & (tile != 1), tile_bytes, stride))
                     for step, stride in zip(steps, (src0[1], src1[1], dst[1]), strict=True)]
        iter_heads = Mux(is_op(isa.Op.NORM), 1, heads)
        fault_code = Signal(8)
        faulted = Signal()
        group_mask = Signal(16)                      # (registered: the words are held)
        m.d.sync += group_mask.eq((1 << group_shift[:4]) - 1)
        # A LINEAR's tokens are pipelined: the read side issues a token's reads while the
        # tokens before are still in the quantizer, engine and dequantizer; its write commands
        # ((token, head) in order) go out on their own, each as soon as the WriteDMA is idle.
        # ``in_quant``: tokens read into the quantizer not yet handed to the gearbox; a row is
        # read only while at most one other is, so it always finds a free quantizer bank.
        in_quant = Signal(2)
        w_pending = Signal()
        w_t = Signal(16)
        w_h = Signal(16)
        w_row = Signal(32)
        w_off = Signal(32)
        # The commands' addresses, each the registered sum of its row and offset registers: a
        # sum is a cycle behind its parts, which never matters, because no command is offered
        # to an idle DMA in the cycle after its parts change (the state after WAIT is never a
        # READ or WRITE, and the next NORM segment or LINEAR write waits for the busy DMA).
        v_base = Signal(32)                          # the value cache
        addr0, addr_k, addr_v, addr_d, addr_w = (Signal(32, name=f"addr_{n}")
                                                 for n in ("src0", "k", "v", "dst", "w"))
        m.d.sync += [v_base.eq(src1[0] + v_offset), addr0.eq(row0 + off0),
                     addr_k.eq(src1[0] + kv_off), addr_v.eq(v_base + kv_off),
                     addr_d.eq(rowd + offd), addr_w.eq(w_row + w_off)]
        # the loop conditions, registered the same way (a counter changes a cycle before
        # its state moves on, and is next looked at several cycles later)
        last_head = Signal()
        w_last_head = Signal()
        w_last_token = Signal()
        advance_kv = Signal()                        # the next head reads the next KV head
        last_segment = Signal()                      # NORM: the row's last segment
        m.d.sync += [last_head.eq(h + 1 >= iter_heads), w_last_head.eq(w_h + 1 >= heads),
                     w_last_token.eq(w_t + 1 == tokens),
                     advance_kv.eq(((h + 1) & group_mask) == 0),
                     last_segment.eq(seg + 1 >= heads)]
        fetch_addr = Signal(32)                      # the instruction at ``pc``
        final_pc = Signal()                          # ``pc`` is the program's last instruction
        m.d.sync += final_pc.eq(pc + 1 == regs.program_len)

        def raise_fault(code):
            m.d.sync += [fault_code.eq(code), faulted.eq(1)]
            m.next = "FAULT"

        # the decoded instruction's checks: its op, its lengths, its whole extent in the window
        m.submodules.check = check = InstructionCheck(
            config=cfg, max_tokens=self.max_tokens, max_k_steps=engine.max_k_steps,
            max_n_blocks=engine.max_n_blocks, **check_sizes)
        m.d.comb += [check.words.eq(Cat(words)), check.window_lo.eq(window_lo),
                     check.window_hi.eq(window_hi)]
        check_wait = Signal(range(InstructionCheck.LATENCY))
        checking = Signal()             # the checks run from the fetch to the verdicts
        m.d.comb += check.enable.eq(checking)
        tile_wait = Signal(range(TILE_LATENCY))
        beats0, beats1, beatsd = src0[3], src1[3], dst[3]

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
                isa.Op.NORM: [(yes, addr0, beats0, Route.NORM_X),
                              (yes, src1[0], beats1, Route.NORM_GAMMA)],
                isa.Op.LINEAR: [(h == 0, row0, beats0, Route.QUANT_X, in_quant != 2),
                                (epilogue & (h == 0), rowe, beatsd, Route.POINTWISE_A)],
                isa.Op.ROPE: [(yes, addr0, beats0, Route.ROPE_X),
                              (yes, row1, beats1, Route.ROPE_TABLE)],
                isa.Op.ATTENTION: [(yes, addr0, q_beats, Route.ATT_Q),
                                   (yes, addr_k, key_beats, Route.ATT_K),
                                   (yes, addr_v, key_beats, Route.ATT_V)],
                isa.Op.POINTWISE: [(yes, row0, beats0, Route.POINTWISE_A),
                                   (yes, row1, beats1, Route.POINTWISE_B)],
            }
            return {o: reads[step] for o, reads in table.items() if step < len(reads)}

        def issue_read(options, next_state, segmented=None):
            """Offer the op's read; the ``segmented`` op's read repeats over ``heads``
            segments ``stride_h`` apart (``last_segment``), only the last one ending the
            token."""
            for i, (o, (when, addr, beats, rt, *go)) in enumerate(options.items()):
                with (m.If if i == 0 else m.Elif)(is_op(o)):
                    more = C(0, 1)
                    if segmented == o:
                        more = ~last_segment
                        m.d.comb += rd_final.eq(~more)
                    m.d.comb += [rd_addr.eq(addr), rd_beats.eq(beats), rd_route.eq(rt)]
                    with m.If(~when):
                        m.next = next_state
                    with m.Elif(go[0] if go else C(1, 1)):      # else wait
                        m.d.comb += rd_issue.eq(1)
                        with m.If(reader.cmd.ready):
                            with m.If(more):
                                m.d.sync += [seg.eq(seg + 1), off0.eq(off0 + src0[2])]
                            with m.Else():
                                m.next = next_state
                                if segmented == o:
                                    m.d.sync += [seg.eq(0), off0.eq(0)]
            with m.Else():
                m.next = next_state

        def linear_writes():
            """LINEAR: offer the next write command; in every state of the token loop."""
            with m.If(is_op(isa.Op.LINEAR) & w_pending):
                m.d.comb += [wr_addr.eq(addr_w), wr_beats.eq(beatsd), wr_issue.eq(1)]
                with m.If(writer.cmd.ready):
                    with m.If(~w_last_head):
                        m.d.sync += [w_h.eq(w_h + 1), w_off.eq(w_off + dst[2])]
                    with m.Else():
                        m.d.sync += [w_h.eq(0), w_off.eq(0), w_t.eq(w_t + 1),
                                     w_row.eq(w_row + dst[1])]
                        with m.If(w_last_token):
                            m.d.sync += w_pending.eq(0)

        read_in = reader.cmd.valid & reader.cmd.ready & (rd_route == Route.QUANT_X)
        handed = quant.q.valid & quant.q.ready & quant.q.payload.last
        m.d.sync += in_quant.eq(in_quant + read_in - handed)

        fetching = Signal()
        retire = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.d.sync += [pc.eq(0), fetch_addr.eq(regs.program_addr), faulted.eq(0),
                                 fault_code.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [regs.busy.eq(1), fetching.eq(1),
                             rd_addr.eq(fetch_addr),
                             rd_beats.eq(isa.WORDS // 4), rd_route.eq(Route.INSTRUCTION),
                             rd_issue.eq(1)]
                m.d.sync += instr_beat.eq(0)
                with m.If(reader.cmd.ready):              # (the program is in the window:
                    m.next = "FETCH_WAIT"                 # ``Registers`` checks it at START)
                    m.d.sync += checking.eq(1)
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
                             w_t.eq(0), w_h.eq(0), w_row.eq(dst[0]), w_off.eq(0),
                             check_wait.eq(InstructionCheck.LATENCY - 2)]
                m.next = "CHECK"
            with m.State("CHECK"):                   # the checks' verdicts on the words
                m.d.comb += regs.busy.eq(1)
                m.d.sync += check_wait.eq(check_wait - 1)
                with m.If(check_wait == 0):
                    m.d.sync += checking.eq(0)
                    with m.If(~check.known_op):
                        raise_fault(ErrorCode.BAD_OPCODE)
                    with m.Elif(~check.lengths_ok):
                        raise_fault(ErrorCode.BAD_LENGTH)
                    with m.Elif(~check.range_ok):
                        raise_fault(ErrorCode.ADDRESS_RANGE)
                    with m.Else():
                        m.next = "UNIT_JOB"
            with m.State("TILE"):                    # the next tile's sizes, registered
                m.d.comb += regs.busy.eq(1)
                m.d.sync += tile_wait.eq(tile_wait - 1)
                with m.If(tile_wait == 0):
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
                    m.d.comb += [wr_addr.eq(addr_d),
                                 wr_beats.eq(Mux(is_attention, q_beats, beatsd)), wr_issue.eq(1)]
                    with m.If(writer.cmd.ready):
                        m.next = "READ0"
                linear_writes()
            for step in range(3):
                with m.State(f"READ{step}"):
                    m.d.comb += regs.busy.eq(1)
                    issue_read(iteration_reads(step), f"READ{step + 1}" if step < 2 else "WAIT",
                               segmented=isa.Op.NORM if step == 0 else None)
                    linear_writes()
            with m.State("WAIT"):
                m.d.comb += regs.busy.eq(1)
                settled = (~router.busy & reader.idle & writer.idle & ~writer.cmd.valid
                           & ~w_pending)
                with m.If(axi_fault != 0):
                    raise_fault(axi_fault)
                with m.Elif(is_op(isa.Op.LINEAR) & more_tiles):
                    # the next token's reads go out while this one is still on its way
                    m.d.sync += [t.eq(t + step_t), row0.eq(row0 + steps[0]),  # (1, stride_t)
                                 rowe.eq(rowe + src1[2])]
                    m.next = "UNIT_JOB"
                with m.Elif(settled):
                    with m.If(~last_head & ~is_op(isa.Op.LINEAR)):
                        m.d.sync += [h.eq(h + 1), off0.eq(off0 + src0[2]),
                                     offd.eq(offd + dst[2]),
                                     kv_off.eq(Mux(advance_kv, kv_off + src1[2], kv_off))]
                        m.next = "UNIT_JOB"
                    with m.Elif(more_tiles):
                        m.d.sync += [t.eq(t + step_t), h.eq(0), off0.eq(0), offd.eq(0),
                                     kv_off.eq(0), row0.eq(row0 + steps[0]),
                                     row1.eq(row1 + steps[1]), rowe.eq(rowe + src1[2]),
                                     rowd.eq(rowd + steps[2]), keys.eq(keys + step_t),
                                     tile_wait.eq(TILE_LATENCY - 1)]
                        with m.If(is_attention):
                            m.next = "TILE"
                        with m.Else():
                            m.next = "UNIT_JOB"
                    with m.Else():
                        m.d.comb += retire.eq(1)
                        m.d.sync += [pc.eq(pc + 1),
                                     fetch_addr.eq(fetch_addr + isa.INSTRUCTION_BYTES)]
                        with m.If(final_pc):
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
                m.d.sync += [seg.eq(0), off0.eq(0), in_quant.eq(0), w_pending.eq(0),
                             token_open.eq(0)]
                m.next = "IDLE"

        # ---- counters (``Counter``: no carry chain wider than 16 bits). Each counts its
        # event a cycle late (a registered increment, off the FSM's and the
        # handshakes' paths): a run's counts are complete the cycle after its FINISH, before
        # the host can see DONE and read them ----
        ports = len(self.weight_ports)
        counting = {"cycles": Counter(64)} | {
            name: Counter(32, inc_width=(ports + 1).bit_length() if name == "read_beats" else 1)
            for name in COUNTERS}
        read_beat = reader.data.valid & reader.data.ready
        weight_beats = [port.rvalid & port.rready for port in self.weight_ports]
        m.d.sync += [counting["cycles"].inc.eq(regs.busy),
                     counting["instructions"].inc.eq(retire),
                     counting["fetch_cycles"].inc.eq(fetching),
                     counting["read_beats"].inc.eq(read_beat + sum(weight_beats)),
                     counting["write_beats"].inc.eq(writer.data.valid & writer.data.ready),
                     *(counting[f"{kind}_cycles"].inc.eq(regs.busy & ~fetching & flag)
                       for kind, flag in (("linear", is_op(isa.Op.LINEAR)),
                                          ("attention", is_op(isa.Op.ATTENTION)),
                                          ("elementwise", ~is_op(isa.Op.LINEAR)
                                           & ~is_op(isa.Op.ATTENTION))))]
        for name, counter in counting.items():
            m.submodules[f"count_{name}"] = counter
            m.d.comb += counter.clear.eq(regs.start)
        cycles = counting["cycles"].value
        counters = [counting[name].value for name in COUNTERS]
        m.d.comb += regs.cycles.eq(cycles)
        for i, counter in enumerate(counters):
            m.d.comb += regs.counter[i].eq(counter)
        return m
