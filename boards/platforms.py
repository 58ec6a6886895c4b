# SPDX-License-Identifier: BSD-3-Clause
"""Board platforms that amaranth-boards 0.0.21 lacks, and the registry of supported boards.

``KV260Platform`` targets the AMD Kria KV260's Zynq UltraScale+ XCK26 (xck26-sfvc784-2LV-c).
Only the part and a minimal resource set are described: the clock and LED pins below are
*placeholders* for a Vivado project export and a Yosys resource estimate. On a real KV260 the
PL clock comes from the PS (``pl_clk0``) through a block design, which Amaranth does not create.
"""

from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.resources import LEDResources
from amaranth_boards.ulx3s import ULX3S_85F_Platform

__all__ = ["KV260Platform", "KV260_BUDGET", "BOARDS", "platform_for"]

#: XCK26 programmable-logic totals (AMD DS971), the budget a KV260 design is reported against.
KV260_BUDGET = {"lut": 117_120, "ff": 234_240, "dsp": 1_248, "bram36": 144, "uram": 64}


class KV260Platform(XilinxPlatform):
    """AMD Kria KV260 (K26 SOM, XCK26 UltraScale+, speed grade 2LV-c).

    The pins are placeholders (see the module docstring); the part is real, so Vivado's
    synthesis and utilization reports of the exported project are meaningful.
    """

    device = "xck26"
    package = "sfvc784"
    speed = "2LV-c"
    default_clk = "clk100"
    resources = [
        # Placeholder: a PL-side 100 MHz clock input (on a KV260, use the PS pl_clk0 instead).
        Resource("clk100", 0, Pins("H12", dir="i"), Clock(100e6), Attrs(IOSTANDARD="LVCMOS33")),
        # Placeholder LED on the PMOD header region.
        *LEDResources(pins="F8", attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []


#: board name (as the CLI spells it) -> platform class
BOARDS = {
    "icebreaker": ICEBreakerPlatform,
    "ulx3s-85f": ULX3S_85F_Platform,
    "kv260": KV260Platform,
}


def platform_for(board: str):
    """An instance of the platform for ``board`` (one of ``BOARDS``)."""
    try:
        return BOARDS[board]()
    except KeyError:
        raise ValueError(f"unknown board {board!r}; choose one of {sorted(BOARDS)}") from None
