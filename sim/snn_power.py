# SPDX-License-Identifier: BSD-3-Clause
"""Power and energy of the SNN decoder bitstream (decoder + output filter) on the iCEBreaker
(iCE40UP5K) and the ULX3S (LFE5U-85F) at the real-time rate. *Modeled*, not measured on a
board.

Per decode (one 4 ms bin, ``rate_hz = 250`` decodes per second, ``T = 1 / rate_hz``)::

    E_static = P_static * T
    E_clock  = ff_bits * C_CLOCK * V**2 * f_clk * T        (the clock runs every cycle: the
                                                           design has no clock gating)
    E_logic  = toggles_per_busy_cycle * busy_cycles * C_TOGGLE * V**2
    E        = E_static + E_clock + E_logic;   P = E * rate_hz;   P / channels per channel

* ``P_static`` is the core's typical static supply current times its nominal voltage, from
  the device data sheets (``Device.static_source``). **The two static figures were taken from
  the data sheets' static supply current tables as recalled; no copy of either PDF was
  reachable offline when this model was written, so check them against the tables named
  before relying on the absolute numbers** (``STATIC_VERIFIED`` says so in every result).
  One published measurement agrees in magnitude for the UP5K: tinyvision-ai's
  ``ice40_power`` (Joulescope JS110 on the iCE40 UltraPlus breakout board) reads 85.6 µA on
  the 1.219 V core rail with a blank design loaded, against 75 µA here.
* ``ff_bits`` (register bits) and ``toggles_per_busy_cycle`` (RTL signal-bit transitions per
  clock while the decoder works) are measured on ``boards.snn_top.SNNTop``, the bitstream's
  own top, in the Amaranth simulator (its LFSR spike source left out): ``tests/
  test_snn_power.py`` re-measures both and checks the constants below. ``busy_cycles`` per
  decode come from ``sim.units`` (``= rtl.snn.Decoder``'s exact cycles) plus the filter's.
  Between decodes the decoder waits for the next bin and its logic does not toggle.
* ``luts_used`` is the measured post-route utilization (``ternedge build --design snn``; the
  README's fit line) and scales nothing here: it is reported so the static share per used
  LUT can be read off.
* ``C_TOGGLE`` (switched capacitance per RTL bit transition: the LUTs, carry and local
  routing that realise the bit) and ``C_CLOCK`` (per flip-flop clock pin, with its share of the
  global clock tree) are engineering estimates for 40 nm FPGA fabric, not vendor figures:
  the dynamic part is an order-of-magnitude model. At the real-time rate the static and
  clock terms dominate on both boards, so the estimate matters little for the totals.
"""

import dataclasses

__all__ = ["Device", "DEVICES", "FF_BITS", "TOGGLES_PER_BUSY_CYCLE", "STATIC_VERIFIED",
           "RATE_HZ", "decode_energy"]

#: the real-time rate: one decode per 4 ms bin
RATE_HZ = 250.0
#: register bits of ``boards.snn_top.SNNTop`` (decoder + block-middle filter + LFSR source):
#: the ``$dff`` cell widths of its RTLIL (``tests/test_snn_power.py`` re-measures it)
FF_BITS = 1221
#: RTL signal-bit transitions per clock cycle while busy (decoder + filter, the LFSR spike
#: source left out), from a 5,000-cycle Amaranth simulation of ``SNNTop`` with the shipped
#: network (``tests/test_snn_power.py`` re-measures it)
TOGGLES_PER_BUSY_CYCLE = 58.73
#: whether the static supply figures below were checked against the data sheet PDFs
STATIC_VERIFIED = False


@dataclasses.dataclass(frozen=True)
class Device:
    """One board's FPGA: core voltage, static supply and the fabric capacitances."""

    board: str
    part: str
    vcc: float                 # core supply (V)
    static_core_a: float       # typical static core supply current (A)
    static_source: str
    clock_mhz: float           # the bitstream's clock
    luts_used: int             # measured post-route
    luts_available: int
    c_toggle_f: float = 20e-15
    c_clock_f: float = 3e-15

    @property
    def static_w(self) -> float:
        return self.vcc * self.static_core_a


DEVICES = {
    "icebreaker": Device(
        board="icebreaker", part="iCE40UP5K", vcc=1.2, static_core_a=75e-6,
        static_source="iCE40 UltraPlus Family Data Sheet (FPGA-DS-02008), Static Supply "
                      "Current, ICC core, iCE40UP5K, typical at 25 C",
        clock_mhz=12.0, luts_used=4166, luts_available=5280),
    "ulx3s-85f": Device(
        board="ulx3s-85f", part="LFE5U-85F", vcc=1.1, static_core_a=73e-3,
        static_source="ECP5 and ECP5-5G Family Data Sheet (FPGA-DS-02012), Static Supply "
                      "Current, ICC core, LFE5U-85F, typical at 25 C",
        clock_mhz=25.0, luts_used=3903, luts_available=83640, c_toggle_f=30e-15),
}


def decode_energy(board: str, busy_cycles: float, channels: int = 96,
                  rate_hz: float = RATE_HZ, clock_mhz: float | None = None,
                  ff_bits: int = FF_BITS,
                  toggles_per_busy_cycle: float = TOGGLES_PER_BUSY_CYCLE) -> dict:
    """Energy per decode and power at ``rate_hz`` for ``busy_cycles`` decoder + filter
    cycles per decode on ``board`` (``DEVICES``); see the module docstring.

    Returns ``energy_uj_per_decode``, ``power_uw``, ``power_uw_per_channel`` and the three
    terms in µJ (``static_uj``, ``clock_uj``, ``logic_uj``), with the inputs used.
    """
    if board not in DEVICES:
        raise ValueError(f"board must be one of {sorted(DEVICES)}, got {board!r}")
    dev = DEVICES[board]
    f = (clock_mhz or dev.clock_mhz) * 1e6
    if not (rate_hz > 0 and f > 0 and busy_cycles >= 0 and channels > 0):
        raise ValueError("rate, clock and channels must be positive and busy_cycles >= 0")
    period = 1.0 / rate_hz
    if busy_cycles > f * period:
        raise ValueError(f"{busy_cycles:.0f} busy cycles do not fit one {period * 1e3:g} ms "
                         f"period at {f / 1e6:g} MHz")
    v2 = dev.vcc ** 2
    static = dev.static_w * period
    clock = ff_bits * dev.c_clock_f * v2 * f * period
    logic = toggles_per_busy_cycle * busy_cycles * dev.c_toggle_f * v2
    total = static + clock + logic
    power = total * rate_hz
    return {"board": board, "part": dev.part, "clock_mhz": f / 1e6, "rate_hz": rate_hz,
            "busy_cycles": float(busy_cycles), "energy_uj_per_decode": total * 1e6,
            "static_uj": static * 1e6, "clock_uj": clock * 1e6, "logic_uj": logic * 1e6,
            "power_uw": power * 1e6, "power_uw_per_channel": power * 1e6 / channels,
            "static_verified": STATIC_VERIFIED, "modeled": True}
