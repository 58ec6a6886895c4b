# SPDX-License-Identifier: BSD-3-Clause
"""System composition: a whole model's prefill and decode on one accelerator configuration.

Transaction-level over the block models of ``sim/blocks.py``. Two resources are simulated:

* the **fabric datapath**, which runs the per-layer operators in TeLLMe's order (norm; Q, K, V;
  attention; norm; O; norm; up, gate; norm; down) one after another, and
* the **DDR**, one FIFO server shared by weight DMA, KV-cache reads and writes and a fabric LM
  head, serving requests in program order at ``WeightDma.bytes_per_s``.

Each linear is split into bank-sized jobs (``WeightBuffer.tiles``). With ``double_buffer`` the
DMA of job i starts as soon as the DDR is free and job i-2 has released its bank (so weights
stream ahead of compute, across linears and layers); without it each linear's weights are
loaded before it runs and nothing overlaps (TeLLMe). Host calls, the per-token host work and a
host LM head stall everything. Every number this module returns is *modeled*.
"""

from dataclasses import dataclass, field

from ..golden.config import AcceleratorConfig, ModelConfig
from ..host.errors import ConfigurationError, InputError
from . import blocks, power, resources

__all__ = ["ForwardResult", "RunResult", "System", "BLOCKS", "roofline"]

#: breakdown categories; together they cover the whole wall time of a forward pass
BLOCKS = ("host", "norm", "tlmm", "weight_dma", "attention", "elementwise", "lm_head")


@dataclass
class ForwardResult:
    """One forward pass (a prefill, or one decode step). Times in seconds; *modeled*."""

    tokens: int
    context: int
    seconds: float = 0.0
    breakdown: dict = field(default_factory=lambda: dict.fromkeys(BLOCKS, 0.0))
    per_layer: list = field(default_factory=list)
    ddr_bytes: dict = field(default_factory=lambda: dict.fromkeys(
        ("weights", "kv_read", "kv_write", "activations", "lm_head"), 0))
    macs: int = 0
    fp_ops: int = 0
    arm_seconds: float = 0.0
    tlmm_busy_s: float = 0.0
    dma_busy_s: float = 0.0
    timeline: list = field(default_factory=list)
    energy_j: float = 0.0

    @property
    def total_ddr_bytes(self) -> int:
        return sum(self.ddr_bytes.values())


@dataclass
class RunResult:
    """Prefill of ``prompt_len`` tokens, then ``gen`` generated tokens. *Modeled*."""

    prompt_len: int
    gen: int
    prefill: ForwardResult
    decode_steps: list
    ttft_s: float
    prefill_tok_s: float
    decode_tok_s: float
    energy_j_per_token: float
    average_power_w: float
    tlmm_utilization: float
    ddr_bandwidth_gbps: float
    ddr_utilization: float

    def to_dict(self) -> dict:
        step = self.decode_steps[0] if self.decode_steps else None
        return {
            "modeled": True,
            "prompt_len": self.prompt_len,
            "gen": self.gen,
            "ttft_s": self.ttft_s,
            "prefill_tok_s": self.prefill_tok_s,
            "decode_tok_s": self.decode_tok_s,
            "energy_j_per_token": self.energy_j_per_token,
            "average_power_w": self.average_power_w,
            "tlmm_utilization": self.tlmm_utilization,
            "ddr_bandwidth_gbps": self.ddr_bandwidth_gbps,
            "ddr_utilization": self.ddr_utilization,
            "breakdown": {
                "prefill_s": dict(self.prefill.breakdown),
                "decode_step_s": dict(step.breakdown) if step else {},
                "decode_step_context": step.context if step else None,
                "decode_step_per_layer_s": step.per_layer if step else [],
            },
            "ddr_bytes": {"prefill": dict(self.prefill.ddr_bytes),
                          "decode_step": dict(step.ddr_bytes) if step else {}},
        }


class System:
    """A model on an accelerator configuration (and optionally a board).

    Parameters
    ----------
    model : ModelConfig
    config : AcceleratorConfig
    board : presets.Board or None
        When given, the configuration's resources must fit it (``resources.check``).

    Raises
    ------
    ConfigurationError
        The configuration cannot run this model (geometry, buffer, accumulator width) or does
        not fit the board.
    """

    def __init__(self, model: ModelConfig, config: AcceleratorConfig, board=None):
        if not isinstance(model, ModelConfig):
            raise TypeError(f"model must be a ModelConfig, got {type(model).__name__}")
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {type(config).__name__}")
        self.model, self.config, self.board = model, config, board
        self.engine = blocks.TlmmEngine(config)
        self.dma = blocks.WeightDma(config)
        self.buffer = blocks.WeightBuffer(config)
        self.elementwise = blocks.Elementwise(config)
        self.prefill_attention = blocks.PrefillAttention(config)
        self.decode_attention = blocks.DecodeAttention(config)
        self.kv_cache = blocks.KvCache(config)
        self.lm_head = blocks.LmHead(config)
        self.host = blocks.Host(config)
        self.clock_hz = config.clock_mhz * 1e6
        self._check()
        self._plan = self._linear_plan()
        if board is not None:
            resources.check(config, model, board)

    # -- validation and planning ---------------------------------------------------------
    def _check(self):
        m, cfg = self.model, self.config
        longest = max(m.hidden_size, m.intermediate_size)
        if longest > cfg.max_k:
            raise ConfigurationError(
                f"the model's longest reduction K={longest} exceeds the configuration's "
                f"max_k={cfg.max_k}; raise max_k (and acc_width to hold 127*max_k)")

    def _linear_plan(self) -> dict:
        m = self.model
        h, f = m.hidden_size, m.intermediate_size
        q_dim = m.num_attention_heads * m.head_dim
        kv_dim = m.num_key_value_heads * m.head_dim
        shapes = {"q_proj": (h, q_dim), "k_proj": (h, kv_dim), "v_proj": (h, kv_dim),
                  "o_proj": (q_dim, h), "gate_proj": (h, f), "up_proj": (h, f),
                  "down_proj": (f, h)}
        plan = {}
        for name, (k, n) in shapes.items():
            try:
                plan[name] = self.buffer.tiles(k, n, self.dma, region=h)
            except ValueError as exc:
                raise ConfigurationError(f"{exc} ({name} of this model)") from None
        return plan

    def weight_bytes_per_token(self) -> int:
        """DDR bytes of all linear weights, streamed once per forward pass."""
        per_layer = sum(t.dma_bytes for tiles in self._plan.values() for t in tiles)
        return per_layer * self.model.num_hidden_layers

    def roofline(self, context: int) -> dict:
        """DDR roofline of one decode token: bytes that must cross DDR per token (weights, KV
        cache, a fabric LM head) against the peak and the sustained bandwidth. *Modeled*."""
        m = self.model
        weights = self.weight_bytes_per_token()
        kv = self.decode_attention.ddr_bytes(m, context) * m.num_hidden_layers
        head = 0 if self.lm_head.on_host else self.lm_head.weight_bytes(m)
        total = weights + kv + head
        peak = self.config.ddr_peak_gbps * 1e9
        return {"modeled": True, "context": context, "weight_bytes": weights, "kv_bytes": kv,
                "lm_head_bytes": head, "bytes_per_token": total,
                "peak_tok_s": peak / total, "sustained_tok_s": self.dma.bytes_per_s / total}

    def check_context(self, context: int):
        """Raise ``InputError`` if ``context`` tokens exceed the KV-cache capacity."""
        capacity = self.kv_cache.capacity(self.model)
        if context > capacity:
            raise InputError(
                f"a context of {context} tokens exceeds the KV-cache capacity of {capacity} "
                f"tokens (max_context={self.config.max_context}, model max_position_embeddings="
                f"{self.model.max_position_embeddings}); shorten --prompt-len/--gen or raise "
                "max_context in the configuration")

    # -- one forward pass ----------------------------------------------------------------
    def forward(self, tokens: int, past: int, *, record: bool = False) -> ForwardResult:
        """Simulate one forward pass of ``tokens`` new tokens after ``past`` cached ones,
        ending with the LM head of the last token and the host's per-token work."""
        m, cfg = self.model, self.config
        prefill = tokens > 1
        if prefill:       # the host pads the prompt to whole query tiles (TeLLMe: 8)
            q = cfg.attention_query_tile
            tokens = -(-tokens // q) * q
        res = ForwardResult(tokens=tokens, context=past + tokens)
        hz = self.clock_hz
        st = _State()
        scope_layer = cfg.host_call_scope == "layer"

        def fabric(block, seconds, layer, label):
            start = st.t
            st.t += seconds
            res.breakdown[block] += seconds
            if record:
                res.per_layer[layer][block] += seconds
                res.timeline.append((layer, label, block, start, st.t))

        def host_call(layer):
            fabric("host", self.host.call_seconds(), layer, "call")
            res.arm_seconds += self.host.call_seconds()
            st.dma_floor = st.t

        def ddr(nbytes, kind, ready):
            start = max(st.ddr_free, ready)
            st.ddr_free = start + self.dma.seconds(nbytes)
            res.ddr_bytes[kind] += nbytes
            res.dma_busy_s += st.ddr_free - start
            return st.ddr_free

        def norm(width, layer, label):
            fabric("norm", self.elementwise.norm_cycles(tokens, width) / hz, layer, label)
            res.fp_ops += self.elementwise.norm_ops(tokens, width)

        def linear(name, layer):
            first = True
            for tile in self._plan[name]:
                fill = self.engine.fill_cycles(tile.k, tile.n)
                if cfg.double_buffer:
                    bank_free = st.compute_ends[-2] if len(st.compute_ends) >= 2 else 0.0
                    start = max(st.ddr_free, bank_free, st.dma_floor)
                    cont = start <= st.dma_end + 1e-15 and st.dma_end > 0
                else:
                    start = max(st.ddr_free, st.t)
                    cont = False
                seconds = self.dma.fill_seconds(tile.dma_bytes, fill, first=not cont)
                st.dma_end = st.ddr_free = start + seconds
                res.dma_busy_s += seconds
                res.ddr_bytes["weights"] += tile.dma_bytes
                if st.dma_end > st.t:
                    fabric("weight_dma", st.dma_end - st.t, layer, name)
                if first:
                    fabric("elementwise", self.elementwise.stream_latency_cycles() / hz,
                           layer, name)
                    first = False
                busy = (self.engine.compute_cycles(tokens, tile.k, tile.n)
                        + self.engine.job_overhead_cycles) / hz
                fabric("tlmm", busy, layer, name)
                res.tlmm_busy_s += busy
                st.compute_ends.append(st.t)
                res.macs += self.engine.macs(tokens, tile.k, tile.n)
                res.fp_ops += self.elementwise.stream_ops(tokens, tile.n)
                res.ddr_bytes["activations"] += 2 * tokens * (tile.k + tile.n)

        h, f = m.hidden_size, m.intermediate_size
        for layer in range(m.num_hidden_layers):
            if record:
                res.per_layer.append(dict.fromkeys(BLOCKS, 0.0))
            if scope_layer or layer == 0:
                host_call(layer)
            norm(h, layer, "input_norm")
            for name in ("q_proj", "k_proj", "v_proj"):
                linear(name, layer)
            ddr(self.kv_cache.write_bytes(m, tokens), "kv_write", st.t)
            start = st.t
            if prefill:
                cycles = self.prefill_attention.cycles(m, tokens, past)
                nbytes = self.prefill_attention.ddr_bytes(m, tokens, past)
                res.fp_ops += self.prefill_attention.ops(m, tokens, past)
            else:
                cycles = self.decode_attention.compute_cycles(m, past + tokens)
                nbytes = self.decode_attention.ddr_bytes(m, past + tokens)
                res.fp_ops += self.decode_attention.ops(m, past + tokens)
            done = max(start + cycles / hz, ddr(nbytes, "kv_read", start))
            fabric("attention", done - start, layer, "attention")
            norm(h, layer, "attn_sub_norm")
            linear("o_proj", layer)
            norm(h, layer, "post_attention_norm")
            linear("up_proj", layer)
            linear("gate_proj", layer)
            norm(f, layer, "ffn_sub_norm")
            linear("down_proj", layer)

        last = m.num_hidden_layers - 1
        norm(h, last, "final_norm")
        seconds = self.lm_head.seconds(m, self.dma)
        if self.lm_head.on_host:
            res.arm_seconds += seconds
        else:
            end = ddr(self.lm_head.weight_bytes(m), "lm_head", st.t)
            seconds = max(seconds, end - st.t)
            res.fp_ops += 2 * self.lm_head.vocab_padded(m) * h
        fabric("lm_head", seconds, last, "lm_head")
        fabric("host", self.host.token_seconds(), last, "token")
        res.arm_seconds += self.host.token_seconds()
        res.seconds = st.t
        res.energy_j = power.energy(res, self.config)
        return res

    # -- a whole run ---------------------------------------------------------------------
    def prefill(self, prompt_len: int, *, record: bool = False) -> ForwardResult:
        return self.forward(prompt_len, 0, record=record)

    def decode_step(self, context: int, *, record: bool = False) -> ForwardResult:
        """One generated token whose attention covers ``context`` cached tokens (itself
        included)."""
        return self.forward(1, context - 1, record=record)

    def run(self, prompt_len: int, gen: int) -> RunResult:
        """Prefill ``prompt_len`` tokens, then generate ``gen`` tokens (the first comes from
        the prefill, each further one from a decode step)."""
        for name, value in (("prompt_len", prompt_len), ("gen", gen)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.check_context(prompt_len + gen)
        pre = self.prefill(prompt_len)
        steps = []
        for i in range(1, max(gen, 2)):
            steps.append(self.decode_step(prompt_len + i, record=(i == 1)))
            if gen == 1:
                break
        decode_s = sum(s.seconds for s in steps)
        total_s = pre.seconds + decode_s
        energy = pre.energy_j + sum(s.energy_j for s in steps)
        ddr = pre.total_ddr_bytes + sum(s.total_ddr_bytes for s in steps)
        busy = pre.tlmm_busy_s + sum(s.tlmm_busy_s for s in steps)
        bw = ddr / total_s
        return RunResult(
            prompt_len=prompt_len, gen=gen, prefill=pre, decode_steps=steps,
            ttft_s=pre.seconds, prefill_tok_s=prompt_len / pre.seconds,
            decode_tok_s=len(steps) / decode_s,
            energy_j_per_token=sum(s.energy_j for s in steps) / len(steps),
            average_power_w=energy / total_s, tlmm_utilization=busy / total_s,
            ddr_bandwidth_gbps=bw / 1e9, ddr_utilization=bw / (self.config.ddr_peak_gbps * 1e9))

    def decode_curve(self, contexts) -> list:
        """(context, decode tokens/s) at each context length. *Modeled*."""
        out = []
        for ctx in contexts:
            self.check_context(ctx)
            out.append((ctx, 1.0 / self.decode_step(ctx).seconds))
        return out


class _State:
    __slots__ = ("t", "ddr_free", "dma_end", "dma_floor", "compute_ends")

    def __init__(self):
        self.t = 0.0
        self.ddr_free = 0.0
        self.dma_end = 0.0
        self.dma_floor = 0.0
        self.compute_ends = []


def roofline(system: System, context: int) -> dict:
    """``system.roofline(context)``."""
    return system.roofline(context)
