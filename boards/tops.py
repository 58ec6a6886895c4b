# SPDX-License-Identifier: BSD-3-Clause
"""Self-stimulating build tops: a design plus on-chip LFSR stimulus and an XOR checksum to an
LED, so that nothing is optimised away and the build needs no I/O beyond a clock and one pin."""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io
from amaranth.lib.wiring import Flow

from ..golden.config import AcceleratorConfig
from ..rtl import tlmm

__all__ = ["Lfsr", "TlmmTestTop", "UNITS", "unit_parameters", "unit_component", "UnitTestTop"]


def observe(m, outputs, checksum, platform):
    """Every bit of ``outputs`` ((name, value) pairs) into an XOR accumulator whose parity is
    ``checksum``, driven to the board's LED (so synthesis keeps all the logic behind them)."""
    observed = Cat(*(value for _, value in outputs))
    acc = Signal(len(observed))
    m.d.sync += [acc.eq(acc ^ observed), checksum.eq(acc.xor())]
    if platform is not None:
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(checksum)


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


#: the accelerator's datapath units that build standalone (``--design unit --unit NAME``)
UNITS = ("quantizer", "dequantizer", "rmsnorm", "rope", "pointwise", "attention")


def unit_parameters(name: str, accelerator) -> tuple[type, dict]:
    """``(component class, keyword arguments)`` of the datapath unit ``name`` (one of
    ``UNITS``) as ``accelerator`` (an ``rtl.accelerator.Accelerator``, constructed but never
    elaborated) builds it: the same parameters as its ``elaborate`` passes (the widest linear,
    the head size, the KV-cache length, the attention tile, the gates, the accumulator
    width)."""
    from ..golden import isa, ops
    from ..rtl import attention, elementwise, quant

    if name not in UNITS:
        raise ValueError(f"unknown unit {name!r}; choose one of {', '.join(UNITS)}")
    lanes = isa.LANES
    return {
        "quantizer": (quant.Quantizer, {"lanes": lanes, "max_k": accelerator.max_dim}),
        "dequantizer": (quant.Dequantizer, {"lanes": lanes,
                                            "acc_width": accelerator.config.acc_width}),
        "rmsnorm": (elementwise.RMSNorm, {"lanes": lanes, "max_h": accelerator.max_dim,
                                          "eps": ops.eps_q16(accelerator.model.rms_norm_eps)}),
        "rope": (elementwise.RoPE, {"lanes": lanes, "head_dim": accelerator.head_dim}),
        "pointwise": (elementwise.Pointwise, {"lanes": lanes,
                                              "ops": accelerator.pointwise_ops}),
        "attention": (attention.PrefillUnit, {"queries": accelerator.attention_tile,
                                              "lanes": lanes, "head_dim": accelerator.head_dim,
                                              "max_keys": accelerator.max_context}),
    }[name]


def unit_component(name: str, accelerator):
    """The datapath unit ``name`` as ``accelerator`` builds it (``unit_parameters``)."""
    cls, kwargs = unit_parameters(name, accelerator)
    return cls(**kwargs)


class UnitTestTop(Elaboratable):
    """One ``wiring.Component`` (a datapath unit) with an LFSR bit on every input port bit
    (stream payloads, valids and the readies of its outputs alike) and every output bit folded
    into an XOR accumulator whose parity drives LED 0, as ``AcceleratorTestTop`` does for the
    whole accelerator: nothing is constant, nothing unobserved, and every path of the unit runs
    between flip-flops (the stimulus LFSR, the unit's own registers, the accumulator).

    Parameters
    ----------
    unit : wiring.Component

    Attributes
    ----------
    unit : wiring.Component
    checksum : Signal(1)
    inputs, outputs : list of (str, Value)
        The unit's port signals by path (``"x.payload"``), split by direction.
    """

    def __init__(self, unit):
        self.unit = unit
        self.inputs, self.outputs = [], []
        for path, member, value in unit.signature.flatten(unit):
            name = ".".join(str(p) for p in path)
            (self.inputs if member.flow == Flow.In else self.outputs).append(
                (name, Value.cast(value)))
        self.checksum = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        stimulus = Cat(*(value for _, value in self.inputs))
        m.submodules.lfsr = lfsr = Lfsr(max(8, len(stimulus)), seed=0x5EED_0417_C0DE)
        m.d.comb += stimulus.eq(lfsr.value[:len(stimulus)])
        observe(m, self.outputs, self.checksum, platform)
        return m
