# SPDX-License-Identifier: BSD-3-Clause
"""One performance model per accelerator block.

Each block takes the one ``AcceleratorConfig`` and exposes ``cycles(...)`` (fabric clock
cycles) or ``seconds(...)``. ``TlmmEngine.cycles`` is exact against ``rtl/tlmm.py``'s
``Engine`` (tests/test_sim_vs_rtl.py); the other blocks have no RTL yet and follow the
TeLLMe v2 loop nests described in ``research/tellme.md``. Constants: ``sim/constants.py``.
"""

from dataclasses import dataclass

from ..golden.config import AcceleratorConfig, ModelConfig
from . import constants as c

__all__ = ["TlmmEngine", "WeightDma", "WeightBuffer", "Elementwise", "PrefillAttention",
           "DecodeAttention", "KvCache", "LmHead", "Host", "Tile"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Tile:
    """A TLMM job of one linear: all K-steps of ``n_blocks`` column blocks."""

    k: int
    n: int
    k_steps: int
    n_blocks: int
    dma_bytes: int


class TlmmEngine:
    """Table-lookup ternary matmul engine (``rtl.tlmm.Engine``).

    Parameters
    ----------
    config : AcceleratorConfig
        G, T, N (``cols_per_cycle``), ``tlmm_schedule``, ``weight_buffer_partitions`` and
        ``fill_entries_per_cycle``.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def k_steps(self, k: int) -> int:
        """K-steps of G*T activations: ceil(K / (G*T))."""
        return _ceil_div(k, self.config.k_per_step)

    def n_blocks(self, n: int) -> int:
        """Column blocks of ``cols_per_cycle``: ceil(N / cols_per_cycle)."""
        return _ceil_div(n, self.config.cols_per_cycle)

    @property
    def lookup_ii(self) -> int:
        """Cycles per N-block lookup: 1, or ceil(N / P) when the weight bank is partitioned
        into P single-entry banks (TeLLMe: ceil(16 / 8) = 2)."""
        parts = self.config.weight_buffer_partitions
        return 1 if parts == 0 else _ceil_div(self.config.cols_per_cycle, parts)

    def fill_cycles(self, k: int, n: int) -> int:
        """Cycles to write one job's ``k_steps * n_blocks * cols_per_cycle`` entries into a
        bank at ``fill_entries_per_cycle`` (the RTL: one entry per cycle and weight port)."""
        entries = self.k_steps(k) * self.n_blocks(n) * self.config.cols_per_cycle
        return _ceil_div(entries, self.config.fill_entries_per_cycle)

    @property
    def tree_stages(self) -> int:
        """Pipeline stages of the engine's adder tree (``rtl.tlmm.tree_stages``): one adder
        level a stage over the T terms and the sign popcount, ceil(log2(T + 1))."""
        return self.config.tables_per_step.bit_length()

    @property
    def result_latency(self) -> int:
        """Cycles from the issue of a last-K-step lookup to its result's handshake
        (``rtl.tlmm.Engine.result_latency``): the bank read and its register, the lookup
        register, the adder tree, the accumulate stage and two through the result FIFO."""
        return 5 + self.tree_stages

    @property
    def job_overhead_cycles(self) -> int:
        """Cycles of one stall-free job beyond fill + lookups (``TLMM_JOB_OVERHEAD_CYCLES``
        plus the adder-tree stages): the registered bank write, the cycle that hands the filled
        bank to the issue stage, and ``result_latency``."""
        return c.TLMM_JOB_OVERHEAD_CYCLES + self.tree_stages

    @property
    def table_write_cycles(self) -> int:
        """``table_memory="lutram"``: cycles to write one K-step's tables, one entry of each
        table per cycle: P = (3**G - 1) / 2 (13 for G = 3). ``registers``: 0."""
        if self.config.table_memory == "registers":
            return 0
        return (3 ** self.config.group_size - 1) // 2

    def compute_cycles(self, tokens: int, k: int, n: int) -> int:
        """Lookup cycles of an (M=tokens) x K x N job once its bank is full.

        ``overlapped`` (the RTL): one cycle per (token, K-step, N-block); the next K-step's
        tables are built while the current one is looked up; with LUTRAM tables a K-step
        takes at least ``table_write_cycles`` (the steady state of ``cycles``). ``sequential``
        (TeLLMe's HLS loop nest): per token and K-step, G*T activations are read one per
        cycle, then the N-blocks are looked up at ``lookup_ii``.
        """
        ks, nb = self.k_steps(k), self.n_blocks(n)
        if self.config.tlmm_schedule == "overlapped":
            return tokens * ks * max(nb * self.lookup_ii, self.table_write_cycles)
        return tokens * ks * (self.config.k_per_step + nb * self.lookup_ii)

    def cycles(self, tokens: int, k: int, n: int) -> int:
        """Exact stall-free cycles of one job from its accepting edge to its last result's
        edge (equal to ``rtl.tlmm.Engine.cycles`` for the RTL's configuration)::

            fill_cycles(K, N) + compute_cycles(M, K, N) + job_overhead_cycles

        except for LUTRAM tables with fewer N-blocks than ``table_write_cycles``, where the
        first K-steps' table writes and the fill overlap (``_lutram_cycles``).
        """
        for name, value in (("tokens", tokens), ("k", k), ("n", n)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        nb = self.n_blocks(n) * self.lookup_ii
        if nb < self.table_write_cycles and self.config.tlmm_schedule == "overlapped":
            return self._lutram_cycles(tokens * self.k_steps(k), nb, self.fill_cycles(k, n))
        return (self.fill_cycles(k, n) + self.compute_cycles(tokens, k, n)
                + self.job_overhead_cycles)

    def _lutram_cycles(self, steps: int, nb: int, fill: int) -> int:
        """LUTRAM tables, ``nb`` < P lookups per K-step, in the engine's lookup-stage cycles
        (``rtl.tlmm``): table writes W and first lookups L per K-step s: ``W[0] = -1``,
        ``W[1] = W[0] + P``, ``W[s] = max(W[s-1] + P, L[s-2] + nb - 1)``; ``L[0] = max(fill + 4,
        W[0] + P)``, ``L[s] = max(L[s-1] + nb, W[s] + P)``; the job ends at ``L[S-1] + nb +
        result_latency - 2``. Once two K-steps in a row wait for their tables, every later one
        takes exactly P cycles, so the walk stops there."""
        p = self.table_write_cycles
        tail = nb + self.result_latency - 2
        write, look = [-1], [max(fill + 4, p - 1)]
        for s in range(1, steps):
            w = write[-1] + p
            if s >= 2:
                w = max(w, look[s - 2] + nb - 1)
            write.append(w)
            look.append(max(look[-1] + nb, w + p))
            if s >= 2 and look[-1] == w + p and look[-2] == write[-2] + p:
                return look[-1] + (steps - 1 - s) * p + tail
        return look[-1] + tail

    def macs(self, tokens: int, k: int, n: int) -> int:
        """Useful ternary MACs of a job (unpadded)."""
        return tokens * k * n


class WeightDma:
    """Weight and cache DMA from DDR through ``ddr_ports`` AXI ports.

    Bandwidth is the smaller of the ports' (``ddr_ports * port_width_bits / 8 * clock``) and
    the DDR's (``ddr_peak_gbps * DDR_STREAM_EFFICIENCY * burst / (burst + overhead)``).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    @property
    def port_bytes_per_s(self) -> float:
        cfg = self.config
        return cfg.ddr_ports * cfg.port_width_bits / 8 * cfg.clock_mhz * 1e6

    @property
    def burst_efficiency(self) -> float:
        burst = self.config.burst_bytes
        return burst / (burst + c.DDR_BURST_OVERHEAD_BYTES)

    @property
    def ddr_bytes_per_s(self) -> float:
        return (self.config.ddr_peak_gbps * 1e9 * c.DDR_STREAM_EFFICIENCY
                * self.burst_efficiency)

    @property
    def bytes_per_s(self) -> float:
        """Sustained read bandwidth of one stream, bytes/s."""
        return min(self.port_bytes_per_s, self.ddr_bytes_per_s)

    def seconds(self, nbytes: int, *, first: bool = True) -> float:
        """Time to move ``nbytes``; ``first`` adds the DDR read latency of a new stream."""
        return (c.DDR_READ_LATENCY_S if first and nbytes else 0.0) + nbytes / self.bytes_per_s

    def linear_bytes(self, k: int, n: int, *, region: int) -> int:
        """DDR bytes of one whole K x N linear in the configured weight layout.

        ``dense``: ``k_steps * N_pad`` entries of ``entry_bits`` packed back to back, rounded
        up to whole ``weight_beat_bits`` beats. ``base243``: ``N * ceil(K / 5)`` bytes (five
        trits per byte, 3**5 = 243 <= 256), rounded up to whole beats. ``tellme``: the linear
        occupies ``ceil(N / region) * ceil(k_steps / region_k_steps)`` regions of ``region`` (the
        model's hidden size) columns, each ``region_k_steps * ceil(region / entries_per_beat)``
        beats (TeLLMe 0.73B: 19 * 308 = 5,852 beats of 96 bytes per region).
        """
        cfg = self.config
        ks = _ceil_div(k, cfg.k_per_step)
        beat_bytes = cfg.weight_beat_bits // 8
        if cfg.weight_layout == "tellme":
            region_ks = _ceil_div(region, cfg.k_per_step)
            regions = _ceil_div(n, region) * _ceil_div(ks, region_ks)
            return regions * region_ks * _ceil_div(region, cfg.entries_per_beat) * beat_bytes
        if cfg.weight_layout == "base243":
            return _ceil_div(n * _ceil_div(k, 5), beat_bytes) * beat_bytes
        n_pad = _ceil_div(n, cfg.cols_per_cycle) * cfg.cols_per_cycle
        return _ceil_div(ks * n_pad * cfg.entry_bits, cfg.weight_beat_bits) * beat_bytes

    def fill_seconds(self, tile_bytes: int, fill_cycles: int, *, first: bool) -> float:
        """A tile's fill: DDR-bound or bank-write-bound, whichever is slower."""
        return max(self.seconds(tile_bytes, first=first),
                   fill_cycles / (self.config.clock_mhz * 1e6))


class WeightBuffer:
    """On-chip weight banks (URAM or BRAM), one or two (double-buffered).

    A bank word is one lookup's worth of entries: ``cols_per_cycle`` entries (the RTL) or,
    with ``weight_buffer_partitions`` P > 0, one entry in each of P banks (TeLLMe). A bank
    holds ``weight_buffer_depth`` words.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    @property
    def banks(self) -> int:
        return 2 if self.config.double_buffer else 1

    @property
    def entries_per_word(self) -> int:
        cfg = self.config
        return cfg.cols_per_cycle if cfg.weight_buffer_partitions == 0 else 1

    @property
    def words_per_read(self) -> int:
        """Independent memories read in parallel per lookup (1 wide word, or P partitions)."""
        return max(1, self.config.weight_buffer_partitions)

    @property
    def capacity_entries(self) -> int:
        """Entries one bank holds."""
        return self.config.weight_buffer_depth * self.entries_per_word * self.words_per_read

    @property
    def capacity_bits(self) -> int:
        return self.capacity_entries * self.config.entry_bits * self.banks

    def memories(self) -> dict:
        """Memory primitives: ``{"uram": n, "bram36": n}`` for all banks."""
        cfg = self.config
        width = _ceil_div(self.entries_per_word * cfg.entry_bits, c.MEMORY_WIDTH)
        depth = c.URAM_DEPTH if cfg.weight_buffer_memory == "uram" else c.BRAM36_DEPTH
        blocks = (self.banks * self.words_per_read * width
                  * _ceil_div(cfg.weight_buffer_depth, depth))
        return {"uram": blocks if cfg.weight_buffer_memory == "uram" else 0,
                "bram36": blocks if cfg.weight_buffer_memory == "bram" else 0}

    def max_blocks_per_tile(self, k: int) -> int:
        """Column blocks of a K-long linear that fit one bank (0: not even one fits)."""
        cfg = self.config
        ks = _ceil_div(k, cfg.k_per_step)
        return self.capacity_entries // (ks * cfg.cols_per_cycle)

    def tiles(self, k: int, n: int, dma: WeightDma, *, region: int) -> list:
        """Split a K x N linear into jobs (column slices) that each fit one bank.

        Raises
        ------
        ValueError
            One column block of this K does not fit a bank.
        """
        cfg = self.config
        ks = _ceil_div(k, cfg.k_per_step)
        nb = _ceil_div(n, cfg.cols_per_cycle)
        per_tile = self.max_blocks_per_tile(k)
        if per_tile == 0:
            need = ks * cfg.cols_per_cycle // (self.entries_per_word * self.words_per_read)
            raise ValueError(
                f"weight_buffer_depth {cfg.weight_buffer_depth} cannot hold one column block "
                f"of K={k} ({ks} K-steps); raise weight_buffer_depth to at least {need}")
        total = dma.linear_bytes(k, n, region=region)
        out = []
        for start in range(0, nb, per_tile):
            blocks = min(per_tile, nb - start)
            cols = min(n - start * cfg.cols_per_cycle, blocks * cfg.cols_per_cycle)
            out.append(Tile(k=k, n=cols, k_steps=ks, n_blocks=blocks,
                            dma_bytes=_ceil_div(total * blocks, nb)))
        return out


class Elementwise:
    """RMSNorm passes and the fused quantize / dequantize / elementwise stream.

    RMSNorm needs the whole row before its first output (sum of squares, then scale), so each
    norm is a pass of its own: two sweeps of ``ceil(width / elementwise_lanes)`` beats per
    token. Quantize (per-token absmax recorded by the norm), dequantize, RoPE, residual add
    and SiLU/ReLU² gating stream with the linear's output and only add pipeline latency.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def norm_cycles(self, tokens: int, width: int) -> int:
        return 2 * tokens * _ceil_div(width, self.config.elementwise_lanes) + c.NORM_LATENCY_CYCLES

    def norm_ops(self, tokens: int, width: int) -> int:
        """FP16/FP32 operations of a norm (square-add, scale, gamma, absmax): 4 per element."""
        return 4 * tokens * width

    def stream_latency_cycles(self) -> int:
        """Pipeline fill of the fused read -> quantize -> TLMM -> dequantize -> write stream."""
        return c.ELEMENTWISE_LATENCY_CYCLES

    def stream_ops(self, tokens: int, n: int) -> int:
        """Dequantize + elementwise operations on one linear's output: ~3 per element."""
        return 3 * tokens * n


def _q_dim(model: ModelConfig) -> int:
    return model.num_attention_heads * model.head_dim


def _kv_dim(model: ModelConfig) -> int:
    return model.num_key_value_heads * model.head_dim


class PrefillAttention:
    """Reversed causal attention over query tiles with online softmax (TeLLMe).

    The host flips the token order; tile ``i`` holds queries ``[i*Q, (i+1)*Q)`` (Q =
    ``attention_query_tile``) and streams the ``past + L - i*Q`` keys/values at or after it,
    so the fully masked triangle is never visited. Per (tile, key) pair:

    * QK: the Q queries' dot products run in parallel, ``ceil(q_dim / lanes)`` cycles;
    * softmax: one (query, head) running max / sum update per cycle, ``Q * heads`` cycles;
    * P.V: ``ceil(Q / attention_pv_queries) * ceil(q_dim / lanes)`` cycles per pass, two
      passes (rescale, then accumulate) unless ``attention_fused_rescale``.

    With TeLLMe's geometry at L=128 this gives 1,760 cycles per pair and 7.66 ms per layer
    against the published 7.6 ms, and 14.4 ms for a naive (unskipped) schedule against the
    published 14.3 ms ([3P], research/tellme.md).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def pairs(self, tokens: int, past: int = 0) -> int:
        """(query tile, key) pairs visited for ``tokens`` new queries after ``past`` cached."""
        q = self.config.attention_query_tile
        tiles = _ceil_div(tokens, q)
        return sum(past + tokens - i * q for i in range(tiles))

    def cycles_per_pair(self, model: ModelConfig) -> int:
        cfg = self.config
        q, lanes = cfg.attention_query_tile, cfg.attention_lanes
        beats = _ceil_div(_q_dim(model), lanes)
        passes = 1 if cfg.attention_fused_rescale else 2
        pv = _ceil_div(q, cfg.attention_pv_queries) * beats * passes
        return beats + q * model.num_attention_heads + pv

    def cycles(self, model: ModelConfig, tokens: int, past: int = 0) -> int:
        """Compute cycles of one layer's prefill attention."""
        return (self.pairs(tokens, past) * self.cycles_per_pair(model)
                + c.ATTENTION_LATENCY_CYCLES)

    def ddr_bytes(self, model: ModelConfig, tokens: int, past: int = 0) -> int:
        """FP16 K and V read per pair, Q read and output written once."""
        return (self.pairs(tokens, past) * 2 * _kv_dim(model) * 2
                + 2 * tokens * _q_dim(model) * 2)

    def ops(self, model: ModelConfig, tokens: int, past: int = 0) -> int:
        """FP16 operations: 2 per MAC for QK and P.V over every visited (query, key)."""
        return self.pairs(tokens, past) * self.config.attention_query_tile * 4 * _q_dim(model)


class DecodeAttention:
    """Two-pass decode attention over the KV cache (TeLLMe ``decode_attention.hpp``).

    Pass 1 streams K (``ceil(q_dim / decode_attention_lanes)`` cycles per cached token: every
    query head's dot product, GQA groups sharing each K beat) and keeps the per-head max and
    sum, writing the scores to an on-chip FIFO; pass 2 streams V and accumulates
    ``exp(s - max) / sum * v``. Each pass is the slower of its compute and its DDR read.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def compute_cycles(self, model: ModelConfig, context: int) -> int:
        beats = _ceil_div(_q_dim(model), self.config.decode_attention_lanes)
        return 2 * context * beats + c.ATTENTION_LATENCY_CYCLES

    def ddr_bytes(self, model: ModelConfig, context: int) -> int:
        return 2 * context * _kv_dim(model) * 2

    def seconds(self, model: ModelConfig, context: int, dma: WeightDma) -> float:
        compute = self.compute_cycles(model, context) / (self.config.clock_mhz * 1e6)
        return max(compute, dma.seconds(self.ddr_bytes(model, context)))

    def ops(self, model: ModelConfig, context: int) -> int:
        return 4 * context * _q_dim(model)


class KvCache:
    """FP16 K and V per layer in DDR, token-major."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def bytes_per_token(self, model: ModelConfig) -> int:
        """K + V bytes one token adds over all layers."""
        return model.num_hidden_layers * 2 * _kv_dim(model) * 2

    def write_bytes(self, model: ModelConfig, tokens: int) -> int:
        """One layer's K and V writes for ``tokens`` new tokens."""
        return tokens * 2 * _kv_dim(model) * 2

    def capacity(self, model: ModelConfig) -> int:
        """Longest context: the score FIFO depth and the model's position limit."""
        return min(self.config.max_context, model.max_position_embeddings)


class LmHead:
    """Final projection to the vocabulary (never quantized in BitNet).

    ``host-fp16``: ARM NEON FP16 GEMV streaming ``vocab_pad * hidden * 2`` bytes at
    ``ARM_LM_HEAD_BYTES_PER_S`` (TeLLMe: ~9 ms). ``host-int8``: half the bytes.
    ``fabric-int8`` / ``fabric-int4``: weights streamed by the DMA,
    ``FABRIC_LM_HEAD_MACS_PER_CYCLE`` MACs per cycle, argmax on the fabric.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    @staticmethod
    def vocab_padded(model: ModelConfig) -> int:
        return _ceil_div(model.vocab_size, c.VOCAB_PAD) * c.VOCAB_PAD

    def weight_bytes(self, model: ModelConfig) -> int:
        """FP16: 2 bytes, INT8: 1, INT4: 0.5 plus one FP16 scale per group of 128."""
        elements = self.vocab_padded(model) * model.hidden_size
        head = self.config.lm_head
        if head == "host-fp16":
            return 2 * elements
        if head == "fabric-int4":
            return elements // 2 + 2 * _ceil_div(elements, 128)
        return elements

    @property
    def on_host(self) -> bool:
        return self.config.lm_head.startswith("host")

    def seconds(self, model: ModelConfig, dma: WeightDma) -> float:
        nbytes = self.weight_bytes(model)
        if self.on_host:
            return nbytes / c.ARM_LM_HEAD_BYTES_PER_S
        compute = (self.vocab_padded(model) * model.hidden_size
                   / c.FABRIC_LM_HEAD_MACS_PER_CYCLE / (self.config.clock_mhz * 1e6))
        return max(compute, dma.seconds(nbytes))


class Host:
    """Per-call and per-token host overheads (PYNQ on the Cortex-A53)."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def calls_per_forward(self, model: ModelConfig) -> int:
        return model.num_hidden_layers if self.config.host_call_scope == "layer" else 1

    def call_seconds(self) -> float:
        return c.HOST_CALL_OVERHEAD_S

    def token_seconds(self) -> float:
        """Per-token host work; sampling on the host unless the LM head (with its argmax)
        runs on the fabric."""
        sampling = c.HOST_SAMPLING_S if self.config.lm_head.startswith("host") else 0.0
        return c.HOST_TOKEN_OVERHEAD_S + sampling
