# SPDX-License-Identifier: BSD-3-Clause
"""Self-stimulating build tops: a design plus on-chip LFSR stimulus and an XOR checksum to an
LED, so that nothing is optimised away and the build needs no I/O beyond a clock and one pin."""

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io

from ..golden.config import AcceleratorConfig
from ..rtl import tlmm

__all__ = ["Lfsr", "TlmmTestTop"]


class Lfsr(Elaboratable):
    """A ``width``-bit Fibonacci shift register (taps at the top four bits), advancing on ``en``.

    Each output bit is a distinct flip-flop, so synthesis cannot merge lanes that it feeds.
    """

    def __init__(self, width: int, *, seed: int = 1):
        if width < 8:
            raise ValueError(f"width must be at least 8, got {width}")
        self.width = width
        self.value = Signal(width, init=(seed | 1) & ((1 << width) - 1))
        self.en = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        v = self.value
        feedback = v[-1] ^ v[-2] ^ v[-3] ^ v[-5]
        with m.If(self.en):
            m.d.sync += v.eq(Cat(feedback, v[:-1]))
        return m


class TlmmTestTop(Elaboratable):
    """``rtl.tlmm.Engine`` driven by LFSRs on every input stream, one job after another.

    Parameters
    ----------
    config : AcceleratorConfig
    max_k, max_n, max_tokens : int
        Passed to the engine; every job is the largest (max_tokens x max_k x max_n).

    Attributes
    ----------
    checksum : Signal(1)
        XOR of every result bit ever produced (driven onto ``led`` 0 when a platform is given).
    """

    def __init__(self, *, config: AcceleratorConfig, max_k: int, max_n: int, max_tokens: int = 4):
        self.engine = tlmm.Engine(config=config, max_k=max_k, max_n=max_n, max_tokens=max_tokens)
        self.checksum = Signal()
        self.results_seen = Signal(32)

    def elaborate(self, platform):
        m = Module()
        engine = self.engine
        m.submodules.engine = engine
        job = engine.job_fields(engine.max_tokens, engine.max_k, engine.max_n)
        m.d.comb += [
            engine.job.valid.eq(1),
            engine.job.payload.tokens.eq(job["tokens"]),
            engine.job.payload.k_steps.eq(job["k_steps"]),
            engine.job.payload.n_blocks.eq(job["n_blocks"]),
        ]
        for name, stream, seed in (("act_lfsr", engine.activations, 0x1234567),
                                   ("weight_lfsr", engine.weights, 0x7654321)):
            width = len(stream.payload.as_value())
            lfsr = Lfsr(max(8, width), seed=seed)
            m.submodules[name] = lfsr
            m.d.comb += [stream.valid.eq(1), stream.payload.eq(lfsr.value[:width]),
                         lfsr.en.eq(stream.ready)]

        acc = Signal(len(engine.results.payload.as_value()))
        m.d.comb += engine.results.ready.eq(1)
        with m.If(engine.results.valid):
            m.d.sync += [acc.eq(acc ^ engine.results.payload.as_value()),
                         self.results_seen.eq(self.results_seen + 1)]
        m.d.sync += self.checksum.eq(acc.xor())
        if platform is not None:
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(self.checksum)
        return m
