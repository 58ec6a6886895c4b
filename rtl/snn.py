# SPDX-License-Identifier: BSD-3-Clause
"""SNN decoder core: event-driven LIF layers, bit-exact to ``golden.snn`` (step by step).

One synaptic add per cycle. For every layer and every neuron ``n`` the core walks the set
bits of that layer's input vector (lowest first, found in two levels: the lowest non-empty
8-bit group, then the lowest bit in it, so no carry chain spans the 96/192-bit vector),
reading ``W[n, j]`` from a ROM and adding it, shifted by ``GUARD``, to one accumulator; only
active inputs cost cycles (binary spikes: accumulate-only, no multiplier).
The accumulator starts at ``decay(U) + bias - reset*theta`` (one constant multiply by beta),
and the saturated result is written back to the membrane RAM with its spike bit. Weights,
biases, beta and theta are elaboration-time constants (ROMs), so the bitstream carries the
trained network.

Per neuron ``k + 3`` cycles (fetch, ``k + 1`` accumulate, write back) for ``k`` active inputs,
so a bin costs ``cycles_per_bin = 2 + sum_l N_l * (k_l + 3)`` cycles back to back (accept,
layers, emit) and the output is valid ``latency = 1 + sum_l N_l * (k_l + 3)`` cycles after
the input transfer.
"""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden import snn as golden

__all__ = ["Decoder", "ACC_WIDTH", "OUT_WIDTH"]

ACC_WIDTH = 32
OUT_WIDTH = 32


def _lowest_index(m, work, width, name, group: int = 8):
    """Index and one-hot of the lowest set bit of ``work``, two-level so that no carry chain
    runs the full width: the lowest non-empty group of ``group`` bits, then the lowest bit in
    it (each ``x & -x`` on a few bits), encoded with OR trees."""
    groups = [work[i:i + group] for i in range(0, width, group)]
    gbits = max(1, (len(groups) - 1).bit_length())
    bbits = max(1, (group - 1).bit_length())
    nonzero = Signal(len(groups), name=f"{name}_nonzero")
    g_onehot = Signal(len(groups), name=f"{name}_g_onehot")
    chosen = Signal(group, name=f"{name}_chosen")
    b_onehot = Signal(group, name=f"{name}_b_onehot")
    onehot = Signal(width, name=f"{name}_onehot")
    m.d.comb += [nonzero[g].eq(grp.any()) for g, grp in enumerate(groups)]
    m.d.comb += g_onehot.eq(nonzero & (~nonzero + 1))
    m.d.comb += chosen.eq(Cat(*[
        Cat(*[g_onehot[g] & grp[b] for g, grp in enumerate(groups) if b < len(grp)]).any()
        for b in range(group)]))
    m.d.comb += b_onehot.eq(chosen & (~chosen + 1))
    for g, grp in enumerate(groups):
        m.d.comb += onehot[g * group:g * group + len(grp)].eq(
            Mux(g_onehot[g], b_onehot[:len(grp)], 0))

    def encode(vec, bits):
        return Cat(*[Cat(*[vec[i] for i in range(len(vec)) if (i >> b) & 1]).any()
                     if any((i >> b) & 1 for i in range(len(vec))) else 0
                     for b in range(bits)])

    index = Signal(gbits + bbits if group == 1 << bbits else width.bit_length(),
                   name=f"{name}_index")
    m.d.comb += index.eq(encode(g_onehot, gbits) * group + encode(b_onehot, bbits))
    return index, onehot


class Decoder(wiring.Component):
    """Streaming SNN decoder for a fixed ``golden.snn.Network``.

    Parameters
    ----------
    network : golden.snn.Network
        Integer weights, biases, beta, theta and resets (baked into ROMs).

    Attributes
    ----------
    spikes : In(stream.Signature(unsigned(C)))
        One bin: bit ``j`` is channel ``j``'s binary spike.
    velocity : Out(stream.Signature(ArrayLayout(signed(32), outputs)))
        The output layer's membranes in Q16 (``golden.snn.step``'s return value).
    """

    def __init__(self, *, network):
        if not isinstance(network, golden.Network):
            self._MustUse__silence = True        # never elaborated: no unused warning
            raise TypeError(f"network must be a golden.snn.Network, got {type(network).__name__}")
        self.network = network
        super().__init__({
            "spikes": In(stream.Signature(unsigned(network.channels))),
            "velocity": Out(stream.Signature(data.ArrayLayout(signed(OUT_WIDTH),
                                                              network.outputs))),
        })

    def cycles_per_bin(self, active_inputs):
        """Cycles between successive input transfers with no stalls, for ``active_inputs``:
        per layer the number of set input bits, shape ``(layers,)`` or ``(T, layers)``."""
        k = np.asarray(active_inputs, dtype=np.int64)
        n = np.array([layer.neurons for layer in self.network.layers], dtype=np.int64)
        return 2 + ((k + 3) * n).sum(axis=-1)

    def latency(self, active_inputs):
        """Cycles from the input transfer to ``velocity.valid``."""
        return self.cycles_per_bin(active_inputs) - 1

    @property
    def worst_case_cycles(self) -> int:
        return int(self.cycles_per_bin([layer.inputs for layer in self.network.layers]))

    def elaborate(self, platform):
        m = Module()
        net = self.network
        layers = net.layers
        mem_lo = -(1 << (golden.MEM_WIDTH - 1))
        mem_hi = (1 << (golden.MEM_WIDTH - 1)) - 1

        x_in = Signal(net.channels)
        spk = [Signal(layer.neurons, name=f"spk{i}") for i, layer in enumerate(layers)]
        out_u = [Signal(signed(golden.MEM_WIDTH), name=f"out_u{i}") for i in range(net.outputs)]
        max_k = max(layer.inputs for layer in layers)
        work = Signal(max_k)
        n = Signal(range(max(layer.neurons for layer in layers) + 1))
        base = Signal(range(max(layer.neurons * layer.inputs for layer in layers) + 1))
        acc = Signal(signed(ACC_WIDTH))
        pending = Signal()
        first = Signal()

        ports = []
        for i, layer in enumerate(layers):
            w_rom = Memory(shape=signed(golden.WEIGHT_WIDTH), depth=layer.weights.size,
                           init=[int(v) for v in layer.weights.reshape(-1)])
            b_rom = Memory(shape=signed(golden.MEM_WIDTH), depth=layer.neurons,
                           init=[int(v) for v in layer.bias])
            u_ram = Memory(shape=signed(golden.MEM_WIDTH), depth=layer.neurons, init=[])
            m.submodules[f"w{i}"] = w_rom
            m.submodules[f"b{i}"] = b_rom
            m.submodules[f"u{i}"] = u_ram
            ports.append((w_rom.read_port(), b_rom.read_port(), u_ram.read_port(),
                          u_ram.write_port()))

        shift = layers[-1].frac - golden.OUT_FRAC
        for j, u in enumerate(out_u):
            q16 = ((u + (1 << (shift - 1))) >> shift) if shift > 0 else (u << -shift)
            m.d.comb += self.velocity.payload[j].eq(q16)

        # one shared datapath: the FSM only steers operands into it
        index, onehot = _lowest_index(m, work, max_k, "events")
        d_u = Signal(signed(golden.MEM_WIDTH))
        d_bias = Signal(signed(golden.MEM_WIDTH))
        d_beta = Signal(range((1 << golden.BETA_FRAC) + 1))
        d_theta = Signal(range(mem_hi + 1))
        d_sprev = Signal()
        d_sub = Signal()
        d_zero = Signal()
        decay = Signal(signed(golden.MEM_WIDTH + 1))
        start = Signal(signed(ACC_WIDTH))
        m.d.comb += [
            decay.eq((d_u * d_beta + (1 << (golden.BETA_FRAC - 1))) >> golden.BETA_FRAC),
            start.eq(Mux(d_sprev & d_zero, 0, decay) + d_bias
                     - Mux(d_sprev & d_sub, d_theta, 0)),
        ]
        u_new = Signal(signed(golden.MEM_WIDTH))
        with m.If(acc < mem_lo):
            m.d.comb += u_new.eq(mem_lo)
        with m.Elif(acc > mem_hi):
            m.d.comb += u_new.eq(mem_hi)
        with m.Else():
            m.d.comb += u_new.eq(acc)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.spikes.ready.eq(1)
                with m.If(self.spikes.valid):
                    m.d.sync += [x_in.eq(self.spikes.payload), n.eq(0), base.eq(0)]
                    m.next = "INIT0"
            for i, layer in enumerate(layers):
                w_rd, b_rd, u_rd, u_wr = ports[i]
                k_in = layer.inputs
                vec_in = x_in if i == 0 else spk[i - 1]
                with m.State(f"INIT{i}"):
                    m.d.comb += [u_rd.addr.eq(n), b_rd.addr.eq(n)]
                    m.d.sync += [work.eq(vec_in), first.eq(1), pending.eq(0)]
                    m.next = f"ACC{i}"
                with m.State(f"ACC{i}"):
                    m.d.comb += [d_u.eq(u_rd.data), d_bias.eq(b_rd.data), d_beta.eq(layer.beta),
                                 d_theta.eq(layer.theta), d_sprev.eq(spk[i].bit_select(n, 1)),
                                 d_sub.eq(layer.reset == "subtract"),
                                 d_zero.eq(layer.reset == "zero")]
                    with m.If(first):
                        m.d.sync += acc.eq(start)
                    with m.Elif(pending):
                        m.d.sync += acc.eq(acc + (w_rd.data << golden.GUARD))
                    m.d.sync += first.eq(0)
                    with m.If(work.any()):
                        m.d.comb += w_rd.addr.eq(base + index)
                        m.d.sync += [work.eq(work & ~onehot), pending.eq(1)]
                    with m.Else():
                        m.d.sync += pending.eq(0)
                        m.next = f"WRITE{i}"
                with m.State(f"WRITE{i}"):
                    m.d.comb += [u_wr.addr.eq(n), u_wr.data.eq(u_new), u_wr.en.eq(1)]
                    m.d.sync += spk[i].bit_select(n, 1).eq(u_new > layer.theta)
                    if i == len(layers) - 1:
                        for j, reg in enumerate(out_u):
                            with m.If(n == j):
                                m.d.sync += reg.eq(u_new)
                    with m.If(n == layer.neurons - 1):
                        m.d.sync += [n.eq(0), base.eq(0)]
                        m.next = f"INIT{i + 1}" if i + 1 < len(layers) else "EMIT"
                    with m.Else():
                        m.d.sync += [n.eq(n + 1), base.eq(base + k_in)]
                        m.next = f"INIT{i}"
            with m.State("EMIT"):
                m.d.comb += self.velocity.valid.eq(1)
                with m.If(self.velocity.ready):
                    m.next = "IDLE"
        return m
