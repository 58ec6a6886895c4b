# SPDX-License-Identifier: BSD-3-Clause
"""Bitstream top for the SNN decoder: ``rtl.snn.Decoder`` -> a ``rtl.bessel`` output filter
(default: the block-bidirectional middle tap, the paper's high-accuracy variant).

On a bare board there is no electrode array, so a 32-bit LFSR synthesises binary spike bins
(about 6 % occupancy: each bit is the AND of four LFSR bits) into a shift register, and the
filtered velocity is XOR-reduced onto an LED so nothing is optimised away. The decoder
carries the shipped ``snn_streaming`` network in its ROMs.

``build_snn(board, out_dir)`` runs the open flow through YoWASP (``plan =
platform.build(top, do_build=False); plan.execute_local(dir)``) and returns the bitstream path,
the post-route Fmax and the utilisation that nextpnr reports.
"""

from pathlib import Path

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io, wiring

__all__ = ["BOARDS", "FILTERS", "SNNTop", "build_snn", "default_network"]

BOARDS = ("icebreaker", "ulx3s-85f")


def default_network(channels: int = 96):
    """The shipped ``snn_streaming`` model in fixed point."""
    from ..host import neural, neural_train

    model, _ = neural_train.load_model(neural.model_path("snn_streaming", channels))
    return neural_train.to_fixed(model)


FILTERS = ("block-middle", "block-last", "causal", "block-amortized")


class SNNTop(Elaboratable):
    """LFSR spike source -> decoder -> Bessel filter -> LED."""

    def __init__(self, *, network=None, filter: str = "block-middle"):
        from ..rtl import bessel, snn

        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
        self.network = network if network is not None else default_network()
        self.decoder = snn.Decoder(network=self.network)
        self.filter = bessel.CausalFilter() if filter == "causal" else \
            bessel.AmortizedBlockFilter() if filter == "block-amortized" else \
            bessel.BlockFilter(tap=filter.split("-")[1])

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = self.decoder
        m.submodules.filter = filt = self.filter
        wiring.connect(m, dec.velocity, filt.i)

        lfsr = Signal(32, init=0xACE1_2468)
        feedback = lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]
        m.d.sync += lfsr.eq(Cat(feedback, lfsr[:-1]))
        channels = self.network.channels
        bins = Signal(channels)
        m.d.sync += bins.eq(Cat(lfsr[3] & lfsr[11] & lfsr[19] & lfsr[27], bins[:-1]))
        m.d.comb += [dec.spikes.payload.eq(bins), dec.spikes.valid.eq(1)]

        led = Signal()
        m.d.comb += filt.o.ready.eq(1)
        with m.If(filt.o.valid):
            m.d.sync += led.eq(filt.o.payload.as_value().xor())
        if platform is not None:
            m.submodules.led = led_buffer = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led_buffer.o.eq(led)
        return m


def build_snn(board: str, out_dir, network=None, filter: str = "block-middle") -> dict:
    """Build the SNN decoder + output filter bitstream for ``board`` (``icebreaker``,
    ``ulx3s-85f``); ``network`` defaults to the shipped ``snn_streaming`` model.

    Returns ``{"board", "design", "bitstream", "fmax_mhz", "utilization": {cell: {"used",
    "available"}}}``.
    """
    from . import build, platforms

    if board not in BOARDS:
        raise ValueError(f"board must be one of {BOARDS} for the SNN design, got {board!r}")
    platform = platforms.platform_for(board)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # iCE40: map the filter and leak multipliers onto the UP5K's SB_MAC16 DSPs
    overrides = {"synth_opts": "-dsp"} if board == "icebreaker" else {}
    plan = platform.build(SNNTop(network=network, filter=filter), name="top", do_build=False,
                          **overrides)
    plan.execute_local(str(out_dir), env=build.yowasp_env())
    bitstream = out_dir / ("top.bin" if board == "icebreaker" else "top.bit")
    util, fmax = build.parse_nextpnr((out_dir / "top.tim").read_text(errors="replace"))
    return {"board": board, "design": "snn", "filter": filter, "bitstream": str(bitstream),
            "fmax_mhz": fmax,
            "utilization": {k: {"used": u, "available": a} for k, (u, a) in util.items()}}
