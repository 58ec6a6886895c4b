# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top's DDR layout, its programs and their reference semantics: the contract
between the host (``host.rtl_backend``), the RTL (``rtl.accelerator``) and the simulator
(``sim.rtl_top``).

``Layout`` places everything the accelerator reads in its DDR window: the program, every
linear's weight stream (``golden.isa``'s layout: entries wider than a beat back to back, others
a beat each; one part per weight port), the norm weights, the RoPE table (per position and
RoPE beat: a cos beat, then a sin beat), the KV cache (per layer and KV head, ``max_context``
keys of ``head_dim`` Q16 values; values at ``v_offset`` from the keys) and scratch buffers of
``max_tokens`` rows. ``Layout.image()`` is the initial DDR contents; ``Layout.program(tokens,
position)`` the instructions of one forward pass (every layer and the final norm).

``execute`` is the reference semantics of ``golden.isa``: it runs a program on a DDR image with
the golden functions. A program that ``execute`` turns into ``GoldenModel.forward``'s output
is what the RTL must run bit-exactly.
"""

import math

import numpy as np

from . import attention, isa, ops, quant, tlmm
from .config import AcceleratorConfig
from .isa import Instruction, Op, Source
from .model import GoldenModel
from .packing import linear_indices, pack_linear
from .weights import LINEAR_NAMES, TernaryLinear

__all__ = ["Layout", "execute", "read_q16", "write_q16"]

NORM_NAMES = ("input_layernorm", "attn_sub_norm", "post_attention_layernorm", "ffn_sub_norm")
B = isa.BEAT_BYTES


def _align(n):
    return -(-n // B) * B


def write_q16(memory, addr, values):
    data = np.asarray(values, dtype=np.int64).astype("<i4").tobytes()
    memory[addr:addr + len(data)] = data


def read_q16(memory, addr, count):
    return np.frombuffer(bytes(memory[addr:addr + 4 * count]), dtype="<i4").astype(np.int64)


def weight_stream(packed, ports: int = 1) -> bytes:
    """A linear's ``golden.isa`` weight stream for ``ports`` weight ports: its entries
    K-step-major then column (the order of ``golden.packing``)."""
    idx = linear_indices(packed).reshape(-1, packed.tables_per_step)         # (entries, T)
    return isa.pack_weight_stream(idx, packed.index_bits, ports)


class Layout:
    """Where every tensor of ``model`` lives in the accelerator's DDR window.

    Parameters
    ----------
    model : GoldenModel (its weights, config and RoPE tables).
    config : AcceleratorConfig of the RTL top (``cols_per_cycle`` 4).
    max_tokens : most tokens per forward pass (the prefill block).
    max_context : KV-cache length.
    max_instructions : room for the program.
    max_job_n : widest N of one LINEAR instruction (``Accelerator(max_job_n=...)``); wider
        linears are split into column tiles of at most this many columns (whole heads for the
        value projection). None: no split.
    attention_tile : queries per attention job (``Accelerator(attention_tile=...)``).

    The queries after RoPE (``q``) and the attention outputs (``attn``) are kept head-major
    (head, token, head_dim), so that a tile of queries of one head is contiguous.
    """

    def __init__(self, model: GoldenModel, config: AcceleratorConfig, *, max_tokens: int,
                 max_context: int, max_instructions: int = 256, max_job_n: int | None = None,
                 attention_tile: int = 4):
        self.model, self.config = model, config
        self.cfg = cfg = model.config
        self.max_tokens, self.max_context = max_tokens, max_context
        self.attention_tile = attention_tile
        self.hd = cfg.head_dim
        self.q_dim = cfg.num_attention_heads * self.hd
        self.kv_dim = cfg.num_key_value_heads * self.hd
        self._next = 0
        self.program_addr = self._take(max_instructions * isa.INSTRUCTION_BYTES)
        self.max_instructions = max_instructions
        self.linears = []           # per layer {name: [(addr, packed, first column), ...]}
        self.norms = []             # per layer {name: addr}
        self._blocks = []           # (addr, bytes) of the initial image
        for index, layer in enumerate(model.weights.layers):
            linears = {}
            for name in LINEAR_NAMES:
                linear = getattr(layer, name)
                tile = self._tile(name, linear.out_features, max_job_n)
                tiles = []
                for first in range(0, linear.out_features, tile):
                    part = TernaryLinear(ternary=linear.ternary[first:first + tile],
                                         scale=linear.scale)
                    packed = pack_linear(part, config)
                    ports = config.fill_entries_per_cycle
                    region = isa.weight_region(weight_stream(packed, ports), ports)
                    addr = self._take(len(region))
                    self._blocks.append((addr, region))
                    tiles.append((addr, packed, first))
                linears[name] = tiles
            self.linears.append(linears)
            norms = {}
            for name in NORM_NAMES:
                gamma = model.layers[index][1][name]
                norms[name] = self._place_q16(gamma)
            self.norms.append(norms)
        self.final_norm = self._place_q16(model.norm_q16)
        cos, sin = model.cos[:max_context], model.sin[:max_context]
        half = self.hd // 2
        table = np.stack([cos.reshape(max_context, half // isa.LANES, isa.LANES),
                          sin.reshape(max_context, half // isa.LANES, isa.LANES)], axis=2)
        self.rope_table = self._place_q16(table.reshape(-1))
        self.rope_row = self.hd * 4                        # bytes per position
        self.head_stride = max_context * self.hd * 4       # bytes per KV head
        kv_bytes = cfg.num_key_value_heads * self.head_stride
        self.k_cache = [self._take(kv_bytes) for _ in model.layers]
        self.v_cache = [self._take(kv_bytes) for _ in model.layers]
        rows = {"x": cfg.hidden_size, "h": cfg.hidden_size, "q_raw": self.q_dim,
                "k_raw": self.kv_dim, "q": self.q_dim, "attn": self.q_dim,
                "attn_n": self.q_dim, "gate": cfg.intermediate_size,
                "m": cfg.intermediate_size, "m_n": cfg.intermediate_size,
                "out": cfg.hidden_size}
        self.row_bytes = {name: 4 * width for name, width in rows.items()}
        self.buffers = {name: self._take(max_tokens * size)
                        for name, size in self.row_bytes.items()}
        self.size = self._next

    def _tile(self, name, out_features, max_job_n):
        """Columns per LINEAR instruction for this linear."""
        if max_job_n is None or out_features <= max_job_n:
            return out_features
        unit = self.config.cols_per_cycle
        if name == "v_proj":                   # written per KV head: tiles of whole heads
            unit = math.lcm(unit, self.hd)
        tile = max_job_n // unit * unit
        if tile == 0:
            raise ValueError(f"max_job_n={max_job_n} cannot hold one tile of {unit} columns "
                             f"of {name}")
        return tile

    def _take(self, nbytes):
        addr = self._next
        self._next += _align(nbytes)
        return addr

    def _place_q16(self, values):
        data = np.asarray(values, dtype=np.int64).astype("<i4").tobytes()
        addr = self._take(len(data))
        self._blocks.append((addr, data))
        return addr

    def blocks(self) -> list:
        """``(addr, bytes)`` of everything the DDR window starts with (weights, norms, RoPE
        table); zeros elsewhere."""
        return list(self._blocks)

    def image(self) -> bytearray:
        """The DDR window's initial contents as one bytearray."""
        memory = bytearray(self.size)
        for addr, data in self._blocks:
            memory[addr:addr + len(data)] = data
        return memory

    # ---- programs ----
    def _rows(self, name, *, per_head=False, head_major=False):
        """Source over buffer ``name``: one row per token, or one head-sized segment per
        (token, head) of a token-major or a head-major buffer."""
        row, head = self.row_bytes[name], self.hd * 4
        if head_major:
            return Source(self.buffers[name], head, self.max_tokens * head, head // B)
        if not per_head:
            return Source(self.buffers[name], row, 0, row // B)
        return Source(self.buffers[name], row, head, head // B)

    def _linear(self, layer, name, src, dst, tokens, per_head=False, epilogue=None):
        """LINEAR instructions (one per column tile) from ``src`` rows into ``dst``; with
        ``per_head`` the outputs go to ``dst`` one KV head (``dst.stride_h`` apart) at a time;
        ``epilogue`` = (PointwiseOp, Source of the a rows) streams them through Pointwise."""
        out = []
        for addr, packed, first in self.linears[layer][name]:
            n_blocks = packed.n_padded // self.config.cols_per_cycle
            if per_head:
                heads = packed.out_features // self.hd
                target = Source(dst.addr + first // self.hd * dst.stride_h, dst.stride_t,
                                dst.stride_h, dst.beats)
            else:
                heads = 1
                target = Source(dst.addr + 4 * first, dst.stride_t, 0,
                                packed.out_features * 4 // B)
            extra = {}
            if epilogue is not None:
                kind, rows = epilogue
                extra = {"pointwise": kind,
                         "epilogue": Source(rows.addr + 4 * first, rows.stride_t)}
            out.append(Instruction(
                Op.LINEAR, tokens=tokens, heads=heads, src0=src,
                src1=Source(addr, 0, 0, isa.weight_stream_beats(
                    packed.num_entries, packed.entry_bits, self.config.fill_entries_per_cycle)),
                dst=target,
                k_steps=packed.k_steps, n_blocks=n_blocks, w_m=packed.scale_m,
                w_e=packed.scale_e, **extra))
        return out

    def _norm(self, gamma, src, dst, tokens, segments=1):
        return Instruction(Op.NORM, tokens=tokens, heads=segments, src0=src,
                           src1=Source(gamma, 0, 0, src.beats * segments), dst=dst)

    def _pointwise(self, kind, a, b, dst, tokens):
        return Instruction(Op.POINTWISE, tokens=tokens, pointwise=kind, src0=a, src1=b, dst=dst)

    def program(self, tokens: int, position: int) -> list:
        """Instructions of one forward pass of ``tokens`` tokens at ``position``..: every layer
        (input rows in buffer ``x``) and the final norm (into buffer ``out``)."""
        if not 1 <= tokens <= self.max_tokens:
            raise ValueError(f"a forward pass takes 1 to {self.max_tokens} tokens, got {tokens}")
        if position + tokens > self.max_context:
            raise ValueError(f"positions up to {position + tokens} exceed the KV cache of "
                             f"{self.max_context}")
        cfg, hd = self.cfg, self.hd
        heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        rows = self._rows
        head_beats = hd * 4 // B
        rope_src = Source(self.rope_table + position * self.rope_row, self.rope_row, 0,
                          head_beats)
        pointwise_add = 0
        gate_kind = 1 if cfg.hidden_act == "relu2" else 2
        out = []
        for layer in range(len(self.linears)):
            norms = self.norms[layer]
            k_at = self.k_cache[layer] + position * hd * 4
            v_at = self.v_cache[layer] + position * hd * 4
            cache_dst = (hd * 4, self.head_stride, head_beats)
            out += [
                self._norm(norms["input_layernorm"], rows("x"), rows("h"), tokens),
                *self._linear(layer, "q_proj", rows("h"), rows("q_raw"), tokens),
                *self._linear(layer, "k_proj", rows("h"), rows("k_raw"), tokens),
                *self._linear(layer, "v_proj", rows("h"), Source(v_at, *cache_dst), tokens,
                              per_head=True),
                Instruction(Op.ROPE, tokens=tokens, heads=heads,
                            src0=rows("q_raw", per_head=True), src1=rope_src,
                            dst=rows("q", head_major=True)),
                Instruction(Op.ROPE, tokens=tokens, heads=kv_heads,
                            src0=rows("k_raw", per_head=True), src1=rope_src,
                            dst=Source(k_at, *cache_dst)),
                Instruction(Op.ATTENTION, tokens=tokens, heads=heads, keys0=position + 1,
                            group_shift=int(math.log2(cfg.kv_groups)),
                            tile=self.attention_tile,
                            v_offset=self.v_cache[layer] - self.k_cache[layer],
                            src0=rows("q", head_major=True),
                            src1=Source(self.k_cache[layer], 0, self.head_stride, head_beats),
                            dst=rows("attn", head_major=True)),
                self._norm(norms["attn_sub_norm"], rows("attn", head_major=True),
                           rows("attn_n"), tokens, segments=heads),
                # x += o_proj(attn_n): the residual add as the linear's epilogue
                *self._linear(layer, "o_proj", rows("attn_n"), rows("x"), tokens,
                              epilogue=(pointwise_add, rows("x"))),
                self._norm(norms["post_attention_layernorm"], rows("x"), rows("h"), tokens),
                *self._linear(layer, "gate_proj", rows("h"), rows("gate"), tokens),
                # m = act(gate) * up_proj(h): the gating as the up projection's epilogue
                *self._linear(layer, "up_proj", rows("h"), rows("m"), tokens,
                              epilogue=(gate_kind, rows("gate"))),
                self._norm(norms["ffn_sub_norm"], rows("m"), rows("m_n"), tokens),
                *self._linear(layer, "down_proj", rows("m_n"), rows("x"), tokens,
                              epilogue=(pointwise_add, rows("x"))),
            ]
        out.append(self._norm(self.final_norm, rows("x"), rows("out"), tokens))
        if len(out) > self.max_instructions:
            raise ValueError(f"the program has {len(out)} instructions; the layout has room "
                             f"for {self.max_instructions}")
        return out

    def inputs(self, memory, token_ids):
        """Write the embeddings of ``token_ids`` into buffer ``x``."""
        rows = self.model.embed_q16[np.asarray(token_ids, dtype=np.int64)]
        write_q16(memory, self.buffers["x"], rows.reshape(-1))

    def outputs(self, memory, tokens):
        """The final norm's Q16 rows (tokens, hidden) from buffer ``out``."""
        return read_q16(memory, self.buffers["out"],
                        tokens * self.cfg.hidden_size).reshape(tokens, -1)


#: ``PointwiseOp`` values -> golden functions of (a, b)
POINTWISE = (ops.residual_add, ops.relu2_gate, ops.silu_gate)


def execute(program, memory, *, eps: int, config: AcceleratorConfig, head_dim: int):
    """Run ``program`` on ``memory`` (a bytearray DDR window) with the golden functions."""
    g, t_per, n_per = config.group_size, config.tables_per_step, config.cols_per_cycle
    b = tlmm.index_bits(g)
    for ins in program:
        s0, s1, d = ins.src0, ins.src1, ins.dst
        lanes0 = s0.beats * isa.LANES

        def store(t, h, values, d=d):
            write_q16(memory, d.addr + t * d.stride_t + h * d.stride_h, values)

        if ins.op is Op.LINEAR:
            entries = ins.k_steps * ins.n_blocks * n_per
            ports = config.fill_entries_per_cycle
            region = memory[s1.addr:s1.addr + isa.weight_region_bytes(s1.beats, ports)]
            idx = isa.unpack_weight_stream(isa.weight_stream_from_region(region, s1.beats, ports),
                                           entries, t_per, b, ports)
            idx = idx.reshape(ins.k_steps, ins.n_blocks * n_per, t_per)   # (ks, N, T)
            indices = idx.transpose(1, 0, 2).reshape(ins.n_blocks * n_per, -1)
            seg = d.beats * isa.LANES
            for t in range(ins.tokens):
                x = read_q16(memory, s0.addr + t * s0.stride_t, lanes0)
                q, amax = quant.quantize_activations(x[None])
                k_pad = ins.k_steps * g * t_per
                qp = np.zeros((1, k_pad), dtype=np.int64)
                qp[0, :lanes0] = q[0]
                y = quant.dequantize(tlmm.tlmm(qp, indices, g), amax, (ins.w_m, ins.w_e))[0]
                if ins.epilogue is not None:
                    a = read_q16(memory, ins.epilogue.addr + t * ins.epilogue.stride_t, y.size)
                    y = POINTWISE[ins.pointwise](a, y)
                for h in range(ins.heads):
                    store(t, h, y[h * seg:(h + 1) * seg])
            continue
        if ins.op is Op.NORM:
            for t in range(ins.tokens):
                x = np.concatenate([read_q16(memory, s0.addr + t * s0.stride_t + h * s0.stride_h,
                                             lanes0) for h in range(ins.heads)])
                gamma = read_q16(memory, s1.addr, x.size)
                store(t, 0, ops.rmsnorm(x[None], gamma, eps)[0])
            continue
        for t in range(ins.tokens):
            for h in range(ins.heads):
                a = read_q16(memory, s0.addr + t * s0.stride_t + h * s0.stride_h, lanes0)
                if ins.op is Op.POINTWISE:
                    other = read_q16(memory, s1.addr + t * s1.stride_t, lanes0)
                    y = POINTWISE[ins.pointwise](a, other)
                elif ins.op is Op.ROPE:
                    table = read_q16(memory, s1.addr + t * s1.stride_t, head_dim)
                    table = table.reshape(-1, 2, isa.LANES)
                    cos, sin = table[:, 0].reshape(1, -1), table[:, 1].reshape(1, -1)
                    y = ops.rope(a[None, None], np.array([0]), cos, sin)[0, 0]
                elif ins.op is Op.ATTENTION:
                    keys = ins.keys0 + t
                    base = s1.addr + (h >> ins.group_shift) * s1.stride_h
                    k = read_q16(memory, base, keys * head_dim).reshape(keys, 1, head_dim)
                    v = read_q16(memory, base + ins.v_offset, keys * head_dim)
                    y = attention.attention(a[None, None], k, v.reshape(keys, 1, head_dim),
                                            np.array([keys - 1]))[0, 0]
                else:
                    raise ValueError(f"unknown op {ins.op}")
                store(t, h, y)
    return memory
