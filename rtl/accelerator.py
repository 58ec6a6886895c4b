# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top: a sequencer that runs ``golden.isa`` programs from DDR through the units.

Blocks::

    AXI-Lite ── Registers ── start/done/error, counters
                    │
                Sequencer ── read and write commands, attention jobs
                    │
    DDR (AXI4) ── ReadDMA ── router ─┬─ instruction words (to the Sequencer)
                                     ├─ RMSNorm (x, gamma)          ─┐
                                     ├─ Quantizer ─ gear ─ Engine ─ splitter ─ Dequantizer
                                     ├─ FIFO ─ RoPE (x, table)       ├─ WriteDMA ── DDR
                                     ├─ PrefillUnit (q, k, v)        │
                                     └─ FIFO ─ Pointwise (a, b)     ─┘
    DDR (AXI4 x P) ── WeightStreamer ── engine jobs and weight entries ── Engine

The sequencer (``rtl.sequencer.Sequencer``) fetches one instruction at a time, checks it
against the DDR window and the units' limits (``rtl.checks.InstructionCheck``), then iterates
over its ``tokens`` x ``heads``: the iteration's unit job, its write command and its read
commands, each read tagged with the unit input it feeds (``rtl.router.ReadRouter`` hands the
beats on), and it waits until the reads are consumed and the writes acknowledged. A LINEAR's
tokens are pipelined instead: token t + 1's row is read while token t is still in pass 2, the
engine and the dequantizer (``Quantizer``'s ping-pong buffer: at most two rows in it). The
quantizer starts a token's pass 2 when the dequantizer takes its amax, once the token before
has left the gear (the engine took its last K-step) and the dequantizer has started on its
results, so tokens meet only in the engine, which loops over them, and the dequantizer
prepares a token's scale while it streams the token before. The gear
(``rtl.linear_chain.ActivationGear``) turns the quantizer's beats into the engine's K-steps,
the splitter (``ResultSplitter``) each engine result into the dequantizer's beats.

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

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa, ops
from ..golden.config import AcceleratorConfig, ModelConfig
from ..golden.ddr import TOP_READS_IN_FLIGHT, TOP_WRITES_IN_FLIGHT
from .attention import PrefillUnit
from .axi import ReadDMA, WriteDMA, axi4_signature, axilite_signature
from .counter import Counter
from .elementwise import Pointwise, PointwiseOp, RMSNorm, RoPE
from .linear_chain import ActivationGear, ResultSplitter
from .quant import Dequantizer, Quantizer
from .regs import Registers
from .router import ReadRouter, Route
from .sequencer import Sequencer
from .tlmm import Engine
from .weight_stream import WeightStreamer

__all__ = ["Route", "COUNTERS", "GATE_OPS", "ddr_signature", "Accelerator"]

DATA_WIDTH = 8 * isa.BEAT_BYTES


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

        # ---- the sequencer: the instruction FSM and its DMA commands ----
        m.submodules.sequencer = seq = Sequencer(
            config=cfg, max_tokens=self.max_tokens, max_k_steps=engine.max_k_steps,
            max_n_blocks=engine.max_n_blocks, row_beats=row_beats, head_beats=head_beats,
            max_context=self.max_context, attention_tile=self.attention_tile,
            pointwise_ops=self.pointwise_ops)

        def is_op(o):
            return getattr(seq.op, o.name.lower())

        # the DDR window (registered: the registers are written long before a START)
        window_hi = Signal(33)
        m.d.sync += window_hi.eq(regs.ddr_base + regs.ddr_size)
        m.d.comb += [
            seq.start.eq(regs.start), seq.program_addr.eq(regs.program_addr),
            seq.program_len.eq(regs.program_len),
            seq.window_lo.eq(regs.ddr_base), seq.window_hi.eq(window_hi),
            reader.cmd.payload.addr.eq(seq.read.payload.addr),
            reader.cmd.payload.beats.eq(seq.read.payload.beats),
            reader.cmd.valid.eq(seq.read.valid), seq.read.ready.eq(reader.cmd.ready),
            writer.cmd.valid.eq(seq.write.valid), writer.cmd.payload.eq(seq.write.payload),
            seq.write.ready.eq(writer.cmd.ready),
            seq.quant_row_done.eq(quant.q.valid & quant.q.ready & quant.q.payload.last),
            seq.reads_idle.eq(~router.busy & reader.idle), seq.writes_idle.eq(writer.idle),
            seq.read_error.eq(reader.error | streamer.error), seq.write_error.eq(writer.error),
            seq.drained.eq(reader.idle & writer.idle & ~reader.data.valid & streamer.idle),
            seq.streamer_done.eq(streamer.done),
            regs.busy.eq(seq.busy), regs.done.eq(seq.done), regs.fault.eq(seq.fault),
            regs.fault_code.eq(seq.fault_code),
            # every run ends with a one-cycle reset of the units and the DMAs' error flags
            unit_reset.eq(seq.done), reader.clear.eq(seq.done), writer.clear.eq(seq.done),
            streamer.start.eq(regs.start), streamer.program_addr.eq(regs.program_addr),
            streamer.program_len.eq(regs.program_len),
            streamer.window_lo.eq(regs.ddr_base), streamer.window_hi.eq(window_hi),
            streamer.drain.eq(seq.drain),
        ]
        wiring.connect(m, router.instruction, seq.instruction)
        m.d.comb += [attn.job.valid.eq(seq.attention_job.valid),
                     attn.job.payload.keys.eq(seq.attention_job.payload.keys),
                     attn.job.payload.queries.eq(seq.attention_job.payload.queries),
                     seq.attention_job.ready.eq(attn.job.ready)]
        pw_op, epilogue = seq.pw_op, seq.epilogue

        # the router hands each read command's beats to the unit input it is tagged with
        m.d.comb += [router.cmd_taken.eq(reader.cmd.valid & reader.cmd.ready),
                     router.cmd_route.eq(seq.read.payload.route),
                     router.cmd_beats.eq(seq.read.payload.beats),
                     router.cmd_final.eq(seq.read.payload.final), router.drain.eq(seq.drain)]
        wiring.connect(m, reader.data, router.data)
        for source, sink in ((router.norm_x, norm.x), (router.quant_x, quant.x),
                             (router.rope_table, rope.table), (router.att_q, attn.q),
                             (router.att_k, attn.k), (router.att_v, attn.v)):
            wiring.connect(m, source, sink)
        for source, sink in ((router.norm_gamma, gamma_fifo), (router.rope_x, rope_fifo),
                             (router.pointwise_a, a_fifo)):
            m.d.comb += [sink.w_en.eq(source.valid), sink.w_data.eq(source.payload),
                         source.ready.eq(sink.w_rdy)]
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
        m.d.comb += splitter.n_blocks.eq(seq.n_blocks)
        # A token's amax goes to the dequantizer (and its pass 2 starts) once the token before
        # has left the quantizer and the gear: the engine has taken its last K-step, so the
        # tokens meet only in the engine, which loops over them.
        token_open = Signal()
        gear_clear = ~token_open & gear.empty
        m.d.comb += [dequant.scale.valid.eq(quant.amax.valid & gear_clear),
                     dequant.scale.payload.amax.eq(quant.amax.payload),
                     dequant.scale.payload.w_m.eq(seq.w_m),
                     dequant.scale.payload.w_e.eq(seq.w_e),
                     quant.amax.ready.eq(dequant.scale.ready & gear_clear)]
        with m.If(quant.amax.valid & quant.amax.ready):
            m.d.sync += token_open.eq(1)
        with m.If(quant.q.valid & quant.q.ready & quant.q.payload.last):
            m.d.sync += token_open.eq(0)
        with m.If(seq.done):
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
        with m.If(seq.drain):
            m.d.comb += [writer.data.valid.eq(1), writer.data.payload.eq(0)]
        with m.Else():
            m.d.comb += [writer.data.valid.eq(out_fifo.r_rdy),
                         writer.data.payload.eq(out_fifo.r_data),
                         out_fifo.r_en.eq(writer.data.ready & out_fifo.r_rdy)]

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
                     counting["instructions"].inc.eq(seq.retire),
                     counting["fetch_cycles"].inc.eq(seq.fetching),
                     counting["read_beats"].inc.eq(read_beat + sum(weight_beats)),
                     counting["write_beats"].inc.eq(writer.data.valid & writer.data.ready),
                     *(counting[f"{kind}_cycles"].inc.eq(regs.busy & ~seq.fetching & flag)
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
