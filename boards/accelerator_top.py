# SPDX-License-Identifier: BSD-3-Clause
"""Self-stimulating build top for the whole accelerator (``rtl.accelerator.Accelerator``).

On a bare board there is no host CPU and no DDR, so every signal that flows *into* the
accelerator is driven from an on-chip LFSR: the master side of the AXI-Lite register port
(``ctrl``: addresses, data, strobes, valids, ``bready`` / ``rready``) and the slave-side
responses of the AXI4 DDR port (``ddr``: ``arready``, ``rdata``, ``rvalid``, ``rlast``,
``rresp``, ``rid``, ``awready``, ``wready``, ``bvalid``, ``bresp``, ``bid``). Every signal
that flows *out* of it is folded into an XOR accumulator register whose parity drives an LED,
so synthesis can constant-fold nothing and remove nothing.

The response codes (``rresp``, ``bresp``, ``ctrl`` has none inward) are the AND of four
LFSR bits per bit, so most beats are OKAY and programs the random register writes happen to
start mostly run rather than fault at once; that changes nothing for synthesis (both bits stay
live) but makes the design behave on a board more like it does in use.

The stimulus LFSR and the observation register are flip-flops on both sides of the
accelerator, so post-route Fmax is the accelerator's own (plus one LUT level of XOR).
"""

from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io
from amaranth.lib.wiring import Flow

from ..golden.config import AcceleratorConfig, ModelConfig
from ..rtl import accelerator as rtl_accelerator
from .tops import Lfsr, observe

__all__ = ["AcceleratorTestTop", "ecp5_pll_dividers"]

#: the ULX3S's oscillator, the PLL's input (``platform.default_clk_frequency``)
ULX3S_OSCILLATOR_MHZ = 25.0

#: signals into the accelerator that are AXI response codes: biased towards OKAY (see above)
_RESPONSE_FIELDS = ("rresp", "bresp")


def ecp5_pll_dividers(f_in_mhz: float, f_out_mhz: float) -> tuple[int, int, int]:
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV)`` of an ECP5 EHXPLLL with CLKOP fed back, as
    ``ecppll`` picks them: ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, the VCO (``f_out *
    CLKOP_DIV``) in 400-800 MHz and the phase detector (``f_in / CLKI_DIV``) at least 3.125 MHz;
    the closest ``f_out`` at or below the request."""
    best = None
    for ref in range(1, 129):
        if f_in_mhz / ref < 3.125:
            break
        for fb in range(1, 81):
            f = f_in_mhz * fb / ref
            if f > f_out_mhz + 1e-9:
                break
            ops = [op for op in range(1, 129) if 400 <= f * op <= 800]
            if ops and (best is None or f > best[0] + 1e-9):
                best = (f, ref, fb, ops[len(ops) // 2])
    if best is None:
        raise ValueError(f"no ECP5 PLL setting gives {f_out_mhz} MHz from {f_in_mhz} MHz")
    return best[1:]


class AcceleratorTestTop(Elaboratable):
    """``rtl.accelerator.Accelerator`` with LFSR stimulus on all its inputs and an XOR
    checksum of all its outputs on LED 0.

    Parameters
    ----------
    config : AcceleratorConfig
        TLMM geometry (as ``Accelerator`` accepts it).
    model : ModelConfig
        Sizes the accelerator's buffers.
    max_tokens, max_context : int
        Passed to ``Accelerator``.
    max_job_n, attention_tile : int or None; gates : tuple of str or None
        Passed to ``Accelerator`` when given (the widest engine job; the queries of one
        attention tile; the MLP gates built); None: its default.

    clock_mhz : float or None
        On an ECP5 board: clock the design from an EHXPLLL at (at most) this frequency, made
        from the board's default clock, held in reset until the PLL locks (None: the default
        clock itself).

    Attributes
    ----------
    accelerator : Accelerator
    checksum : Signal(1)
        Parity of the XOR of every output bit over all cycles (driven onto ``led`` 0 when a
        platform is given).
    inputs, outputs : list of (str, Signal)
        The accelerator's port signals by path (``"ddr.rdata"``), split by direction.
    """

    def __init__(self, *, config: AcceleratorConfig, model: ModelConfig, max_tokens: int,
                 max_context: int, max_job_n: int | None = None,
                 attention_tile: int | None = None, gates: tuple | None = None,
                 clock_mhz: float | None = None):
        self.clock_mhz = clock_mhz
        kwargs = {name: value for name, value in (("max_job_n", max_job_n),
                                                  ("attention_tile", attention_tile),
                                                  ("gates", gates)) if value is not None}
        try:
            self.accelerator = rtl_accelerator.Accelerator(
                config=config, model=model, max_tokens=max_tokens, max_context=max_context,
                **kwargs)
        except Exception:
            self._MustUse__silence = True      # never built: no UnusedElaboratable warning
            raise
        self.inputs, self.outputs = [], []
        for path, member, value in self.accelerator.signature.flatten(self.accelerator):
            name = ".".join(str(p) for p in path)
            (self.inputs if member.flow == Flow.In else self.outputs).append((name, value))
        self.checksum = Signal()

    @property
    def input_width(self) -> int:
        return sum(len(v) for _, v in self.inputs)

    @property
    def output_width(self) -> int:
        return sum(len(v) for _, v in self.outputs)

    @property
    def pll_mhz(self) -> float | None:
        """The PLL's output from the board's 25 MHz (the closest setting at or below
        ``clock_mhz``), or None without a PLL."""
        if self.clock_mhz is None:
            return None
        ref, fb, _ = ecp5_pll_dividers(ULX3S_OSCILLATOR_MHZ, self.clock_mhz)
        return ULX3S_OSCILLATOR_MHZ * fb / ref

    def _clock_from_pll(self, m, platform):
        """The ``sync`` domain from an EHXPLLL fed by the platform's default clock."""
        f_in = platform.default_clk_frequency / 1e6
        ref, fb, op = ecp5_pll_dividers(f_in, self.clock_mhz)
        f_out = f_in * fb / ref
        m.submodules.clk_in = clk_in = io.Buffer("i", platform.request(platform.default_clk,
                                                                       dir="-"))
        m.domains.sync = ClockDomain("sync")
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{f_in:g}", a_FREQUENCY_PIN_CLKOP=f"{f_out:.4f}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=ref, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=op,
            p_CLKOP_CPHASE=op // 2 - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=fb,
            i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, o_CLKOP=ClockSignal("sync"),
            i_CLKFB=ClockSignal("sync"), i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        m.d.comb += ResetSignal("sync").eq(~locked)

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = self.accelerator
        if platform is not None and self.clock_mhz is not None:
            self._clock_from_pll(m, platform)

        # stimulus: one LFSR bit per input bit, four per response-code bit
        widths = [len(v) * (4 if name.split(".")[-1] in _RESPONSE_FIELDS else 1)
                  for name, v in self.inputs]
        # the seed fills the whole register, so every input bit toggles from the first cycles
        # (the register shifts one bit a cycle: a narrow seed would take its width in cycles)
        width = max(8, sum(widths))
        seed = sum(0x5EED_1234_ABCD_9876 << (64 * i) for i in range(-(-width // 64)))
        m.submodules.lfsr = lfsr = Lfsr(width, seed=seed)
        offset = 0
        for (name, value), width in zip(self.inputs, widths, strict=True):
            bits = lfsr.value[offset:offset + width]
            offset += width
            if name.split(".")[-1] in _RESPONSE_FIELDS:
                bits = Cat(*(bits[4 * i:4 * i + 4].all() for i in range(len(value))))
            m.d.comb += value.eq(bits)

        # observation: every output bit into an XOR accumulator, its parity to the LED
        observe(m, self.outputs, self.checksum, platform)
        return m
