# SPDX-License-Identifier: BSD-3-Clause
"""The top's sequencer: it runs a ``golden.isa`` program, one instruction at a time, by
issuing the DMA commands and unit jobs each instruction implies.

It fetches an instruction (a read command of four beats, tagged ``Route.INSTRUCTION``; the
router hands the beats back on ``instruction``), then DECODE, then CHECK until
``rtl.checks.InstructionCheck``'s pipelined verdicts on the words hold (``LATENCY`` cycles:
its op, its lengths, its whole extent against the DDR window), so no command is issued
outside the window and no path between registers runs through the checks' products and sums.
It then iterates over the instruction's ``tokens`` x ``heads``: per iteration the unit's job
(UNIT_JOB: an attention tile's keys and queries), the write command (WRITE), up to three read
commands (READ0..READ2, each tagged with the unit input it feeds), and WAIT until the read
stream is consumed and every write is acknowledged (``reads_idle``, ``writes_idle``). An
ATTENTION instruction's next tile waits in TILE for its registered sizes (``TILE_LATENCY``).

A LINEAR's tokens are pipelined instead: the sequencer reads token t + 1's row (and its
epilogue row) as soon as the ReadDMA is free and the quantizer has a bank for it (at most two
rows in the quantizer: ``quant_row_done`` says when one has left it), while token t is still
on its way; the LINEAR's write commands go out on their own, (token, head) in order, each as
soon as the WriteDMA takes it, and the instruction ends once all are acknowledged.

Faults (a bad opcode, an inconsistent or oversized length, an address outside the window, an
AXI error on a read or write, ``read_error`` and ``write_error``) go to FAULT: ``drain`` until
the top says the outstanding transfers are gone (``drained``). Every run ends in FINISH: one
cycle of ``done`` (the top resets its units and clears its DMAs then), with ``fault`` and
``fault_code`` if it faulted. A program whose last instruction is done waits in END for the
weight streamer's walk (``streamer_done``).

Timing (what ``sim.accelerator`` builds on, with commands accepted at once): DECODE is two
cycles after the last instruction beat, the first UNIT_JOB ``InstructionCheck.LATENCY``
cycles after DECODE, WRITE the cycle after UNIT_JOB and READ0 the cycle after WRITE; each read
command moves on the cycle after it is accepted; after WAIT settles, the next iteration's
UNIT_JOB (a new tile: TILE, ``TILE_LATENCY`` cycles, first) or the next FETCH is the next
cycle.
"""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa
from .axi import dma_command_layout
from .checks import InstructionCheck, instruction_fields
from .regs import ErrorCode
from .router import Route

__all__ = ["TILE_LATENCY", "read_command_layout", "Sequencer"]

#: cycles the sequencer waits in TILE after an ATTENTION instruction moves on to its next
#: tile: the tile's registered sizes follow ``t`` and ``keys`` four registers deep
TILE_LATENCY = 4


def read_command_layout() -> data.StructLayout:
    """A read command: the DMA's ``addr`` and ``beats``, the ``route`` of its beats and
    ``final`` (its last beat ends a token)."""
    return data.StructLayout({**dma_command_layout().members,
                              "route": range(len(Route)), "final": 1})


def op_flags_layout() -> data.StructLayout:
    """One flag per ``isa.Op``, by its lower-case name: the decoded op (registered)."""
    return data.StructLayout({o.name.lower(): 1 for o in isa.Op})


class Sequencer(wiring.Component):
    """The instruction FSM of the top (see the module docstring).

    Parameters
    ----------
    config, max_tokens, max_k_steps, max_n_blocks, row_beats, head_beats, max_context,
    attention_tile, pointwise_ops
        The limits its ``InstructionCheck`` checks against (see there); ``head_beats`` also
        sizes an attention tile's query and key reads.

    Attributes
    ----------
    start : In(1)
        Begin the program at ``program_addr`` (``program_len`` instructions).
    program_addr, program_len : In(32), In(16)
    window_lo, window_hi : In(32), In(33)
        The DDR window ``[window_lo, window_hi)``.
    instruction : In(stream.Signature(unsigned(128)))
        The fetched instruction's beats (always ready).
    read : Out(stream.Signature(read_command_layout()))
        Read commands for the ReadDMA, tagged for the router.
    write : Out(stream.Signature(dma_command_layout()))
        Write commands for the WriteDMA.
    attention_job : Out(stream.Signature(StructLayout({"keys": 16, "queries": 8})))
        An attention tile: its last query's keys and its queries.
    quant_row_done : In(1)
        The quantizer handed a token's last beat on (a bank is free again).
    reads_idle, writes_idle : In(1)
        Every beat of the reads issued has been taken; every write is acknowledged.
    read_error, write_error : In(1)
        An AXI error response (sticky until ``done``).
    drained : In(1)
        FAULT: no transfer is outstanding any more.
    streamer_done : In(1)
        The weight streamer's walk is over.
    op : Out(op_flags_layout())
        The decoded op of the instruction in hand.
    pw_op, epilogue, n_blocks, w_m, w_e : Out
        Its fields for the datapath (``golden.isa``'s words).
    busy, done, fault : Out(1)
        Running; the FINISH cycle; FINISH of a faulted run.
    fault_code : Out(8)
        The ``ErrorCode`` of the fault (0 if none).
    drain : Out(1)
        FAULT: discard every read beat, write zeros.
    fetching, retire : Out(1)
        In FETCH or FETCH_WAIT; an instruction retires this cycle.
    """

    def __init__(self, *, config, max_tokens: int, max_k_steps: int, max_n_blocks: int,
                 row_beats: int, head_beats: int, max_context: int, attention_tile: int,
                 pointwise_ops: tuple):
        self.check_sizes = dict(config=config, max_tokens=max_tokens, max_k_steps=max_k_steps,
                                max_n_blocks=max_n_blocks, row_beats=row_beats,
                                head_beats=head_beats, max_context=max_context,
                                attention_tile=attention_tile, pointwise_ops=pointwise_ops)
        self.head_beats = head_beats
        super().__init__({
            "start": In(1),
            "program_addr": In(32),
            "program_len": In(16),
            "window_lo": In(32),
            "window_hi": In(33),
            "instruction": In(stream.Signature(8 * isa.BEAT_BYTES)),
            "read": Out(stream.Signature(read_command_layout())),
            "write": Out(stream.Signature(dma_command_layout())),
            "attention_job": Out(stream.Signature(data.StructLayout({"keys": 16,
                                                                     "queries": 8}))),
            "quant_row_done": In(1),
            "reads_idle": In(1),
            "writes_idle": In(1),
            "read_error": In(1),
            "write_error": In(1),
            "drained": In(1),
            "streamer_done": In(1),
            "op": Out(op_flags_layout()),
            "pw_op": Out(2),
            "epilogue": Out(1),
            "n_blocks": Out(16),
            "w_m": Out(16),
            "w_e": Out(8),
            "busy": Out(1),
            "done": Out(1),
            "fault": Out(1),
            "fault_code": Out(8),
            "drain": Out(1),
            "fetching": Out(1),
            "retire": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        head_beats = self.head_beats

        # ---- the instruction register and its fields ----
        words = Array(Signal(32, name=f"word{i}") for i in range(isa.WORDS))
        ins = instruction_fields(words)
        op, pw_op, tokens, heads = ins.op, ins.pw_op, ins.tokens, ins.heads
        epilogue = ins.epilogue                        # LINEAR: output through Pointwise
        keys0, group_shift, tile, v_offset = ins.keys0, ins.group_shift, ins.tile, ins.v_offset
        src0, src1, dst = ins.src0, ins.src1, ins.dst      # addr, stride_t, stride_h, beats
        m.d.comb += [self.pw_op.eq(pw_op), self.epilogue.eq(epilogue),
                     self.n_blocks.eq(ins.n_blocks), self.w_m.eq(ins.w_m), self.w_e.eq(ins.w_e)]
        instr_beat = Signal(3)
        m.d.comb += self.instruction.ready.eq(1)
        with m.If(self.instruction.valid):
            for i in range(isa.WORDS):
                with m.If(instr_beat == i // 4):
                    m.d.sync += words[i].eq(self.instruction.payload[32 * (i % 4):
                                                                     32 * (i % 4 + 1)])
            m.d.sync += instr_beat.eq(instr_beat + 1)

        # the op, decoded into registers: they follow the words by a cycle, which DECODE
        # already is after the words settle (the words only change in FETCH_WAIT, when no
        # unit or counter looks at the op)
        m.d.sync += [getattr(self.op, o.name.lower()).eq(op == int(o)) for o in isa.Op]

        def is_op(o):
            return getattr(self.op, o.name.lower())

        # ---- the commands ----
        rd_addr = Signal(32)
        rd_beats = Signal(20)
        rd_route = Signal(range(len(Route)))
        rd_issue = Signal()                          # a read command is offered
        rd_final = Signal(init=1)                    # ... which ends a token (``last``)
        wr_addr = Signal(32)
        wr_beats = Signal(20)
        wr_issue = Signal()
        m.d.comb += [
            self.read.payload.addr.eq(rd_addr), self.read.payload.beats.eq(rd_beats),
            self.read.payload.route.eq(rd_route), self.read.payload.final.eq(rd_final),
            self.read.valid.eq(rd_issue),
            self.write.payload.addr.eq(wr_addr), self.write.payload.beats.eq(wr_beats),
            self.write.valid.eq(wr_issue),
        ]

        # ---- the loop over tokens x heads ----
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
        m.d.sync += final_pc.eq(pc + 1 == self.program_len)

        def raise_fault(code):
            m.d.sync += [fault_code.eq(code), faulted.eq(1)]
            m.next = "FAULT"

        # the decoded instruction's checks: its op, its lengths, its whole extent in the window
        m.submodules.check = check = InstructionCheck(**self.check_sizes)
        m.d.comb += [check.words.eq(Cat(words)), check.window_lo.eq(self.window_lo),
                     check.window_hi.eq(self.window_hi)]
        check_wait = Signal(range(InstructionCheck.LATENCY))
        checking = Signal()             # the checks run from the fetch to the verdicts
        m.d.comb += check.enable.eq(checking)
        tile_wait = Signal(range(TILE_LATENCY))
        beats0, beats1, beatsd = src0[3], src1[3], dst[3]
        m.d.comb += self.fault_code.eq(fault_code)
        axi_fault = Signal(8)
        m.d.comb += axi_fault.eq(Mux(self.read_error, ErrorCode.AXI_READ,
                                     Mux(self.write_error, ErrorCode.AXI_WRITE, 0)))

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
                        with m.If(self.read.ready):
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
                with m.If(self.write.ready):
                    with m.If(~w_last_head):
                        m.d.sync += [w_h.eq(w_h + 1), w_off.eq(w_off + dst[2])]
                    with m.Else():
                        m.d.sync += [w_h.eq(0), w_off.eq(0), w_t.eq(w_t + 1),
                                     w_row.eq(w_row + dst[1])]
                        with m.If(w_last_token):
                            m.d.sync += w_pending.eq(0)

        read_in = self.read.valid & self.read.ready & (rd_route == Route.QUANT_X)
        m.d.sync += in_quant.eq(in_quant + read_in - self.quant_row_done)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), fetch_addr.eq(self.program_addr), faulted.eq(0),
                                 fault_code.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [self.busy.eq(1), self.fetching.eq(1),
                             rd_addr.eq(fetch_addr),
                             rd_beats.eq(isa.WORDS // 4), rd_route.eq(Route.INSTRUCTION),
                             rd_issue.eq(1)]
                m.d.sync += instr_beat.eq(0)
                with m.If(self.read.ready):               # (the program is in the window:
                    m.next = "FETCH_WAIT"                 # ``Registers`` checks it at START)
                    m.d.sync += checking.eq(1)
            with m.State("FETCH_WAIT"):
                m.d.comb += [self.busy.eq(1), self.fetching.eq(1)]
                with m.If(axi_fault != 0):
                    raise_fault(axi_fault)
                with m.Elif(instr_beat == isa.WORDS // 4):
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [t.eq(0), h.eq(0), row0.eq(src0[0]), row1.eq(src1[0]),
                             rowd.eq(dst[0]), rowe.eq(src1[1]), off0.eq(0), offd.eq(0),
                             kv_off.eq(0),
                             keys.eq(keys0), seg.eq(0), w_pending.eq(is_op(isa.Op.LINEAR)),
                             w_t.eq(0), w_h.eq(0), w_row.eq(dst[0]), w_off.eq(0),
                             check_wait.eq(InstructionCheck.LATENCY - 2)]
                m.next = "CHECK"
            with m.State("CHECK"):                   # the checks' verdicts on the words
                m.d.comb += self.busy.eq(1)
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
                m.d.comb += self.busy.eq(1)
                m.d.sync += tile_wait.eq(tile_wait - 1)
                with m.If(tile_wait == 0):
                    m.next = "UNIT_JOB"
            with m.State("UNIT_JOB"):
                m.d.comb += self.busy.eq(1)
                with m.If(is_op(isa.Op.ATTENTION)):
                    m.d.comb += [self.attention_job.valid.eq(1),
                                 self.attention_job.payload.keys.eq(tile_keys),
                                 self.attention_job.payload.queries.eq(step_t)]
                    with m.If(self.attention_job.ready):
                        m.next = "WRITE"
                with m.Else():
                    m.next = "WRITE"
                linear_writes()
            with m.State("WRITE"):
                m.d.comb += self.busy.eq(1)
                with m.If(is_op(isa.Op.LINEAR)):
                    m.next = "READ0"
                with m.Else():
                    m.d.comb += [wr_addr.eq(addr_d),
                                 wr_beats.eq(Mux(is_attention, q_beats, beatsd)), wr_issue.eq(1)]
                    with m.If(self.write.ready):
                        m.next = "READ0"
                linear_writes()
            for step in range(3):
                with m.State(f"READ{step}"):
                    m.d.comb += self.busy.eq(1)
                    issue_read(iteration_reads(step), f"READ{step + 1}" if step < 2 else "WAIT",
                               segmented=isa.Op.NORM if step == 0 else None)
                    linear_writes()
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                settled = self.reads_idle & self.writes_idle & ~wr_issue & ~w_pending
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
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += [pc.eq(pc + 1),
                                     fetch_addr.eq(fetch_addr + isa.INSTRUCTION_BYTES)]
                        with m.If(final_pc):
                            with m.If(self.streamer_done):
                                m.next = "FINISH"
                            with m.Else():
                                m.next = "END"
                        with m.Else():
                            m.next = "FETCH"
                linear_writes()
            with m.State("END"):                     # the streamer's walk is not over yet
                m.d.comb += self.busy.eq(1)
                with m.If(self.streamer_done):
                    m.next = "FINISH"
            with m.State("FAULT"):
                m.d.comb += [self.busy.eq(1), self.drain.eq(1)]
                with m.If(self.drained):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1), self.fault.eq(faulted)]
                m.d.sync += [seg.eq(0), off0.eq(0), in_quant.eq(0), w_pending.eq(0)]
                m.next = "IDLE"
        return m
