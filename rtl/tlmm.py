# SPDX-License-Identifier: BSD-3-Clause
"""Table-lookup ternary matrix-multiply (TLMM) engine, bit-exact to ``golden.tlmm.tlmm``.

Blocks (each a :class:`amaranth.lib.wiring.Component`, all dataflow on ``lib.stream``):

``TableBuilder``
    One K-step of activations (G*T int8) in, T tables of 3**G entries out, in the order of
    ``golden.tlmm.patterns(G)``. Only the P = (3**G - 1) / 2 canonical sums are registered
    (one adder each: every canonical pattern is a shorter canonical pattern, possibly negated,
    plus one more term); the mirror half is their negation after the register.
``LookupAccumulate``
    Combinational: N columns each index the T tables with their T codes, add the T entries
    (balanced tree) and add the running accumulator (or zero on the first K-step). It uses the
    mirror symmetry too: a code c > P reads entry c - P through a (P+1)-way mux and negates it
    (folded into the adder tree as ~x plus a carry), so the table's mirror half, though part of
    the ``tables`` stream, costs no logic in the engine (synthesis removes it).
``WeightBuffer``
    Two banks (ping-pong). The fill side takes a job descriptor and then
    ``k_steps * n_blocks * N`` weight entries (the DMA order of ``host/weight_image.py``:
    K-step-major, then column; an entry is the T codes of one column, code t in bits
    [t*b, (t+1)*b)); the compute side sees a filled bank as a stream whose handshake releases it.
``Engine``
    The job loop. Loop order (TeLLMe's): token -> K-step -> N-block. The bank holds the whole
    job's weights; per token, each K-step's tables are built once and looked up by every
    N-block, accumulating into an on-chip accumulator memory of ``n_blocks`` words of N
    accumulators; the last K-step emits the N-block on ``results``.

Table memory (``AcceleratorConfig.table_memory``):

``"registers"`` (the default)
    As above: the P canonical sums of all T tables are flip-flops, built in one cycle; each of the
    N*T lookups is a (P+1)-way mux.
``"lutram"``
    Each table is a memory of ``2 * 2**S`` words of W bits (S = ``P.bit_length()``; G=3: 32 x 10),
    one write port and one *asynchronous* read port per column, so that synthesis maps it to
    LUTRAM (UltraScale+: RAM32M16) instead of a mux tree; it is built as identical copies of at
    most ``LUTRAM_READ_PORTS`` read ports each. Address = (bank, magnitude): two banks
    (double buffer). ``TableBuilder`` writes entry i = 1..P of all T tables in one cycle each (P
    cycles per K-step, holding the activation beat; entry 0 is never written, it is the memory's
    initial 0) into the free bank while the other bank is looked up; its ``tables`` stream says
    which bank is complete and its handshake frees it (the writer may refill a bank in the
    cycle it is freed). The weights are recoded once on their way into the weight bank, from code
    c to the *lookup code* ``(c > P) << S | (c > P ? c - P : c)`` (``lookup_codes``; same width),
    so a lookup's magnitude is the read address itself and only its sign is logic (folded into
    the adder tree as for the registers).

Timing (stall-free: every input valid, the activations no later than the job, ``results``
always ready), counted in clock edges from the edge that accepts the job to the edge that
accepts its last result. ``"registers"``::

    cycles(M, K, N) = k_steps * n_blocks * N  +  M * k_steps * n_blocks  +  2

with ``k_steps = ceil(K / (G*T))`` and ``n_blocks = ceil(N / cols_per_cycle)``: one weight entry
per cycle fills the bank, one bubble hands the bank to the compute side, one lookup cycle per
(token, K-step, N-block), and one cycle through the result register. The table for the next
K-step is built while the current one is looked up (zero bubbles between K-steps), and the fill
of job j+1 into the other bank overlaps the compute of job j.

``"lutram"``: the same whenever ``n_blocks >= P`` (the P writes of K-step s+1 hide behind the
n_blocks lookups of K-step s). In general, with F = ``k_steps * n_blocks * N`` (the fill),
nb = ``n_blocks`` and the S = ``M * k_steps`` K-steps of the job numbered s = 0 .. S-1, the
first write of K-step s in cycle W[s] and its first lookup in cycle L[s] (cycle 0 follows the
job's accepting edge; the first activation beat is written from the cycle that accepts the
job, cycle -1)::

    W[0] = -1,  W[1] = W[0] + P,  W[s] = max(W[s-1] + P, L[s-2] + nb - 1)      (s >= 2)
    L[0] = max(F + 1, W[0] + P),  L[s] = max(L[s-1] + nb, W[s] + P)
    cycles = L[S-1] + nb + 1

(a K-step's bank is free from the cycle of its previous user's last lookup, L[s-2] + nb - 1;
its tables are readable P cycles after its first write). For nb >= P this is the formula above
(equal to ``max(F + 2, P) + M * k_steps * nb``, and F >= P there); for nb < P the engine waits
for the writer: about P cycles per K-step instead of nb.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import tlmm as golden_tlmm
from ..golden.config import AcceleratorConfig

__all__ = ["TABLE_MEMORIES", "LUTRAM_READ_PORTS", "table_entry_width", "magnitude_bits",
           "lookup_codes", "table_read_signature", "job_layout", "TableBuilder",
           "LookupAccumulate", "WeightBuffer", "Engine"]

#: the values of ``AcceleratorConfig.table_memory`` this module builds
TABLE_MEMORIES = ("registers", "lutram")

#: ``"lutram"``: columns served by one copy of a table memory. An UltraScale+ RAM32M16 (8 LUTs)
#: has 7 read ports of 2 x 32 besides its write port; Yosys's memory_libmap maps a 32-deep memory
#: with exactly 7 read ports to 5 of them (10 bits) but one with 16 ports to 16 (one per port,
#: 14 bits wide), so N = 16 columns as copies of 7 + 7 + 2 ports take 12 instead of 16.
LUTRAM_READ_PORTS = 7


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
        ``"lutram"``: ``Out(stream.Signature(1))``, the payload the bank (0 or 1) whose tables
        are complete; they are read through ``read`` until the handshake frees the bank.
    read : In(table_read_signature(config))
        ``"lutram"`` only: ``data[col][t]`` = entry ``addr[col][t]`` (0..P) of table t in the
        bank at the head of ``tables`` (asynchronous read, one port per column).

    With ``"lutram"``, an activation beat is held (``activations.ready`` low) for the P cycles
    that write its entries 1..P into the free bank, one entry of all T tables per cycle, and is
    accepted in the last one; its payload must stay stable meanwhile (as ``lib.stream`` requires).
    """

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

    def _recipes(self):
        """For each canonical pattern: (prefix index or None, prefix sign, lane, weight)."""
        g = self._config.group_size
        pats = [tuple(int(w) for w in row)
                for row in golden_tlmm.patterns(g)[1:self.canonical + 1]]
        where = {p: i for i, p in enumerate(pats)}
        recipes = []
        for p in pats:
            lanes = [j for j, w in enumerate(p) if w]
            last = lanes[-1]
            prefix = list(p)
            prefix[last] = 0
            prefix = tuple(prefix)
            if not any(prefix):
                recipes.append((None, 0, last, p[last]))
            elif prefix in where:
                recipes.append((where[prefix], 1, last, p[last]))
            else:
                recipes.append((where[tuple(-w for w in prefix)], -1, last, p[last]))
        return recipes

    def elaborate(self, platform):
        if self.table_memory == "lutram":
            return self._elaborate_lutram()
        m = Module()
        g, t = self._config.group_size, self._config.tables_per_step
        width = self.entry_width
        canonical = Signal(data.ArrayLayout(data.ArrayLayout(signed(width), self.canonical), t))

        m.d.comb += self.activations.ready.eq(~self.tables.valid | self.tables.ready)
        with m.If(self.activations.ready):
            m.d.sync += self.tables.valid.eq(self.activations.valid)

        recipes = self._recipes()
        with m.If(self.activations.valid & self.activations.ready):
            for table in range(t):
                lanes = [self.activations.payload[table * g + j] for j in range(g)]
                sums = []
                for prefix, sign, lane, weight in recipes:
                    term = lanes[lane] if weight > 0 else -lanes[lane]
                    if prefix is None:
                        value = term
                    elif sign > 0:
                        value = sums[prefix] + term
                    else:
                        value = term - sums[prefix]
                    sums.append(value)
                for index, value in enumerate(sums):
                    m.d.sync += canonical[table][index].eq(value)

        for table in range(t):
            out = self.tables.payload[table]
            m.d.comb += out[0].eq(0)
            for index in range(self.canonical):
                m.d.comb += [
                    out[1 + index].eq(canonical[table][index]),
                    out[1 + self.canonical + index].eq(-canonical[table][index]),
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
        rbank = Signal()                              # the bank at the head of ``tables``
        full = Signal(2)

        release = Signal()
        m.d.comb += [
            self.tables.valid.eq(full.bit_select(rbank, 1)),
            self.tables.payload.eq(rbank),
            release.eq(self.tables.valid & self.tables.ready),
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
        # Set and clear never hit the same bank in one cycle: a bank being written is not full.
        for i in range(2):
            with m.If(release & (rbank == i)):
                m.d.sync += full[i].eq(0)
            with m.If(write & last & (wbank == i)):
                m.d.sync += full[i].eq(1)
        return m


class LookupAccumulate(wiring.Component):
    """N columns per cycle: T table lookups each, summed, added to the accumulators.

    Combinational (``o.valid = i.valid``, ``i.ready = o.ready``); results wrap at ``acc_width``.
    Codes are looked up as (sign, magnitude): entry ``c`` for ``c <= P``, ``-entry[c - P]``
    above; for valid codes this equals ``tables[t][c]``. Codes >= 3**G are undefined.

    Parameters
    ----------
    config : AcceleratorConfig
        Supplies G, T, N (``cols_per_cycle``) and ``acc_width``.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        ``tables`` (as ``TableBuilder.tables``; ``"registers"`` only), ``indices`` (N x T codes
        of ``golden.tlmm.index_bits(G)`` bits: column-major, each column one weight entry;
        ``"lutram"``: the ``lookup_codes`` of the weight codes), ``acc`` (N x
        signed(acc_width)), ``clear`` (1: ignore ``acc``, first K-step).
    o : Out(stream.Signature(ArrayLayout(signed(acc_width), N)))
    read : Out(table_read_signature(config))
        ``"lutram"`` only: the magnitudes out to ``TableBuilder.read``, the entries back (same
        cycle); entry ``m`` of a lookup code with its sign bit set is negated.
    """

    def __init__(self, *, config: AcceleratorConfig):
        self._config = _check_config(config)
        g, t, n = config.group_size, config.tables_per_step, config.cols_per_cycle
        self.index_bits = golden_tlmm.index_bits(g)
        self.table_memory = config.table_memory
        self.entry_layout = data.ArrayLayout(unsigned(self.index_bits), t)
        fields = {
            "indices": data.ArrayLayout(self.entry_layout, n),
            "acc": data.ArrayLayout(signed(config.acc_width), n),
            "clear": 1,
        }
        members = {}
        if self.table_memory == "lutram":
            members["read"] = Out(table_read_signature(config))
        else:
            fields = {"tables": data.ArrayLayout(data.ArrayLayout(
                signed(table_entry_width(g)), golden_tlmm.table_size(g)), t), **fields}
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(config.acc_width), n))),
            **members,
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        if self.table_memory == "lutram":
            bits = magnitude_bits(cfg.group_size)
            for col in range(cfg.cols_per_cycle):
                codes = self.i.payload.indices[col]
                terms, signs = [], []
                for t in range(cfg.tables_per_step):
                    negate = codes[t][bits]
                    m.d.comb += self.read.addr[col][t].eq(codes[t][:bits])
                    value = self.read.data[col][t]
                    terms.append(Mux(negate, ~value, value))
                    signs.append(negate)
                total = _tree_sum(terms) + _tree_sum(signs)
                acc = Mux(self.i.payload.clear, 0, self.i.payload.acc[col])
                m.d.comb += self.o.payload[col].eq(acc + total)
            return m
        canonical = (golden_tlmm.table_size(cfg.group_size) - 1) // 2
        # Mirror symmetry on the lookup side too: code c > P reads entry c - P and negates it.
        # The negation is folded into the adder tree as ~x plus a carry (popcount of the signs),
        # so each lookup is a (P+1)-way mux instead of a 3**G-way one.
        sel_bits = max(1, (canonical).bit_length())
        tables = self.i.payload.tables
        for col in range(cfg.cols_per_cycle):
            codes = self.i.payload.indices[col]
            terms, signs = [], []
            for t in range(cfg.tables_per_step):
                code = codes[t]
                negate = Signal(name=f"neg_c{col}_t{t}")
                magnitude = Signal(sel_bits, name=f"mag_c{col}_t{t}")
                m.d.comb += [
                    negate.eq(code > canonical),
                    magnitude.eq(Mux(negate, code - canonical, code)),
                ]
                entries = [tables[t][i] for i in range(canonical + 1)]
                value = _mux_tree(entries, magnitude)
                terms.append(Mux(negate, ~value, value))
                signs.append(negate)
            total = _tree_sum(terms) + _tree_sum(signs)
            acc = Mux(self.i.payload.clear, 0, self.i.payload.acc[col])
            m.d.comb += self.o.payload[col].eq(acc + total)
        return m


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
    padded to a multiple of ``cols_per_cycle``), one per cycle, into words of N entries at
    address ``k_step * n_blocks + n_block``. The bank then becomes *full* and the fill side moves
    to the other bank.

    Compute side: ``bank`` is valid while the oldest full bank waits or is in use; its payload
    is that job's descriptor and its handshake (``bank.ready``) releases the bank. ``read_addr``
    is read synchronously (one cycle) from that bank onto ``read_data``.

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
        self.word_layout = data.ArrayLayout(self.entry_layout, config.cols_per_cycle)
        layout = job_layout(max_tokens=max_tokens, max_k_steps=max_k_steps,
                            max_n_blocks=max_n_blocks)
        super().__init__({
            "job": In(stream.Signature(layout)),
            "entries": In(stream.Signature(self.entry_layout)),
            "bank": Out(stream.Signature(layout)),
            "read_addr": In(range(self.depth)),
            "read_data": Out(self.word_layout),
        })

    def elaborate(self, platform):
        m = Module()
        cols = self._config.cols_per_cycle
        entry_width = self.entry_layout.size
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

        fill_desc = Signal(layout)
        m.d.comb += fill_desc.eq(Mux(fill_sel, desc[1], desc[0]))
        lane = Signal(range(cols))
        n_block = Signal.like(self.job.payload.n_blocks)
        k_step = Signal.like(self.job.payload.k_steps)
        waddr = Signal(range(self.depth))
        lane_enable = Signal(cols)
        m.d.comb += lane_enable.eq(Const(1, cols) << lane)
        for i in range(2):
            m.d.comb += [
                writes[i].addr.eq(waddr),
                writes[i].data.eq(Cat(*[self.entries.payload] * cols)),
            ]

        with m.FSM(name="fill"):
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(~Mux(fill_sel, full[1], full[0]))
                with m.If(self.job.valid & self.job.ready):
                    with m.If(fill_sel):
                        m.d.sync += desc[1].eq(self.job.payload)
                    with m.Else():
                        m.d.sync += desc[0].eq(self.job.payload)
                    m.d.sync += [lane.eq(0), n_block.eq(0), k_step.eq(0), waddr.eq(0)]
                    m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += self.entries.ready.eq(1)
                with m.If(self.entries.valid):
                    for i in range(2):
                        m.d.comb += writes[i].en.eq(Mux(fill_sel == i, lane_enable, 0))
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == cols - 1):
                        m.d.sync += [lane.eq(0), waddr.eq(waddr + 1), n_block.eq(n_block + 1)]
                        with m.If(n_block == fill_desc.n_blocks - 1):
                            m.d.sync += [n_block.eq(0), k_step.eq(k_step + 1)]
                            with m.If(k_step == fill_desc.k_steps - 1):
                                for i in range(2):
                                    with m.If(fill_sel == i):
                                        m.d.sync += full[i].eq(1)
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

        # Both banks read the same address; comp_sel only changes on release, which is never
        # between presenting an address and using its data, so the data mux needs no register.
        for i in range(2):
            m.d.comb += reads[i].addr.eq(self.read_addr)
        m.d.comb += self.read_data.eq(Mux(comp_sel, reads[1].data, reads[0].data))
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
    weights : In(stream.Signature(ArrayLayout(unsigned(b), T)))
        Per job, ``k_steps * n_blocks * cols_per_cycle`` entries in ``host/weight_image.py``
        order (K-step-major, then column; padding entries are index 0).
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
            "weights": In(stream.Signature(data.ArrayLayout(unsigned(self.index_bits), t))),
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

    def cycles(self, tokens: int, k: int, n: int) -> int:
        """Exact stall-free cycles from the job's accepting edge to its last result's edge
        (the job alone on an idle engine; the module docstring gives both formulas)."""
        f = self.job_fields(tokens, k, n)
        nb = f["n_blocks"]
        words = f["k_steps"] * nb
        fill = words * self.config.cols_per_cycle
        if self.config.table_memory == "registers":
            return fill + tokens * words + 2
        p = (golden_tlmm.table_size(self.config.group_size) - 1) // 2
        if nb >= p:
            return fill + tokens * words + 2
        write = [-1]
        look = [max(fill + 1, write[0] + p)]
        for s in range(1, tokens * f["k_steps"]):
            w = write[-1] + p
            if s >= 2:
                w = max(w, look[s - 2] + nb - 1)
            write.append(w)
            look.append(max(look[-1] + nb, w + p))
        return look[-1] + nb + 1

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.tables = tb = TableBuilder(config=cfg)
        m.submodules.lookup = la = LookupAccumulate(config=cfg)
        m.submodules.weights = wb = WeightBuffer(
            config=cfg, max_k_steps=self.max_k_steps, max_n_blocks=self.max_n_blocks,
            max_tokens=self.max_tokens)
        m.submodules.accumulators = acc_mem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.acc_width), cfg.cols_per_cycle),
            depth=self.max_n_blocks, init=[])
        acc_w = acc_mem.write_port()
        # Transparent: with one N-block, the next K-step reads the word written this cycle.
        acc_r = acc_mem.read_port(transparent_for=(acc_w,))

        wiring.connect(m, wiring.flipped(self.job), wb.job)
        wiring.connect(m, wiring.flipped(self.activations), tb.activations)
        if cfg.table_memory == "lutram":
            # Recode each weight code to its lookup code once, on the way into the bank.
            canonical = (golden_tlmm.table_size(cfg.group_size) - 1) // 2
            m.d.comb += [
                wb.entries.valid.eq(self.weights.valid),
                self.weights.ready.eq(wb.entries.ready),
            ]
            for t in range(cfg.tables_per_step):
                code = self.weights.payload[t]
                negate = code > canonical
                m.d.comb += wb.entries.payload[t].eq(
                    Cat(Mux(negate, code - canonical, code)[:magnitude_bits(cfg.group_size)],
                        negate))
            wiring.connect(m, la.read, tb.read)
        else:
            wiring.connect(m, wiring.flipped(self.weights), wb.entries)
            m.d.comb += la.i.payload.tables.eq(tb.tables.payload)

        job = wb.bank.payload
        token = Signal.like(job.tokens)
        k_step = Signal.like(job.k_steps)
        n_block = Signal.like(job.n_blocks)
        waddr = Signal(range(wb.depth))
        running = Signal()

        last_block = n_block == job.n_blocks - 1
        last_step = k_step == job.k_steps - 1
        last_token = token == job.tokens - 1
        advance = Signal()
        m.d.comb += advance.eq(running & tb.tables.valid
                               & (~last_step | ~self.results.valid | self.results.ready))

        next_block = Mux(last_block, 0, n_block + 1)
        next_waddr = Mux(last_block & last_step, 0, waddr + 1)
        m.d.comb += [
            la.i.valid.eq(running & tb.tables.valid),
            la.i.payload.indices.eq(wb.read_data),
            la.i.payload.acc.eq(acc_r.data),
            la.i.payload.clear.eq(k_step == 0),
            la.o.ready.eq(1),
            tb.tables.ready.eq(advance & last_block),
            # Present the address of whatever is in the lookup stage next cycle.
            wb.read_addr.eq(Mux(advance, next_waddr, waddr)),
            acc_r.addr.eq(Mux(advance, next_block, n_block)),
            acc_w.addr.eq(n_block),
            acc_w.data.eq(la.o.payload),
            acc_w.en.eq(advance),
        ]

        with m.If(self.results.ready):
            m.d.sync += self.results.valid.eq(0)
        with m.If(advance & last_step):
            m.d.sync += [self.results.valid.eq(1), self.results.payload.eq(la.o.payload)]

        with m.If(~running):
            with m.If(wb.bank.valid):
                m.d.sync += running.eq(1)
        with m.Elif(advance):
            m.d.sync += [n_block.eq(next_block), waddr.eq(next_waddr)]
            with m.If(last_block):
                m.d.sync += k_step.eq(Mux(last_step, 0, k_step + 1))
                with m.If(last_step):
                    m.d.sync += token.eq(token + 1)
                    with m.If(last_token):
                        m.d.sync += [token.eq(0), running.eq(0)]
                        m.d.comb += wb.bank.ready.eq(1)
        return m
