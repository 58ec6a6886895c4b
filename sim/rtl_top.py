# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator RTL as built (``rtl.accelerator``), as a whole-model system: its exact cycle
model (``sim.accelerator``), projected to the model, the way ``ternedge rtl-bench`` projects its
measurements. ``ternedge simulate --config default`` runs this.

A pass of the top is one program (``golden.layout.Layout``): every decoder layer, then the
final norm. ``RtlTop`` builds the top's DDR layout and programs at a board's default
configuration (``golden.config.ACCELERATOR_DEFAULTS``) for one decoder layer of the model's
shapes (seeded random ternary weights: the programs, and so the cycles, depend on the shapes
only) and counts each pass with ``sim.accelerator.program_cycles``, which equals the RTL's
``CYCLES`` register pass for pass (``rtl-bench`` checks it on the Verilator harness; CI checks
it on the tiny model and on one bitnet-b1.58-large layer). ``project_cycles`` takes a pass to
the model's layers: the final norm once, the rest per layer. The host's part (``host_seconds``:
the LM head, FP16 on the ARM as TeLLMe runs it, and the per-call and per-token work of
``sim.blocks.Host``) is modeled.

``RtlSystem`` gives it ``sim.system.System``'s interface (``run``, ``forward``, ``decode_curve``,
``roofline``), so the CLI, the plots and ``sim.speculative`` take it as they take the
transaction-level model.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ..golden import ddr as ddr_profiles
from ..golden import isa
from ..golden.config import ACCELERATOR_DEFAULTS, AcceleratorConfig, ModelConfig, bram_max_job_n
from ..golden.isa import WEIGHT_PORTS, Op
from ..golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from ..host.errors import InputError
from . import blocks, power
from .accelerator import TopTiming, program_cycles
from .system import BLOCKS, ForwardResult, System

__all__ = ["CONFIG_KEYS", "KV260_CLOCK_MHZ", "BENCH_VOCAB", "random_weights", "board_settings",
           "accelerator_config", "project_cycles", "program_traffic", "host_seconds", "RtlTop",
           "RtlSystem"]

#: fields a ``--config`` JSON may set (``ACCELERATOR_DEFAULTS`` keys)
CONFIG_KEYS = ("geometry", "table_memory", "fill_entries_per_cycle", "max_tokens",
               "max_context", "max_job_n", "attention_tile", "clock_mhz")
#: the KV260 fabric clock every modeled number assumes (the board has no Fmax measurement)
KV260_CLOCK_MHZ = 250.0
#: vocabulary of the one-layer model the top runs: it never sees the LM head
BENCH_VOCAB = 256
#: the sequencer's program op -> ``sim.system.BLOCKS`` category (a LINEAR's time includes its
#: wait for weights)
_OP_BLOCKS = {Op.NORM: "norm", Op.LINEAR: "tlmm", Op.ROPE: "elementwise",
              Op.ATTENTION: "attention", Op.POINTWISE: "elementwise"}


def random_weights(config: ModelConfig, *, layers: int, seed: int = 0) -> ModelWeights:
    """Seeded random ternary weights of ``config``'s shapes (``layers`` decoder layers): about
    a third of each of -1, 0, +1, absmean scales of ``1 / sqrt(in_features)`` (unit-variance
    outputs), norms near 1, N(0, 1) embeddings."""
    rng = np.random.default_rng(seed)
    hd = config.head_dim
    shapes = {"q_proj": (config.num_attention_heads * hd, config.hidden_size),
              "k_proj": (config.num_key_value_heads * hd, config.hidden_size),
              "v_proj": (config.num_key_value_heads * hd, config.hidden_size),
              "o_proj": (config.hidden_size, config.num_attention_heads * hd),
              "gate_proj": (config.intermediate_size, config.hidden_size),
              "up_proj": (config.intermediate_size, config.hidden_size),
              "down_proj": (config.hidden_size, config.intermediate_size)}
    norm_sizes = {"input_layernorm": config.hidden_size,
                  "post_attention_layernorm": config.hidden_size,
                  "attn_sub_norm": config.num_attention_heads * hd,
                  "ffn_sub_norm": config.intermediate_size}

    def norm(size):
        return (1 + 0.1 * rng.standard_normal(size)).astype(np.float32)

    out = []
    for _ in range(layers):
        linears = {name: TernaryLinear(
            ternary=rng.integers(-1, 2, size=shapes[name], dtype=np.int8),
            scale=float(1.5 / math.sqrt(shapes[name][1]))) for name in LINEAR_NAMES}
        out.append(LayerWeights(**{name: norm(size) for name, size in norm_sizes.items()},
                                **linears))
    embed = rng.standard_normal((config.vocab_size, config.hidden_size)).astype(np.float32)
    return ModelWeights(config=config, embed_tokens=embed, lm_head=embed,
                        norm=norm(config.hidden_size), layers=tuple(out))


def board_settings(board: str, config_file=None) -> dict:
    """The board's default accelerator configuration (``ACCELERATOR_DEFAULTS``, the clock
    defaulting to 250 MHz), with ``config_file``'s JSON overrides."""
    if board not in ACCELERATOR_DEFAULTS:
        raise InputError(f"unknown board {board!r}; choose one of "
                         f"{', '.join(ACCELERATOR_DEFAULTS)}")
    settings = dict(ACCELERATOR_DEFAULTS[board])
    if settings.get("clock_mhz") is None:
        settings["clock_mhz"] = KV260_CLOCK_MHZ
    if config_file:
        path = Path(config_file)
        try:
            extra = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read --config {path}: {exc}; pass a JSON object of "
                             f"{', '.join(CONFIG_KEYS)}") from None
        if not isinstance(extra, dict) or set(extra) - set(CONFIG_KEYS):
            raise InputError(f"--config {path} may only set {', '.join(CONFIG_KEYS)}")
        settings.update(extra)
    return settings


def accelerator_config(settings) -> AcceleratorConfig:
    """The ``AcceleratorConfig`` of ``board_settings``' geometry, table memory, weight ports
    (``fill_entries_per_cycle``) and clock."""
    try:
        g, t, n = (int(v) for v in settings["geometry"])
        config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n,
                                   table_memory=settings.get("table_memory", "registers"),
                                   clock_mhz=float(settings["clock_mhz"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad accelerator geometry {settings['geometry']!r} or clock "
                         f"{settings.get('clock_mhz')!r}: {exc}") from None
    ports = settings.get("fill_entries_per_cycle", 1)
    if isinstance(ports, bool) or ports not in WEIGHT_PORTS or n % ports:
        raise InputError(f"fill_entries_per_cycle (the weight ports) must be one of "
                         f"{', '.join(map(str, WEIGHT_PORTS))} and divide N={n}, got "
                         f"{ports!r}")
    return dataclasses.replace(config, fill_entries_per_cycle=ports)


def project_cycles(program, cycles: int, timing, *, layers_run: int, layers: int) -> int:
    """A pass of ``layers_run`` layers that took ``cycles``, projected to ``layers``: the
    final norm once (its model cycles run alone) plus the rest, per layer, times ``layers``."""
    tail = program_cycles(program[-1:], timing)
    return round(tail + (cycles - tail) / layers_run * layers)


def rtl_config(board: str = "kv260") -> AcceleratorConfig:
    """The ``AcceleratorConfig`` of the top at ``board``'s defaults, its system-level fields
    describing that RTL (for the blocks ``RtlSystem`` shares with ``System``: the KV-cache
    capacity, the host LM head and calls, the power model)."""
    settings = board_settings(board)
    config = accelerator_config(settings)
    ports = config.fill_entries_per_cycle
    return dataclasses.replace(
        config, ddr_ports=1 + ports, port_width_bits=isa.BEAT_BITS,
        burst_bytes=16 * isa.BEAT_BYTES, weight_layout="dense",      # 16-beat bursts
        weight_buffer_memory="bram", weight_buffer_depth=512, double_buffer=True,
        tlmm_schedule="overlapped", attention_lanes=isa.LANES,
        attention_query_tile=settings["attention_tile"], attention_pv_queries=1,
        attention_fused_rescale=True, decode_attention_lanes=isa.LANES,
        elementwise_lanes=isa.LANES, max_context=settings["max_context"], lm_head="host-fp16",
        host_call_scope="token")


def program_traffic(program, kv_lo: int, kv_hi: int) -> dict:
    """DDR bytes a program moves (what the top's ``read_beats`` and ``write_beats`` count),
    by ``ForwardResult.ddr_bytes`` kind: LINEAR weights, KV-cache reads and writes (the cache
    is ``[kv_lo, kv_hi)``), and the rest (fetches by the sequencer and the weight streamer,
    activations, norm weights, RoPE tables)."""
    out = dict.fromkeys(("weights", "kv_read", "kv_write", "activations", "lm_head"), 0)
    for ins in program:
        s0, s1, d = ins.src0, ins.src1, ins.dst
        reads, writes = 2 * (isa.WORDS // 4), 0
        if ins.op is Op.NORM:
            reads += ins.tokens * (ins.heads * s0.beats + s1.beats)
            writes = ins.tokens * d.beats
        elif ins.op is Op.LINEAR:
            out["weights"] += 16 * s1.beats
            reads += ins.tokens * (s0.beats + (d.beats if ins.epilogue is not None else 0))
            writes = ins.tokens * ins.heads * d.beats
        elif ins.op in (Op.ROPE, Op.POINTWISE):
            reads += ins.tokens * ins.heads * (s0.beats + s1.beats)
            writes = ins.tokens * ins.heads * d.beats
        else:                                                  # ATTENTION, tile by tile
            for tok in range(0, ins.tokens, ins.tile):
                size = min(ins.tile, ins.tokens - tok)
                keys = ins.keys0 + tok + size - 1
                out["kv_read"] += 16 * ins.heads * 2 * keys * s1.beats
                reads += ins.heads * size * s0.beats
                writes += ins.heads * size * d.beats
        out["activations"] += 16 * reads
        out["kv_write" if kv_lo <= d.addr < kv_hi else "activations"] += 16 * writes
    return out


def host_seconds(config: AcceleratorConfig, model: ModelConfig, *, passes: int = 1,
                 rows: int = 1) -> float:
    """The host's part of ``passes`` accelerator runs that end in ``rows`` LM-head rows (one a
    generated token or verified draft): a call per run, the LM head and the per-token work
    (``sim.blocks``: FP16 on the ARM, PYNQ overheads). *Modeled*."""
    host = blocks.Host(config)
    head = blocks.LmHead(config).seconds(model, blocks.WeightDma(config))
    return passes * host.call_seconds() + rows * (head + host.token_seconds())


class RtlTop:
    """The top at ``board``'s default configuration (``settings``: ``board_settings``) for
    ``model``'s shapes, under the ``ddr`` profile: cycles of every pass from its exact model.

    ``pass_cycles(tokens, position)``: (cycles of the one-layer pass, those projected to the
    model, cycles per ``sim.system.BLOCKS`` category projected, engine lookup cycles projected,
    DDR bytes by kind projected), memoized.
    """

    def __init__(self, model: ModelConfig, settings: dict, *, ddr: str = "kv260", seed: int = 0):
        from ..golden.layout import Layout
        from ..golden.model import GoldenModel

        self.model, self.settings = model, settings
        self.config = accelerator_config(settings)
        one_layer = dataclasses.replace(model, num_hidden_layers=1, vocab_size=BENCH_VOCAB)
        max_job_n = settings["max_job_n"]
        if max_job_n == "bram":
            max_job_n = bram_max_job_n(self.config, one_layer)
        self.max_tokens, self.max_context = settings["max_tokens"], settings["max_context"]
        self.layout = Layout(GoldenModel(random_weights(one_layer, layers=1, seed=seed),
                                         self.config),
                             self.config, max_tokens=self.max_tokens,
                             max_context=self.max_context, max_job_n=max_job_n,
                             attention_tile=settings["attention_tile"])
        self.ddr = ddr_profiles.profile(ddr).timing(self.config.clock_mhz)
        self.timing = TopTiming.for_ddr(self.config, self.ddr, (model.hidden_act,))
        self.layers = model.num_hidden_layers
        self._memo = {}

    def pass_cycles(self, tokens: int, position: int):
        key = (tokens, position)
        if key not in self._memo:
            program, spans = self.layout.program(tokens, position), []
            cycles = program_cycles(program, self.timing, spans)
            by_block = dict.fromkeys(BLOCKS, 0)
            for ins, span in zip(program[:-1], spans, strict=False):   # the final norm: below
                by_block[_OP_BLOCKS[ins.op]] += span * self.layers
            projected = project_cycles(program, cycles, self.timing, layers_run=1,
                                       layers=self.layers)
            by_block["norm"] += projected - sum(by_block.values())
            lookups = sum(ins.tokens * ins.k_steps * ins.n_blocks for ins in program
                          if ins.op is Op.LINEAR) * self.layers
            kv = self.layout.k_cache + self.layout.v_cache
            layer = program_traffic(program[:-1], min(kv), max(kv) + self.layout.head_stride
                                    * self.model.num_key_value_heads)
            tail = program_traffic(program[-1:], 0, 0)
            traffic = {k: v * self.layers + tail[k] for k, v in layer.items()}
            self._memo[key] = (cycles, projected, by_block, lookups, traffic)
        return self._memo[key]


class RtlSystem(System):
    """``System``'s interface over ``RtlTop`` (``simulate --config default``): the RTL as built,
    from its exact cycle model. ``config`` (``rtl_config``) gives the host's and the power
    model's blocks; the top is ``settings`` (default: ``board``'s ``ACCELERATOR_DEFAULTS``)
    under the ``ddr`` profile (default: the board's)."""

    def __init__(self, model: ModelConfig, config: AcceleratorConfig, board, *,
                 settings: dict | None = None, ddr: str | None = None):
        super().__init__(model, config, None)
        self.board = board
        self.top = RtlTop(model, settings or board_settings(board.name),
                          ddr=ddr or board.name)

    def weight_bytes_per_token(self) -> int:
        beats = sum(ins.src1.beats for ins in self.top.layout.program(1, 0)
                    if ins.op is Op.LINEAR)
        return 16 * beats * self.model.num_hidden_layers

    def kv_bytes_per_token(self, context: int) -> int:
        """Decode: the int32 keys and values read at ``context`` (every head, every layer)."""
        m = self.model
        return 2 * context * 4 * m.head_dim * m.num_attention_heads * m.num_hidden_layers

    def forward(self, tokens: int, past: int, *, record: bool = False) -> ForwardResult:
        """``tokens`` after ``past`` cached ones, in passes of the top's ``max_tokens``, then
        the host's LM head of the last token."""
        m, top, hz = self.model, self.top, self.clock_hz
        res = ForwardResult(tokens=tokens, context=past + tokens)
        passes, lookups, position = 0, 0, past
        while position < past + tokens:
            chunk = min(top.max_tokens, past + tokens - position)
            _, projected, by_block, looked, traffic = top.pass_cycles(chunk, position)
            for block, cycles in by_block.items():
                res.breakdown[block] += cycles / hz
            for kind, nbytes in traffic.items():
                res.ddr_bytes[kind] += nbytes
            lookups += looked
            passes, position = passes + 1, position + chunk
        host = host_seconds(self.config, m, passes=passes)
        head = blocks.LmHead(self.config).seconds(m, self.dma)
        res.breakdown["lm_head"] += head
        res.breakdown["host"] += host - head
        res.seconds = sum(res.breakdown.values())
        res.arm_seconds = host
        res.tlmm_busy_s = lookups / hz
        linear_weights = sum(k * n for k, n in self._shapes())
        res.macs = tokens * linear_weights * m.num_hidden_layers
        ew = self.elementwise
        res.fp_ops = m.num_hidden_layers * (
            ew.norm_ops(tokens, 3 * m.hidden_size + m.intermediate_size)
            + ew.stream_ops(tokens, sum(n for _, n in self._shapes()))
            + 4 * tokens * (past + tokens) * m.num_attention_heads * m.head_dim)
        if record:
            res.per_layer = [{b: (v / m.num_hidden_layers if b not in ("host", "lm_head")
                                  else 0.0) for b, v in res.breakdown.items()}
                             for _ in range(m.num_hidden_layers)]
            res.per_layer[-1]["host"] = res.breakdown["host"]
            res.per_layer[-1]["lm_head"] = head
        res.energy_j = power.energy(res, self.config)
        return res

    def _shapes(self):
        m = self.model
        q, kv = m.num_attention_heads * m.head_dim, m.num_key_value_heads * m.head_dim
        return [(m.hidden_size, q), (m.hidden_size, kv), (m.hidden_size, kv), (q, m.hidden_size),
                (m.hidden_size, m.intermediate_size), (m.hidden_size, m.intermediate_size),
                (m.intermediate_size, m.hidden_size)]

    def roofline(self, context: int) -> dict:
        weights = self.weight_bytes_per_token()
        kv = self.kv_bytes_per_token(context)
        total = weights + kv
        return {"modeled": True, "context": context, "weight_bytes": weights, "kv_bytes": kv,
                "lm_head_bytes": 0, "bytes_per_token": total,
                "peak_tok_s": self.config.ddr_peak_gbps * 1e9 / total,
                "sustained_tok_s": self.dma.bytes_per_s / total}
