# SPDX-License-Identifier: BSD-3-Clause
"""``sim.snn_power``: the measured activity constants (register bits, toggles per busy cycle)
re-measured on the bitstream's own top, and the energy model's arithmetic and limits."""

import re

import pytest

from ternedge.sim import snn_power

#: the LFSR spike source (and the bins it shifts in) stand in for an electrode array
SOURCE_SIGNALS = ("clk", "rst", "lfsr", "bins")


def _ff_bits(top) -> int:
    from amaranth.back import rtlil

    text = rtlil.convert(top, ports=[])
    cells = re.finditer(r"cell \$(?:a|s|al)?dffe?\s+\S+\n(.*?)\n\s*end", text, re.S)
    return sum(int(re.search(r"parameter \\WIDTH (\d+)", c.group(1)).group(1)) for c in cells)


def _toggles(vcd_path, skip=SOURCE_SIGNALS):
    """Bit transitions of every VCD variable (each identifier once) but ``skip``."""
    widths, names, last = {}, {}, {}
    toggles, started = 0, False
    with open(vcd_path) as f:
        for line in f:
            if not started:
                if line.startswith("$var"):
                    parts = line.split()
                    widths[parts[3]] = int(parts[2])
                    names.setdefault(parts[3], parts[4])
                started = line.startswith("$enddefinitions")
                continue
            if line[0] == "b":
                value, code = line[1:].split()
                v = int(value.replace("x", "0").replace("z", "0"), 2)
            elif line[0] in "01xz":
                v, code = int(line[0] == "1"), line[1:].strip()
            else:
                continue
            if names.get(code) in skip:
                continue
            if code in last:
                toggles += bin(last[code] ^ v).count("1")
            last[code] = v
    return toggles


def test_activity_constants_match_the_rtl(tmp_path):
    pytest.importorskip("torch")
    from amaranth.sim import Simulator

    from ternedge.boards.snn_top import SNNTop

    assert _ff_bits(SNNTop(filter="block-middle")) == snn_power.FF_BITS
    cycles = 5000
    top = SNNTop(filter="block-middle")
    sim = Simulator(top)
    sim.add_clock(1e-6)

    async def bench(ctx):
        await ctx.tick().repeat(cycles)

    sim.add_testbench(bench)
    with sim.write_vcd(str(tmp_path / "snn.vcd")):
        sim.run()
    per_cycle = _toggles(tmp_path / "snn.vcd") / cycles
    print(f"toggles per busy cycle: {per_cycle:.2f}")
    assert per_cycle == pytest.approx(snn_power.TOGGLES_PER_BUSY_CYCLE, abs=0.01)


def test_energy_terms_add_up():
    e = snn_power.decode_energy("icebreaker", busy_cycles=1000, channels=96)
    dev = snn_power.DEVICES["icebreaker"]
    assert e["static_uj"] == pytest.approx(dev.vcc * dev.static_core_a / 250 * 1e6)
    assert e["logic_uj"] == pytest.approx(
        snn_power.TOGGLES_PER_BUSY_CYCLE * 1000 * dev.c_toggle_f * dev.vcc**2 * 1e6)
    assert e["energy_uj_per_decode"] == pytest.approx(
        e["static_uj"] + e["clock_uj"] + e["logic_uj"])
    assert e["power_uw"] == pytest.approx(e["energy_uj_per_decode"] * 250)
    assert e["power_uw_per_channel"] == pytest.approx(e["power_uw"] / 96)
    # more work per decode costs more; twice the channels halves the per-channel figure
    assert snn_power.decode_energy("icebreaker", 2000)["energy_uj_per_decode"] > \
        e["energy_uj_per_decode"]
    assert snn_power.decode_energy("icebreaker", 1000, channels=192)[
        "power_uw_per_channel"] == pytest.approx(e["power_uw_per_channel"] / 2)
    assert e["modeled"] and e["static_verified"] is snn_power.STATIC_VERIFIED


def test_energy_limits():
    with pytest.raises(ValueError, match="board must be"):
        snn_power.decode_energy("kv260", 100)
    with pytest.raises(ValueError, match="do not fit"):
        snn_power.decode_energy("icebreaker", 48_001)          # 12 MHz x 4 ms = 48,000
    with pytest.raises(ValueError):
        snn_power.decode_energy("icebreaker", 100, rate_hz=0)


def test_decode_neural_json_reports_energy(capsys):
    import json

    pytest.importorskip("torch")
    from ternedge.host.cli import main

    assert main(["decode-neural", "--max-bins", "500", "--filter", "block-middle",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    busy = out["cycles_per_bin"]["mean"] + out["cycles_per_bin"]["filter"]
    expected = snn_power.decode_energy("icebreaker", busy, channels=96)
    assert out["energy_uj_per_decode"] == pytest.approx(expected["energy_uj_per_decode"])
    assert out["power_uw_per_channel"] == pytest.approx(expected["power_uw_per_channel"])
    assert set(out["energy"]) == set(snn_power.DEVICES)
    assert main(["decode-neural", "--max-bins", "500", "--backend", "torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy_uj_per_decode"] is None and out["power_uw_per_channel"] is None
