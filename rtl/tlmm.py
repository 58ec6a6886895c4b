# SPDX-License-Identifier: BSD-3-Clause
"""Table-lookup ternary matrix-multiply (TLMM) engine, bit-exact to ``golden.tlmm.tlmm``.

Blocks (each a :class:`amaranth.lib.wiring.Component`, all dataflow on ``lib.stream``):

``TableBuilder``
    One K-step of activations (G*T int8) in, T tables of 3**G entries out, in the order of
    ``golden.tlmm.patterns(G)``. Only the P = (3**G - 1) / 2 canonical sums are built: the
    partial sums of at most two lanes are registered (one adder each from the activations), an
    entry of three or four lanes is one adder of two of them after the register; the mirror
    half is their negation.
``LookupAccumulate``
    A valid pipeline (no backpressure): N columns each index the T tables with their T lookup
    codes (registered), add the T entries over a balanced adder tree split into
    ``tree_stages(T)`` register stages, and add the running accumulator (or zero on the first
    K-step) in a separate accumulate stage (its memory word read a stage earlier into a
    register, zeroed or forwarded there). It uses the mirror symmetry: a code is (sign,
    magnitude) and reads entry ``magnitude`` through a (P+1)-way mux, negated as ~x plus one,
    the ones counted into the tree as one more term (the sign popcount, registered beside the
    lookups), so the table's mirror half costs no logic in the engine.
``WeightBuffer``
    Two banks (ping-pong). The fill side takes a job descriptor and then
    ``k_steps * n_blocks * N`` weight entries (the DMA order of ``golden/packing.py``:
    K-step-major, then column; an entry is the T codes of one column, code t in bits
    [t*b, (t+1)*b)), each written a cycle after it is taken; the compute side sees a filled bank
    as a stream whose handshake releases it.
``Engine``
    The job loop. Loop order (TeLLMe's): token -> K-step -> N-block. The bank holds the whole
    job's weights; per token, each K-step's tables are built once and looked up by every
    N-block, accumulating into an on-chip accumulator memory of ``n_blocks`` words of N
    accumulators; the last K-step emits the N-block on ``results``.

The engine is a pipeline with one control point, the issue stage, which starts one lookup
(token, K-step, N-block) a cycle by presenting its bank address: stage R reads the bank, stage
L (``ISSUE_TO_LOOKUP`` = 2 cycles after the issue) holds the registered codes and enters
``LookupAccumulate``, whose sums of the last K-step go into a result FIFO. Nothing after the
issue stalls: the issue holds ``result_credits`` credits (the FIFO's depth, one per result in
flight or waiting), so ``results.ready`` reaches only the FIFO, and a K-step's first lookup
issues only when its tables will be there by its lookup stage. The sign handling is
precomputed: each weight code is recoded into its lookup code on the way into the bank, from
code c to ``(c > P) << S | (c > P ? c - P : c)`` (``lookup_codes``; same width).

Table memory (``AcceleratorConfig.table_memory``):

``"registers"`` (the default)
    As above: the P canonical sums of all T tables are built in one cycle (partials in
    flip-flops, the rest one adder after them); a
    K-step's tables move into a second register (the lookup tables) in the bank-read cycle of
    its first lookup, which frees the builder for the next K-step; each of the N*T lookups is a
    (P+1)-way mux of the lookup tables.
``"lutram"``
    Each table is a memory of ``2 * 2**S`` words of W bits (S = ``P.bit_length()``; G=3: 32 x 10),
    one write port and one *asynchronous* read port per column, so that synthesis maps it to
    LUTRAM (UltraScale+: RAM32M16) instead of a mux tree; it is built as identical copies of at
    most ``LUTRAM_READ_PORTS`` read ports each. Address = (bank, magnitude): two banks
    (double buffer). ``TableBuilder`` writes entry i = 1..P of all T tables in one cycle each (P
    cycles per K-step, holding the activation beat; entry 0 is never written, it is the memory's
    initial 0) into the free bank while the other bank is looked up. The issue stage claims a
    bank at a K-step's first lookup, as early as ``TableBuilder.CLAIM_LEAD`` cycles before its
    last write lands, and the lookup stage of the K-step's last lookup releases it (the writer
    may refill a bank in the cycle it is released). A lookup's magnitude is the read address
    itself and only its sign is logic.

Timing (stall-free: every input valid, the activations no later than the job, ``results``
always ready), counted in clock edges from the edge that accepts the job to the edge that
accepts its last result. ``"registers"``::

    cycles(M, K, N) = k_steps * n_blocks * N / F  +  M * k_steps * n_blocks  +  7 + tree_stages(T)

with ``k_steps = ceil(K / (G*T))``, ``n_blocks = ceil(N / cols_per_cycle)``, F =
``fill_entries_per_cycle`` and ``tree_stages(T) = ceil(log2(T + 1))``: F weight entries per
cycle fill the bank, one cycle
writes the last one, one hands the bank to the issue stage (which registers the job's loop
limits), one issue per (token, K-step, N-block), and ``result_latency`` = 5 + tree_stages(T)
from the last issue to its result's handshake (bank read, read register, lookup register, the
tree, the accumulate stage, two cycles through the FIFO). The tables for the next K-step are
built while the current one is looked up (zero bubbles between K-steps), and the fill of job
j+1 into the other bank overlaps the compute of job j.

``"lutram"``: the same whenever ``n_blocks >= P`` (the P writes of K-step s+1 hide behind the
n_blocks lookups of K-step s). In general, with F = ``k_steps * n_blocks * N`` (the fill),
nb = ``n_blocks`` and the S = ``M * k_steps`` K-steps of the job numbered s = 0 .. S-1, the
first write of K-step s in cycle W[s] and its first lookup stage in cycle L[s] (cycle 0 follows
the job's accepting edge; the first activation beat is written from the cycle that accepts the
job, cycle -1)::

    W[0] = -1,  W[1] = W[0] + P,  W[s] = max(W[s-1] + P, L[s-2] + nb - 1)      (s >= 2)
    L[0] = max(F + 4, W[0] + P),  L[s] = max(L[s-1] + nb, W[s] + P)
    cycles = L[S-1] + nb + 3 + tree_stages(T)

(a K-step's bank is free from the lookup stage of its previous user's last lookup, L[s-2] + nb
- 1; its tables are readable P cycles after its first write, and it is claimed two cycles
before that). For nb >= P this is the formula above (F >= P there); for nb < P the engine waits
for the writer: about P cycles per K-step instead of nb.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import isa
from ..golden import tlmm as golden_tlmm
from ..golden.config import AcceleratorConfig

__all__ = ["TABLE_MEMORIES", "LUTRAM_READ_PORTS", "ADDER_LEVELS_PER_STAGE", "tree_stages",
           "table_entry_width", "magnitude_bits",
           "lookup_codes", "table_read_signature", "job_layout", "TableBuilder",
           "LookupAccumulate", "WeightBuffer", "Engine"]

#: the values of ``AcceleratorConfig.table_memory`` this module builds
TABLE_MEMORIES = ("registers", "lutram")

#: ``"lutram"``: columns served by one copy of a table memory. An UltraScale+ RAM32M16 (8 LUTs)
#: has 7 read ports of 2 x 32 besides its write port; Yosys's memory_libmap maps a 32-deep memory
#: with exactly 7 read ports to 5 of them (10 bits) but one with 16 ports to 16 (one per port,
#: 14 bits wide), so N = 16 columns as copies of 7 + 7 + 2 ports take 12 instead of 16.
LUTRAM_READ_PORTS = 7


#: ``LookupAccumulate``: adder-tree levels between two pipeline registers
ADDER_LEVELS_PER_STAGE = 1


def tree_stages(tables_per_step: int) -> int:
    """Pipeline stages of ``LookupAccumulate``'s adder tree: a balanced tree over the T terms and
    the sign popcount, ``ADDER_LEVELS_PER_STAGE`` levels a stage."""
    levels = tables_per_step.bit_length()             # ceil(log2(T + 1))
    return _ceil_div(levels, ADDER_LEVELS_PER_STAGE)


def table_entry_width(group_size: int) -> int:
    """Bits of one signed table entry: holds +-128*G (the mirror of an all -128 group)."""
    return (128 * group_size).bit_length() + 1


def magnitude_bits(group_size: int) -> int:
    """Bits of a lookup magnitude 0..P, P = (3**G - 1) / 2 (G=3: 4); one less than
    ``golden.tlmm.index_bits(G)``."""
    return ((golden_tlmm.table_size(group_size) - 1) // 2).bit_length()


def lookup_codes(indices, group_size: int):
    """Weight codes (``golden.tlmm`` indices, int or array) -> the lutram variant's lookup codes:
    magnitude ``c`` or ``c - P`` in the low ``magnitude_bits(G)`` bits, sign (``c > P``) above."""
    canonical = (golden_tlmm.table_size(group_size) - 1) // 2
    negate = indices > canonical
    return negate * (1 << magnitude_bits(group_size)) + indices - negate * canonical


def table_read_signature(config: AcceleratorConfig) -> wiring.Signature:
    """Read side of the lutram tables, from the reader's side: ``addr`` (N x T magnitudes) out,
    ``data`` (N x T signed entries of the bank at the head of ``TableBuilder.tables``) in, in the
    same cycle."""
    g, t, n = config.group_size, config.tables_per_step, config.cols_per_cycle
    return wiring.Signature({
        "addr": Out(data.ArrayLayout(data.ArrayLayout(unsigned(magnitude_bits(g)), t), n)),
        "data": In(data.ArrayLayout(data.ArrayLayout(signed(table_entry_width(g)), t), n)),
    })


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {type(config).__name__}")
    if config.table_memory not in TABLE_MEMORIES:
        raise ValueError(f"table_memory must be one of {', '.join(TABLE_MEMORIES)}, "
                         f"got {config.table_memory!r}")
    fill = config.fill_entries_per_cycle
    if fill not in isa.WEIGHT_PORTS or config.cols_per_cycle % fill:
        raise ValueError(f"fill_entries_per_cycle must be one of {isa.WEIGHT_PORTS} and divide "
                         f"cols_per_cycle={config.cols_per_cycle}, got {fill}")
    return config


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _ceil_div(a, b):
    return -(-a // b)


def job_layout(*, max_tokens: int, max_k_steps: int, max_n_blocks: int) -> data.StructLayout:
    """Layout of a job descriptor: ``tokens`` (M), ``k_steps``, ``n_blocks`` (all >= 1)."""
    return data.StructLayout({
        "tokens": range(max_tokens + 1),
        "k_steps": range(max_k_steps + 1),
        "n_blocks": range(max_n_blocks + 1),
    })


def _tree_sum(values):
    values = list(values)
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


class TableBuilder(wiring.Component):
    """Online TLMM tables for one K-step (T groups of G activations).

    Parameters
    ----------
    config : AcceleratorConfig
        Supplies G (``group_size``) and T (``tables_per_step``).

    Attributes
    ----------
    activations : In(stream.Signature(ArrayLayout(signed(8), G*T)))
        One K-step; group t is lanes [t*G, (t+1)*G).
    tables : Out(stream.Signature(ArrayLayout(ArrayLayout(signed(W), 3**G), T)))
        ``"registers"``: table t, entry i = ``sum_j patterns(G)[i, j] * a[t*G + j]``;
        W = ``table_entry_width(G)``. One register stage; a new K-step is accepted in the cycle
        the previous one is consumed.
        ``"lutram"``: ``Out(stream.Signature(1))``, the payload the next bank (0 or 1) to be
        claimed: valid once its tables will be complete within ``CLAIM_LEAD`` cycles (its last
        writes are under way) and it is not claimed already; the handshake claims it.
    release : In(1)
        ``"lutram"`` only: frees the oldest claimed bank (banks are released in claim order, each
        at least ``CLAIM_LEAD`` cycles after its claim); the writer may refill it in that very
        cycle.
    read : In(table_read_signature(config))
        ``"lutram"`` only: ``data[col][t]`` = entry ``addr[col][t]`` (0..P) of table t in the
        oldest claimed bank (asynchronous read, one port per column); valid from ``CLAIM_LEAD``
        cycles after the claim until the release.

    With ``"lutram"``, an activation beat is held (``activations.ready`` low) for the P cycles
    that write its entries 1..P into the free bank, one entry of all T tables per cycle, and is
    accepted in the last one; its payload must stay stable meanwhile (as ``lib.stream`` requires).
    """

    #: ``"lutram"``: cycles between a claim and the first read of the bank (the engine's issue
    #: and lookup stages are two cycles apart)
    CLAIM_LEAD = 2

    def __init__(self, *, config: AcceleratorConfig):
        self._config = _check_config(config)
        g, t = config.group_size, config.tables_per_step
        self.entry_width = table_entry_width(g)
        self.table_size = golden_tlmm.table_size(g)
        self.canonical = (self.table_size - 1) // 2
        self.table_memory = config.table_memory
        members = {"activations": In(stream.Signature(data.ArrayLayout(signed(8), g * t)))}
        if self.table_memory == "lutram":
            self.magnitude_bits = magnitude_bits(g)
            members["tables"] = Out(stream.Signature(1))
            members["release"] = In(1)
            members["read"] = In(table_read_signature(config))
        else:
            members["tables"] = Out(stream.Signature(data.ArrayLayout(
                data.ArrayLayout(signed(self.entry_width), self.table_size), t)))
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from an accepted K-step to its tables being valid (``"lutram"``: from the
        first cycle its beat is valid and a bank is free, P)."""
        return self.canonical if self.table_memory == "lutram" else 1

    def _splits(self):
        """For each canonical pattern, the terms (sign, partial) whose sum it is: one or two
        partial patterns of at most two lanes each, none of them all negative (so that each is
        one adder of activations)."""
        g = self._config.group_size
        splits = []
        for row in golden_tlmm.patterns(g)[1:self.canonical + 1]:
            p = [int(w) for w in row]
            lanes = [j for j, w in enumerate(p) if w]
            halves = [lanes[:2], lanes[2:]] if len(lanes) > 2 else [lanes]
            terms = []
            for half in halves:
                part = tuple(p[j] if j in half else 0 for j in range(g))
                sign = -1 if all(w <= 0 for w in part) else 1
                terms.append((sign, tuple(sign * w for w in part)))
            if all(sign < 0 for sign, _ in terms) and len(terms) == 2:
                raise AssertionError(f"pattern {p} splits into two negated halves")
            splits.append(terms)
        return splits

    def elaborate(self, platform):
        if self.table_memory == "lutram":
            return self._elaborate_lutram()
        m = Module()
        g, t = self._config.group_size, self._config.tables_per_step
        width = self.entry_width

        m.d.comb += self.activations.ready.eq(~self.tables.valid | self.tables.ready)
        with m.If(self.activations.ready):
            m.d.sync += self.tables.valid.eq(self.activations.valid)

        # Registered: the partial sums of at most two lanes (one adder from the activations);
        # an entry of three or more lanes is one adder of two partials after the register.
        splits = self._splits()
        partials = sorted({part for terms in splits for _, part in terms})
        for table in range(t):
            lanes = [self.activations.payload[table * g + j] for j in range(g)]
            registered = {}
            for part in partials:
                plus = [lanes[j] for j, w in enumerate(part) if w > 0]
                minus = [lanes[j] for j, w in enumerate(part) if w < 0]
                value = plus[0] + plus[1] if len(plus) == 2 else (
                    plus[0] - minus[0] if minus else plus[0])
                # data registers: no reset (a reset would make a simulator compute them
                # every cycle, and they are read only with a valid beat)
                reg = Signal(signed(width), name=f"partial_t{table}_" + "".join(
                    "p" if w > 0 else "m" if w < 0 else "z" for w in part), reset_less=True)
                with m.If(self.activations.valid & self.activations.ready):
                    m.d.sync += reg.eq(value)
                registered[part] = reg
            out = self.tables.payload[table]
            m.d.comb += out[0].eq(0)
            for index, terms in enumerate(splits):
                (s1, h1), *rest = terms
                if not rest:
                    value = registered[h1] if s1 > 0 else -registered[h1]
                else:
                    (s2, h2), = rest
                    a, b = registered[h1], registered[h2]
                    value = a + b if s1 > 0 and s2 > 0 else a - b if s1 > 0 else b - a
                m.d.comb += [
                    out[1 + index].eq(value),
                    out[1 + self.canonical + index].eq(-value),
                ]
        return m

    def _elaborate_lutram(self):
        m = Module()
        cfg = self._config
        g, t, n = cfg.group_size, cfg.tables_per_step, cfg.cols_per_cycle
        p, bits = self.canonical, self.magnitude_bits
        depth = 2 << bits                     # (bank, magnitude)
        # Each table is ceil(N / LUTRAM_READ_PORTS) identical copies (same writes), each serving
        # up to LUTRAM_READ_PORTS columns; entry 0 of either bank is never written: it reads
        # the initial 0.
        groups = [range(c, min(c + LUTRAM_READ_PORTS, n)) for c in range(0, n, LUTRAM_READ_PORTS)]
        writes, reads = [], []
        for table in range(t):
            ports = []
            for copy, cols in enumerate(groups):
                mem = memory.Memory(shape=signed(self.entry_width), depth=depth, init=[])
                m.submodules[f"table{table}_{copy}"] = mem
                writes.append((table, mem.write_port()))
                ports += [mem.read_port(domain="comb") for _ in cols]
            reads.append(ports)

        entry = Signal(range(1, p + 1), init=1)      # the entry written this cycle
        wbank = Signal()                              # the bank being written
        rbank = Signal()                              # the oldest claimed bank (read)
        cbank = Signal()                              # the next bank to claim
        full = Signal(2)                              # all P entries written, not yet released
        claimed = Signal(2)

        release = self.release
        claim = Signal()
        # The beat being written (entry >= 2: its writes go on every cycle until entry P) has its
        # tables complete CLAIM_LEAD cycles from when entry reaches P + 1 - CLAIM_LEAD.
        ahead = entry >= max(2, p + 1 - self.CLAIM_LEAD)
        m.d.comb += [
            self.tables.valid.eq(~claimed.bit_select(cbank, 1)
                                 & (full.bit_select(cbank, 1) | (ahead & (wbank == cbank)))),
            self.tables.payload.eq(cbank),
            claim.eq(self.tables.valid & self.tables.ready),
        ]
        # A bank may be rewritten from the cycle it is freed (its reads this cycle see the old
        # contents; the write lands at the edge).
        free = ~full.bit_select(wbank, 1) | (release & (rbank == wbank))
        write = Signal()
        last = entry == p
        m.d.comb += [
            write.eq(self.activations.valid & free),
            self.activations.ready.eq(write & last),
        ]

        # The sign pattern of entry ``entry`` (shared by all tables): lane j is added, subtracted
        # (as ~a plus a carry) or left out.
        plus, minus = Signal(g), Signal(g)
        pats = golden_tlmm.patterns(g)
        with m.Switch(entry):
            for i in range(1, p + 1):
                with m.Case(i):
                    m.d.comb += [
                        plus.eq(sum(1 << j for j in range(g) if pats[i, j] > 0)),
                        minus.eq(sum(1 << j for j in range(g) if pats[i, j] < 0)),
                    ]
        carry = _tree_sum(list(minus))
        for table in range(t):
            terms = []
            for j in range(g):
                lane = self.activations.payload[table * g + j]
                terms.append(Mux(plus[j], lane, Mux(minus[j], ~lane, 0)))
            value = Signal(signed(self.entry_width), name=f"entry_t{table}")
            m.d.comb += value.eq(_tree_sum(terms) + carry)
            for port in (port for owner, port in writes if owner == table):
                m.d.comb += [
                    port.addr.eq(Cat(entry, wbank)),
                    port.data.eq(value),
                    port.en.eq(write),
                ]
            for col in range(n):
                m.d.comb += [
                    reads[table][col].addr.eq(Cat(self.read.addr[col][table], rbank)),
                    self.read.data[col][table].eq(reads[table][col].data),
                ]

        with m.If(write):
            m.d.sync += entry.eq(Mux(last, 1, entry + 1))
            with m.If(last):
                m.d.sync += wbank.eq(~wbank)
        with m.If(release):
            m.d.sync += rbank.eq(~rbank)
        with m.If(claim):
            m.d.sync += cbank.eq(~cbank)
        # Set and clear never hit the same bank in one cycle: a bank being written is not full
        # and not released, and a bank is claimed only while unclaimed.
        for i in range(2):
            with m.If(release & (rbank == i)):
                m.d.sync += [full[i].eq(0), claimed[i].eq(0)]
            with m.If(write & last & (wbank == i)):
                m.d.sync += full[i].eq(1)
            with m.If(claim & (cbank == i)):
                m.d.sync += claimed[i].eq(1)
        return m


class LookupAccumulate(wiring.Component):
    """N columns per cycle: T table lookups each, summed over a pipelined adder tree, added to
    the accumulators.

    A valid pipeline without backpressure (``i`` and ``o`` are always ready): an item entering
    on ``i`` in cycle x leaves on ``o`` in cycle x + ``latency`` if it is the last K-step
    (``last``). Stages: the lookups (``"registers"``: a (P+1)-way mux per lookup over ``tables``;
    ``"lutram"``: the asynchronous read of ``read``) and the sign popcount of each column,
    registered; ``tree_stages(T)`` stages of the balanced adder tree over the T terms and the
    popcount (``ADDER_LEVELS_PER_STAGE`` levels each); then the accumulate stage, which adds
    word ``n_block`` of the accumulator memory (read in the stage before into a register: 0 for
    ``clear``, or the word its predecessor writes in that cycle, forwarded) and writes the sum
    back. Results wrap at ``acc_width``.

    Codes are lookup codes (``lookup_codes``: sign above, magnitude below): entry ``m`` of a
    code with the sign bit set is negated, folded into the tree as ~x plus one (the popcount).
    Magnitudes above P are undefined.

    Parameters
    ----------
    config : AcceleratorConfig
        Supplies G, T, N (``cols_per_cycle``), ``acc_width`` and ``table_memory``.
    max_n_blocks : int
        Words of the accumulator memory.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout, always_ready=True))
        ``tables`` (``"registers"`` only: T tables of entries 0..P, the canonical half),
        ``indices`` (N x T lookup codes, column-major, each column one weight entry),
        ``n_block`` (the accumulator word), ``clear`` (1: start from 0, the first K-step) and
        ``last`` (1: the last K-step, the sum goes out on ``o``).
    o : Out(stream.Signature(ArrayLayout(signed(acc_width), N), always_ready=True))
    read : Out(table_read_signature(config))
        ``"lutram"`` only: the magnitudes out to ``TableBuilder.read``, the entries back (same
        cycle), in the cycle an item is on ``i``.
    """

    def __init__(self, *, config: AcceleratorConfig, max_n_blocks: int = 1):
        self._config = _check_config(config)
        self.max_n_blocks = _check_positive("max_n_blocks", max_n_blocks)
        g, t, n = config.group_size, config.tables_per_step, config.cols_per_cycle
        self.index_bits = golden_tlmm.index_bits(g)
        self.canonical = (golden_tlmm.table_size(g) - 1) // 2
        self.table_memory = config.table_memory
        self.entry_layout = data.ArrayLayout(unsigned(self.index_bits), t)
        fields = {
            "indices": data.ArrayLayout(self.entry_layout, n),
            "n_block": range(max_n_blocks),
            "clear": 1,
            "last": 1,
        }
        members = {}
        if self.table_memory == "lutram":
            members["read"] = Out(table_read_signature(config))
        else:
            fields = {"tables": data.ArrayLayout(data.ArrayLayout(
                signed(table_entry_width(g)), self.canonical + 1), t), **fields}
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields), always_ready=True)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(config.acc_width), n),
                                      always_ready=True)),
            **members,
        })

    @property
    def latency(self) -> int:
        """Cycles from an item on ``i`` to its sum on ``o``: the lookup register, the tree
        stages, and the accumulate stage (combinational onto ``o``)."""
        return 1 + tree_stages(self._config.tables_per_step)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        t, n, width = cfg.tables_per_step, cfg.cols_per_cycle, cfg.acc_width
        bits = magnitude_bits(cfg.group_size)
        payload = self.i.payload

        # -- lookup stage: (P+1)-way mux (or the LUTRAM read), conditional invert, popcount --
        columns = []
        for col in range(n):
            codes = payload.indices[col]
            terms, signs = [], []
            for table in range(t):
                negate = codes[table][bits]
                magnitude = codes[table][:bits]
                if self.table_memory == "lutram":
                    m.d.comb += self.read.addr[col][table].eq(magnitude)
                    value = self.read.data[col][table]
                else:
                    entries = [payload.tables[table][i] for i in range(self.canonical + 1)]
                    value = _mux_tree(entries, magnitude)
                term = Signal(signed(table_entry_width(cfg.group_size)),
                              name=f"term_c{col}_t{table}", reset_less=True)
                # Data registers load only with a valid item (a clock enable, no logic on the
                # path) and have no reset: what an invalid stage holds is never used, and a
                # simulator then evaluates the lookups and sums only in the cycles that have
                # an item.
                with m.If(self.i.valid):
                    # ~x as x ^ all-ones: the lookup's value is used once (an expression a
                    # simulator can evaluate inside the enable)
                    m.d.sync += term.eq(value ^ negate.replicate(len(term)))
                terms.append(term)
                signs.append(negate)
            popcount = Signal(range(t + 1), name=f"signs_c{col}", reset_less=True)
            with m.If(self.i.valid):
                m.d.sync += popcount.eq(_tree_sum(signs))
            columns.append(terms + [popcount])
        flags = [(self.i.valid, payload.n_block, payload.clear, payload.last)]

        def register(values, name, enable=None):
            out = []
            for i, value in enumerate(values):
                reg = Signal(value.shape(), name=f"{name}_{i}", reset_less=enable is not None)
                if enable is None:
                    m.d.sync += reg.eq(value)
                else:
                    with m.If(enable):
                        m.d.sync += reg.eq(value)
                out.append(reg)
            return out

        flags.append(tuple(register(flags[-1], "lookup_flag")))

        # -- adder tree: ADDER_LEVELS_PER_STAGE levels between registers --
        stage = 0
        while len(columns[0]) > 1:
            stage += 1
            for col in range(n):
                level = columns[col]
                for _ in range(ADDER_LEVELS_PER_STAGE):
                    if len(level) > 1:
                        level = _pair_sums(level)
                columns[col] = register(level, f"tree{stage}_c{col}", enable=flags[-1][0])
            flags.append(tuple(register(flags[-1], f"tree{stage}_flag")))

        # -- accumulate stage --
        m.submodules.accumulators = acc_mem = memory.Memory(
            shape=data.ArrayLayout(signed(width), n), depth=self.max_n_blocks, init=[])
        acc_w = acc_mem.write_port()
        # The word an item adds is read in the stage before (asynchronously) into a register
        # that already holds 0 for a first K-step, or the word its predecessor writes in that
        # very cycle (forwarded): the accumulate stage is the adder alone.
        acc_r = acc_mem.read_port(domain="comb")
        valid, n_block, _, last = flags[-1]
        _, next_block, next_clear, _ = flags[-2]
        base = Signal.like(self.o.payload, reset_less=True)
        next_valid = flags[-2][0]
        m.d.comb += acc_r.addr.eq(next_block)
        with m.If(next_valid):
            m.d.sync += base.eq(Mux(next_clear, 0, Mux(valid & (n_block == next_block),
                                                       self.o.payload.as_value(),
                                                       acc_r.data.as_value())))
        for col in range(n):
            m.d.comb += self.o.payload[col].eq(base[col] + columns[col][0])
        m.d.comb += [
            acc_w.addr.eq(n_block),
            acc_w.data.eq(self.o.payload),
            acc_w.en.eq(valid),
            self.o.valid.eq(valid & last),
        ]
        return m


def _pair_sums(values):
    """One level of a balanced adder tree (an odd value out passes through)."""
    paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
    if len(values) % 2:
        paired.append(values[-1])
    return paired


def _mux_tree(values, select):
    """``values[select]`` as a balanced tree of 2:1 muxes (values beyond the list read 0)."""
    level = list(values)
    for bit in range(len(select)):
        if len(level) == 1:
            break
        if len(level) % 2:
            level.append(Const(0, signed(2)))
        level = [Mux(select[bit], level[i + 1], level[i]) for i in range(0, len(level), 2)]
    return level[0]


class WeightBuffer(wiring.Component):
    """Double-buffered on-chip weight banks.

    Fill side: ``job`` is accepted when the fill bank is free; then ``k_steps * n_blocks * N``
    entries (``N = cols_per_cycle``) are written in DMA order (K-step-major, then column, N
    padded to a multiple of ``cols_per_cycle``), F = ``fill_entries_per_cycle`` a cycle (one
    ``entries`` beat: entry f's T codes at codes ``[f*T, (f+1)*T)``), into words of N entries
    at address ``k_step * n_blocks + n_block``. The bank then becomes *full* and the fill side
    moves to the other bank.

    Compute side: ``bank`` is valid while the oldest full bank waits or is in use; its payload
    is that job's descriptor and its handshake (``bank.ready``) releases the bank. ``read_addr``
    is read synchronously (one cycle) onto ``read_data``, from the bank at the compute side in
    the cycle the address is presented (so the reads of a job may follow its release).

    Parameters
    ----------
    config : AcceleratorConfig
    max_k_steps, max_n_blocks, max_tokens : int
        Bank depth is ``max_k_steps * max_n_blocks`` words of N*T*b bits.
    """

    def __init__(self, *, config: AcceleratorConfig, max_k_steps: int, max_n_blocks: int,
                 max_tokens: int):
        self._config = _check_config(config)
        self.max_k_steps = _check_positive("max_k_steps", max_k_steps)
        self.max_n_blocks = _check_positive("max_n_blocks", max_n_blocks)
        self.max_tokens = _check_positive("max_tokens", max_tokens)
        self.depth = max_k_steps * max_n_blocks
        b = golden_tlmm.index_bits(config.group_size)
        self.entry_layout = data.ArrayLayout(unsigned(b), config.tables_per_step)
        self.fill_layout = data.ArrayLayout(unsigned(b),
                                            config.tables_per_step * config.fill_entries_per_cycle)
        self.word_layout = data.ArrayLayout(self.entry_layout, config.cols_per_cycle)
        layout = job_layout(max_tokens=max_tokens, max_k_steps=max_k_steps,
                            max_n_blocks=max_n_blocks)
        super().__init__({
            "job": In(stream.Signature(layout)),
            "entries": In(stream.Signature(self.fill_layout)),
            "bank": Out(stream.Signature(layout)),
            "read_addr": In(range(self.depth)),
            "read_data": Out(self.word_layout),
        })

    def elaborate(self, platform):
        m = Module()
        cols, fill = self._config.cols_per_cycle, self._config.fill_entries_per_cycle
        entry_width = self.entry_layout.size
        slots = cols // fill                          # fills per bank word
        layout = self.job.payload.shape()
        banks = [memory.Memory(shape=unsigned(self.word_layout.size), depth=self.depth, init=[])
                 for _ in range(2)]
        m.submodules.bank0, m.submodules.bank1 = banks
        writes = [bank.write_port(granularity=entry_width) for bank in banks]
        reads = [bank.read_port() for bank in banks]

        desc = [Signal(layout, name=f"desc{i}") for i in range(2)]
        full = [Signal(name=f"full{i}") for i in range(2)]
        fill_sel = Signal()
        comp_sel = Signal()

        lane = Signal(range(slots))                   # the word's next fill: lanes lane * F..
        n_block = Signal.like(self.job.payload.n_blocks)
        k_step = Signal.like(self.job.payload.k_steps)
        blocks_m1 = Signal.like(self.job.payload.n_blocks)   # the job's n_blocks - 1, k_steps - 1
        steps_m1 = Signal.like(self.job.payload.k_steps)
        waddr = Signal(range(self.depth))
        first_lanes = (1 << fill) - 1
        lane_enable = Signal(cols, init=first_lanes)
        # Accepted entries are written in the next cycle, from registers (the bank's write data
        # fans out to every lane); the bank is full after the last write.
        w_pending, w_last, w_bank = Signal(), Signal(), Signal()
        w_addr = Signal(range(self.depth))
        w_lanes = Signal(cols)
        w_entry = Signal(self.fill_layout, reset_less=True)
        for i in range(2):
            m.d.comb += [
                writes[i].addr.eq(w_addr),
                writes[i].data.eq(Cat(*[w_entry] * slots)),
                writes[i].en.eq(Mux(w_pending & (w_bank == i), w_lanes, 0)),
            ]
        with m.If(w_pending & w_last):
            for i in range(2):
                with m.If(w_bank == i):
                    m.d.sync += full[i].eq(1)

        last_entry = (lane == slots - 1) & (n_block == blocks_m1) & (k_step == steps_m1)
        m.d.sync += w_pending.eq(0)
        with m.FSM(name="fill"):
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(~Mux(fill_sel, full[1], full[0]))
                with m.If(self.job.valid & self.job.ready):
                    with m.If(fill_sel):
                        m.d.sync += desc[1].eq(self.job.payload)
                    with m.Else():
                        m.d.sync += desc[0].eq(self.job.payload)
                    m.d.sync += [lane.eq(0), n_block.eq(0), k_step.eq(0), waddr.eq(0),
                                 lane_enable.eq(first_lanes),
                                 blocks_m1.eq(self.job.payload.n_blocks - 1),
                                 steps_m1.eq(self.job.payload.k_steps - 1)]
                    m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += self.entries.ready.eq(1)
                with m.If(self.entries.valid):
                    m.d.sync += [w_pending.eq(1), w_last.eq(last_entry), w_bank.eq(fill_sel),
                                 w_addr.eq(waddr), w_lanes.eq(lane_enable),
                                 w_entry.eq(self.entries.payload),
                                 lane.eq(lane + 1),
                                 lane_enable.eq(lane_enable.rotate_left(fill))]
                    with m.If(lane == slots - 1):
                        m.d.sync += [lane.eq(0), waddr.eq(waddr + 1), n_block.eq(n_block + 1)]
                        with m.If(n_block == blocks_m1):
                            m.d.sync += [n_block.eq(0), k_step.eq(k_step + 1)]
                    with m.If(last_entry):
                        m.d.sync += fill_sel.eq(~fill_sel)
                        m.next = "IDLE"

        m.d.comb += [
            self.bank.valid.eq(Mux(comp_sel, full[1], full[0])),
            self.bank.payload.eq(Mux(comp_sel, desc[1], desc[0])),
        ]
        with m.If(self.bank.valid & self.bank.ready):
            for i in range(2):
                with m.If(comp_sel == i):
                    m.d.sync += full[i].eq(0)
            m.d.sync += comp_sel.eq(~comp_sel)

        # Both banks read the same address; the data comes from the bank that was at the
        # compute side when the address was presented (the release may come in between).
        read_sel = Signal()
        m.d.sync += read_sel.eq(comp_sel)
        for i in range(2):
            m.d.comb += reads[i].addr.eq(self.read_addr)
        m.d.comb += self.read_data.eq(Mux(read_sel, reads[1].data, reads[0].data))
        return m


class Engine(wiring.Component):
    """TLMM engine: M tokens x K x N jobs, bit-exact to ``golden.tlmm.tlmm``.

    Parameters
    ----------
    config : AcceleratorConfig
        Geometry (G, T, N = ``cols_per_cycle``), ``acc_width`` and ``table_memory``.
    max_k : int
        Longest K a job may have (sizes the weight banks and the ``k_steps`` field). The
        accumulators must hold 128 * max_k: ``config.acc_width >= (128*max_k).bit_length() + 1``.
    max_n : int
        Widest N a job may have (sizes the weight banks and the accumulator memory).
    max_tokens : int
        Largest M per job.

    Attributes
    ----------
    job : In(stream.Signature(job_layout(...)))
        ``tokens`` = M, ``k_steps`` = ceil(K / (G*T)), ``n_blocks`` = ceil(N / cols_per_cycle);
        all >= 1 (see :meth:`job_fields`). Accepted when a weight bank is free.
    weights : In(stream.Signature(ArrayLayout(unsigned(b), T * F)))
        Per job, ``k_steps * n_blocks * cols_per_cycle`` entries in ``golden/packing.py``
        order (K-step-major, then column; padding entries are index 0), F =
        ``config.fill_entries_per_cycle`` a beat (entry f's codes at ``[f*T, (f+1)*T)``).
    activations : In(stream.Signature(ArrayLayout(signed(8), G*T)))
        Per job, M * k_steps beats: token-major, each beat one K-step of G*T activations.
        Lanes beyond K in the last K-step are don't-care (their weights are the zero pattern).
    results : Out(stream.Signature(ArrayLayout(signed(acc_width), cols_per_cycle)))
        Per job, M * n_blocks beats, token-major: columns [j*N, (j+1)*N) of token m; columns
        beyond the job's N are 0.
    """

    def __init__(self, *, config: AcceleratorConfig, max_k: int, max_n: int,
                 max_tokens: int = 4096):
        self.config = _check_config(config)
        self.max_k = _check_positive("max_k", max_k)
        self.max_n = _check_positive("max_n", max_n)
        self.max_tokens = _check_positive("max_tokens", max_tokens)
        needed = (128 * max_k).bit_length() + 1
        if config.acc_width < needed:
            raise ValueError(f"acc_width {config.acc_width} cannot hold 128*max_k for "
                             f"max_k={max_k}; it needs at least {needed} bits")
        self.max_k_steps = _ceil_div(max_k, config.k_per_step)
        self.max_n_blocks = _ceil_div(max_n, config.cols_per_cycle)
        g, t, n = config.group_size, config.tables_per_step, config.cols_per_cycle
        self.index_bits = golden_tlmm.index_bits(g)
        super().__init__({
            "job": In(stream.Signature(job_layout(max_tokens=max_tokens,
                                                  max_k_steps=self.max_k_steps,
                                                  max_n_blocks=self.max_n_blocks))),
            "weights": In(stream.Signature(data.ArrayLayout(unsigned(self.index_bits),
                                                            t * config.fill_entries_per_cycle))),
            "activations": In(stream.Signature(data.ArrayLayout(signed(8), g * t))),
            "results": Out(stream.Signature(data.ArrayLayout(signed(config.acc_width), n))),
        })

    def job_fields(self, tokens: int, k: int, n: int) -> dict:
        """The ``job`` payload for an (M=tokens) x K x N job, validated against the maxima."""
        for name, value, limit in (("tokens", tokens, "max_tokens"), ("k", k, "max_k"),
                                   ("n", n, "max_n")):
            _check_positive(name, value)
            if value > getattr(self, limit):
                raise ValueError(f"{name}={value} exceeds this engine's "
                                 f"{limit}={getattr(self, limit)}")
        return {"tokens": tokens, "k_steps": _ceil_div(k, self.config.k_per_step),
                "n_blocks": _ceil_div(n, self.config.cols_per_cycle)}

    #: cycles from a lookup's issue (its bank address) to its lookup stage: the bank read, then
    #: the registered read data
    ISSUE_TO_LOOKUP = 2

    @property
    def result_latency(self) -> int:
        """Cycles from the issue of a last-K-step lookup to its result's handshake (results
        ready): ``ISSUE_TO_LOOKUP``, ``LookupAccumulate.latency`` (1 + ``tree_stages(T)``), and
        two through the result FIFO (``lib.fifo.SyncFIFOBuffered``)."""
        return self.ISSUE_TO_LOOKUP + 1 + tree_stages(self.config.tables_per_step) + 2

    @property
    def result_credits(self) -> int:
        """Depth of the result FIFO, and the credits of the issue stage: one result per
        cycle round trip (issue to handshake, then the credit back), so a stall-free job never
        waits for one."""
        return self.result_latency + 1

    def cycles(self, tokens: int, k: int, n: int) -> int:
        """Exact stall-free cycles from the job's accepting edge to its last result's edge
        (the job alone on an idle engine; the module docstring gives both formulas)."""
        f = self.job_fields(tokens, k, n)
        nb = f["n_blocks"]
        words = f["k_steps"] * nb
        fill = words * self.config.cols_per_cycle // self.config.fill_entries_per_cycle
        p = (golden_tlmm.table_size(self.config.group_size) - 1) // 2
        if self.config.table_memory == "registers" or nb >= p:
            return fill + 2 + tokens * words + self.result_latency
        # lookup-stage cycles: W[s] first table write, L[s] first lookup of K-step s
        write = [-1]
        look = [max(fill + 2 + self.ISSUE_TO_LOOKUP, write[0] + p)]
        for s in range(1, tokens * f["k_steps"]):
            w = write[-1] + p
            if s >= 2:
                w = max(w, look[s - 2] + nb - 1)
            write.append(w)
            look.append(max(look[-1] + nb, w + p))
        return look[-1] + nb + self.result_latency - self.ISSUE_TO_LOOKUP

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lutram = cfg.table_memory == "lutram"
        m.submodules.tables = tb = TableBuilder(config=cfg)
        m.submodules.lookup = la = LookupAccumulate(config=cfg, max_n_blocks=self.max_n_blocks)
        m.submodules.weights = wb = WeightBuffer(
            config=cfg, max_k_steps=self.max_k_steps, max_n_blocks=self.max_n_blocks,
            max_tokens=self.max_tokens)
        m.submodules.results = out = fifo.SyncFIFOBuffered(
            width=len(self.results.payload.as_value()), depth=self.result_credits)

        wiring.connect(m, wiring.flipped(self.job), wb.job)
        wiring.connect(m, wiring.flipped(self.activations), tb.activations)
        # The sign handling is precomputed: each weight code is recoded to its lookup code once,
        # on the way into the bank.
        canonical = (golden_tlmm.table_size(cfg.group_size) - 1) // 2
        m.d.comb += [wb.entries.valid.eq(self.weights.valid),
                     self.weights.ready.eq(wb.entries.ready)]
        for t in range(cfg.tables_per_step * cfg.fill_entries_per_cycle):
            code = self.weights.payload[t]
            negate = code > canonical
            m.d.comb += wb.entries.payload[t].eq(
                Cat(Mux(negate, code - canonical, code)[:magnitude_bits(cfg.group_size)], negate))
        if lutram:
            wiring.connect(m, la.read, tb.read)

        # ---- issue: one lookup (token, K-step, N-block) a cycle, its bank address ----
        # A job starts with one cycle (``running`` low) that registers its loop limits; the
        # loops keep "last" flags in registers, so the issue decision is a few gates of flops.
        job = wb.bank.payload
        running = Signal()
        loops = {}
        for name in ("n_blocks", "k_steps", "tokens"):
            shape = job[name].shape()
            loops[name] = (Signal(shape, name=f"{name}_count"), Signal(name=f"{name}_last"),
                           Signal(name=f"{name}_single"), Signal(shape, name=f"{name}_m2"))
        n_block, last_block, _, _ = loops["n_blocks"]
        k_step, last_step, _, _ = loops["k_steps"]
        _, last_token, _, _ = loops["tokens"]
        first_block, first_step = Signal(init=1), Signal(init=1)
        waddr = Signal(range(wb.depth))
        # thermometer-coded credits: credit[0] says one is left
        credit = Signal(self.result_credits, init=(1 << self.result_credits) - 1)

        def advance(name):
            count, last, single, m2 = loops[name]
            m.d.sync += [count.eq(Mux(last, 0, count + 1)),
                         last.eq(Mux(last, single, count == m2))]

        # stage R (bank read) and stage L (lookup, ``la.i``): valid and the item's fields
        r_valid, l_valid = Signal(), Signal()
        fields = data.StructLayout({"first": 1, "last_block": 1, "n_block": range(
            self.max_n_blocks), "clear": 1, "last": 1})
        r_item, l_item = Signal(fields), Signal(fields)
        l_codes = Signal.like(wb.read_data, reset_less=True)

        if lutram:
            table_ok = tb.tables.valid                       # claimed at issue
        else:
            # The tables are taken from the builder in stage R into the lookup register; a
            # K-step's first lookup may issue when they will be there next cycle.
            consume = Signal()
            m.d.sync += consume.eq(0)
            table_ok = ((tb.tables.valid & ~consume)
                        | (self.activations.valid & tb.activations.ready))
            m.d.comb += tb.tables.ready.eq(consume)
        issue = Signal()
        m.d.comb += issue.eq(running & (~first_block | table_ok) & (~last_step | credit[0]))
        if lutram:
            m.d.comb += [tb.tables.ready.eq(issue & first_block),
                         tb.release.eq(l_valid & l_item.last_block)]
        m.d.comb += wb.read_addr.eq(waddr)

        with m.If(~running):
            with m.If(wb.bank.valid):
                m.d.sync += running.eq(1)
                for name, (_, last, single, m2) in loops.items():
                    m.d.sync += [last.eq(job[name] == 1), single.eq(job[name] == 1),
                                 m2.eq(job[name] - 2)]
        with m.Elif(issue):
            advance("n_blocks")
            m.d.sync += [first_block.eq(last_block),
                         waddr.eq(Mux(last_block & last_step, 0, waddr + 1))]
            if not lutram:
                m.d.sync += consume.eq(first_block)
            with m.If(last_block):
                advance("k_steps")
                m.d.sync += first_step.eq(last_step)
                with m.If(last_step):
                    advance("tokens")
                    with m.If(last_token):
                        m.d.sync += running.eq(0)
                        m.d.comb += wb.bank.ready.eq(1)
        m.d.sync += [
            r_valid.eq(issue),
            r_item.first.eq(first_block), r_item.last_block.eq(last_block),
            r_item.n_block.eq(n_block), r_item.clear.eq(first_step), r_item.last.eq(last_step),
            l_valid.eq(r_valid), l_item.eq(r_item),
        ]
        with m.If(r_valid):                 # only a valid lookup's codes are used
            m.d.sync += l_codes.eq(wb.read_data)

        # ---- lookup, adder tree, accumulate ----
        m.d.comb += [
            la.i.valid.eq(l_valid),
            la.i.payload.indices.eq(l_codes),
            la.i.payload.n_block.eq(l_item.n_block),
            la.i.payload.clear.eq(l_item.clear),
            la.i.payload.last.eq(l_item.last),
        ]
        if not lutram:
            # the tables of the K-step in stage L: entries 1..P of the builder's register
            lookup_tables = Signal(data.ArrayLayout(data.ArrayLayout(
                signed(tb.entry_width), canonical), cfg.tables_per_step), reset_less=True)
            with m.If(consume):
                for t in range(cfg.tables_per_step):
                    for i in range(canonical):
                        m.d.sync += lookup_tables[t][i].eq(tb.tables.payload[t][1 + i])
            for t in range(cfg.tables_per_step):
                m.d.comb += la.i.payload.tables[t][0].eq(0)
                for i in range(canonical):
                    m.d.comb += la.i.payload.tables[t][1 + i].eq(lookup_tables[t][i])

        # ---- results: a FIFO the issue stage holds credits for (no backpressure inside) ----
        m.d.comb += [
            out.w_en.eq(la.o.valid),
            out.w_data.eq(la.o.payload),
            self.results.valid.eq(out.r_rdy),
            self.results.payload.eq(out.r_data),
            out.r_en.eq(self.results.ready),
        ]
        taken = issue & last_step
        returned = self.results.valid & self.results.ready
        with m.If(taken & ~returned):
            m.d.sync += credit.eq(credit >> 1)
        with m.If(returned & ~taken):
            m.d.sync += credit.eq(Cat(1, credit[:-1]))
        return m
