# SPDX-License-Identifier: BSD-3-Clause
"""The logic-level counter (``boards.logic_levels``) on hand-made netlists in Yosys'
``write_json`` form, and one real ``synth_xilinx`` netlist (marker ``board``)."""

import json

import pytest

from ternedge.boards import logic_levels


class Netlist:
    """A hand-made flattened netlist: ``add`` cells by type and connections (ints are nets)."""

    DIRECTIONS = {
        "FDRE": {"C": "input", "CE": "input", "R": "input", "D": "input", "Q": "output"},
        "RAMB36E2": {"CLKARDCLK": "input", "ADDRARDADDR": "input", "DINADIN": "input",
                     "DOUTADOUT": "output"},
        "RAM64X1D": {"WCLK": "input", "D": "input", "WE": "input", "A": "input",
                     "DPRA": "input", "SPO": "output", "DPO": "output"},
        "CARRY8": {"CI": "input", "CI_TOP": "input", "DI": "input", "S": "input",
                   "O": "output", "CO": "output"},
        "DSP48E2": {"CLK": "input", "A": "input", "B": "input", "C": "input",
                    "CEP": "input", "P": "output"},
        "IBUF": {"I": "input", "O": "output"},
        "OBUF": {"I": "input", "O": "output"},
        "LUT2": {"I0": "input", "I1": "input", "O": "output"},
        "MYSTERY": {"I": "input", "O": "output"},
    }

    def __init__(self):
        self.cells, self.netnames, self.next_bit = {}, {}, 10

    def net(self, name=None, width=1):
        bits = list(range(self.next_bit, self.next_bit + width))
        self.next_bit += width
        if name is not None:
            self.netnames[name] = {"hide_name": 0, "bits": bits}
        return bits if width > 1 else bits[0]

    def add(self, name, cell_type, parameters=None, **connections):
        self.cells[name] = {
            "type": cell_type, "parameters": parameters or {},
            "port_directions": {p: self.DIRECTIONS[cell_type][p] for p in connections},
            "connections": {p: v if isinstance(v, list) else [v]
                            for p, v in connections.items()}}

    def ff(self, name, d, q_name=None):
        q = self.net(q_name or name)
        self.add(name, "FDRE", C=2, CE="1", R="0", D=d, Q=q)
        return q

    def lut(self, name, *inputs, out_name=None):
        o = self.net(out_name)
        self.add(name, "LUT2", I0=inputs[0], I1=inputs[-1], O=o)
        return o

    def doc(self):
        return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                    "ports": {}, "cells": self.cells,
                                    "netnames": self.netnames}}}


def lut_chain(levels):
    n = Netlist()
    d_start = n.net()
    start = n.ff("start_reg", d_start)
    bit = start
    for i in range(levels):
        bit = n.lut(f"lut{i}", bit, start, out_name=f"stage{i}")
    end = n.ff("end_reg", bit)
    n.cells["start_reg"]["connections"]["D"] = [end]      # back with no logic: 0 levels
    return n


@pytest.mark.parametrize("levels", [1, 2, 7, 40])
def test_chain_of_luts_between_two_registers(levels):
    result = logic_levels.longest_path(lut_chain(levels).doc())
    assert result["logic_levels"] == levels
    assert result["source"] == "start_reg (FDRE Q)"
    assert result["sink"] == (f"end_reg (FDRE D, from stage{levels - 1})")
    assert result["cells"] == {"LUT2": levels}
    assert [step["net"] for step in result["path"]] == [f"stage{i}" for i in range(levels)]
    assert result["assumed"] == []
    assert result["through"] == [["(top)", levels]]


def test_through_names_the_scopes_the_path_crosses():
    n = Netlist()
    start = n.ff("start_reg", n.net())
    bit = start
    for i, net in enumerate(["unit.norm.a", "unit.norm.b[3]", "$abc$1", "unit.quant.c",
                             "top_net", "unit.quant.i__payload.a[2]"]):
        bit = n.lut(f"l{i}", bit, bit, out_name=net)
    n.ff("end_reg", bit)
    assert logic_levels.longest_path(n.doc())["through"] == [
        ["unit.norm", 2], ["unit.quant", 1], ["(top)", 1], ["unit.quant", 1]]


def test_register_feeding_register_is_zero_levels():
    n = Netlist()
    a = n.ff("a", n.net())
    n.ff("b", a)
    n.cells["a"]["connections"]["D"] = [n.cells["b"]["connections"]["Q"][0]]
    assert logic_levels.longest_path(n.doc())["logic_levels"] == 0


def test_longest_of_two_paths_and_the_pins_are_not_counted():
    n = Netlist()
    pin = n.net("pin_in")
    buffered = n.net("pin_buf")
    n.add("ibuf", "IBUF", I=pin, O=buffered)
    # ten LUTs from the pin to a register: not register-to-register
    bit = buffered
    for i in range(10):
        bit = n.lut(f"p{i}", bit, bit)
    r1 = n.ff("r1", bit)
    # three LUTs from r1 to r2, and r2 through four LUTs to an output pin
    x = r1
    for i in range(3):
        x = n.lut(f"q{i}", x, x, out_name=f"q{i}")
    r2 = n.ff("r2", x)
    y = r2
    for i in range(4):
        y = n.lut(f"o{i}", y, y)
    n.add("obuf", "OBUF", I=y, O=n.net("pin_out"))
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 3
    assert result["source"] == "r1 (FDRE Q)" and result["sink"].startswith("r2 (FDRE D")


def test_carry_chain_counts_each_carry8_and_only_its_lower_bits():
    n = Netlist()
    a = [n.ff(f"a{i}", n.net()) for i in range(8)]
    co0, o0 = n.net(width=8), n.net(width=8)
    n.add("carry0", "CARRY8", CI=a[0], CI_TOP="0", DI=a, S=a, O=o0, CO=co0)
    co1, o1 = n.net("co1", width=8), n.net("sum1", width=8)
    n.add("carry1", "CARRY8", CI=co0[7], CI_TOP="0", DI=["0"] * 8, S=["0"] * 8, O=o1,
          CO=co1)
    n.ff("top_bit", o1[7])
    # a register on carry0's O[0] sees one level
    n.ff("low_bit", o0[0])
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 2 and result["cells"] == {"CARRY8": 2}
    assert result["sink"] == "top_bit (FDRE D, from sum1[7])"


def test_block_ram_is_a_register_and_lutram_reads_are_one_level():
    n = Netlist()
    addr = n.ff("addr", n.net())
    dout = n.net("bram_dout")
    n.add("bram", "RAMB36E2", CLKARDCLK=2, ADDRARDADDR=addr, DINADIN=n.lut("w", addr, addr),
          DOUTADOUT=dout)
    # the BRAM's output starts a path: one LUT to a register
    n.ff("after_bram", n.lut("l0", dout, dout))
    # LUTRAM: a registered read address, the read (one level), two LUTs -> 3 levels; the
    # write data, through one LUT, ends a path (1 level)
    spo, dpo = n.net("spo"), n.net("lutram_out")
    n.add("lutram", "RAM64X1D", WCLK=2, D=n.lut("wd", addr, addr), WE="1", A=addr,
          DPRA=addr, SPO=spo, DPO=dpo)
    n.ff("after_lutram", n.lut("m1", n.lut("m0", dpo, dpo), dpo))
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 3
    assert result["cells"] == {"LUT2": 2, "RAM64X1D": 1}
    assert result["source"] == "addr (FDRE Q)"


def test_lutram_state_starts_a_path():
    n = Netlist()
    dpo = n.net("lutram_out")
    n.add("lutram", "RAM64X1D", WCLK=2, D="0", WE="0", A=["0"], DPRA=["0"], SPO=n.net(),
          DPO=dpo)
    n.ff("r", n.lut("l", dpo, dpo))
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 2
    assert result["source"] == "lutram (its own state) (RAM64X1D DPO)"


@pytest.mark.parametrize("params, levels", [
    ({"AREG": "0", "BREG": "0", "CREG": "0", "MREG": "0", "PREG": "0"}, 3),  # 1 + DSP + 1
    ({"AREG": "1", "BREG": "1", "CREG": "1", "MREG": "0", "PREG": "0"}, 2),  # DSP + 1
    ({"AREG": "0", "BREG": "0", "CREG": "0", "MREG": "0", "PREG": "1"}, 1),  # 1 | 1
])
def test_dsp_by_its_register_parameters(params, levels):
    n = Netlist()
    a = n.ff("a", n.net())
    p = n.net("product", width=2)
    n.add("dsp", "DSP48E2", params, CLK=2, A=[n.lut("in", a, a)], B=[a], C=[a], CEP="1", P=p)
    n.ff("after", n.lut("out", p[0], p[0]))
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == levels


def test_unknown_cell_is_assumed_combinational_and_listed():
    n = Netlist()
    a = n.ff("a", n.net())
    o = n.net("mystery_out")
    n.add("m", "MYSTERY", I=a, O=o)
    n.ff("b", o)
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 1 and result["assumed"] == ["MYSTERY"]


def test_bad_netlists():
    n = lut_chain(2)
    # a loop of two LUTs
    x, y = n.net("x"), n.net("y")
    n.add("loop0", "LUT2", I0=y, I1=y, O=x)
    n.add("loop1", "LUT2", I0=x, I1=x, O=y)
    n.ff("seen", x)
    with pytest.raises(ValueError, match="combinational loop through loop"):
        logic_levels.longest_path(n.doc())
    n = lut_chain(1)
    n.cells["adder"] = {"type": "$add", "connections": {}, "port_directions": {}}
    with pytest.raises(ValueError, match="not technology-mapped: adder"):
        logic_levels.longest_path(n.doc())
    doc = lut_chain(1).doc()
    doc["modules"]["sub"] = {"attributes": {}, "cells": {}}
    doc["modules"]["top"]["cells"]["u"] = {"type": "sub", "connections": {},
                                           "port_directions": {}}
    with pytest.raises(ValueError, match="not flattened"):
        logic_levels.longest_path(doc)
    with pytest.raises(ValueError, match="no module 'nope'"):
        logic_levels.longest_path(doc, top="nope")


def test_no_register_path():
    assert logic_levels.longest_path(Netlist().doc())["logic_levels"] is None


def test_deep_chain_needs_no_recursion(tmp_path):
    path = tmp_path / "netlist.json"
    path.write_text(json.dumps(lut_chain(5000).doc()))
    assert logic_levels.longest_path_file(path)["logic_levels"] == 5000


def test_sweep_table_shows_the_logic_levels():
    from ternedge.boards import build

    rows = [{"name": "1:accelerator-kv260-3,28,16", "status": "ok", "error": None,
             "result": {"fmax_mhz": None, "logic_levels": 42, "build_seconds": 480,
                        "utilization": {"lut": 100, "lutram_luts": 20, "ff": 7, "dsp": 3}}},
            {"name": "2:unit-ulx3s-85f-rope", "status": "ok", "error": None,
             "result": {"fmax_mhz": 31.25, "seed": None, "build_seconds": 200,
                        "utilization": {"lut": 50, "ff": 5, "dsp": 2}}}]
    table = build.sweep_table(rows).splitlines()
    assert table[0].split()[:5] == ["build", "status", "fmax", "MHz", "levels"]
    assert table[1].split()[:5] == ["1:accelerator-kv260-3,28,16", "ok", "-", "42", "-"]
    assert table[2].split()[:5] == ["2:unit-ulx3s-85f-rope", "ok", "31.2", "-", "default"]


def test_kv260_estimate_reports_the_netlist_logic_levels(tmp_path, monkeypatch):
    from ternedge.boards import build, jobs

    stat = "Printing statistics.\n\n=== top ===\n\n     40   LUT2\n      2   FDRE\n"

    def fake_yosys(argv, cwd, **kwargs):
        (cwd / "synth_xilinx.log").write_text(stat)
        if build.KV260_NETLIST in argv[-1]:
            (cwd / build.KV260_NETLIST).write_text(json.dumps(lut_chain(40).doc()))
        return 1.0

    monkeypatch.setattr(jobs, "run_tool", fake_yosys)
    spec = {"job": "t", "flow": "estimate", "build_dir": str(tmp_path),
            "vivado_dir": str(tmp_path), "script": build.KV260_SCRIPT, "limit_s": 60,
            "base": {"design": "tlmm", "board": "kv260"}, "timeout_min": 1}
    result = build.finish_build(build.synthesize(spec), [])
    assert result["utilization"]["lut"] == 40 and result["logic_levels"] == 40
    path = result["critical_path"]
    assert path["logic_levels"] == 40 and path["source"] == "start_reg (FDRE Q)"
    assert path["cells"] == {"LUT2": 40} and len(path["path"]) == 40
    assert [s["scope"] for s in path["by_scope"]] == ["(top)"]
    # a script of one's own that writes no netlist: no levels, and no error
    spec["script"] = "read_verilog top.v; synth_xilinx -family xcup -top top; stat"
    (tmp_path / build.KV260_NETLIST).unlink()
    result = build.finish_build(build.synthesize(spec), [])
    assert result["logic_levels"] is None and result["critical_path"] is None


def test_by_scope_gives_each_units_own_longest_path():
    n = Netlist()
    start = n.ff("start", n.net(), q_name="top.lfsr.value")
    bit = start
    for i in range(5):
        bit = n.lut(f"a{i}", bit, bit)
    n.ff("a_end", bit, q_name="top.norm.y__payload.y[3]")
    bit = start
    for i in range(2):
        bit = n.lut(f"b{i}", bit, bit)
    n.ff("b_end", bit, q_name="top.quant.acc")
    n.ff("b_end2", n.lut("c", start, start), q_name="top.quant.index")
    result = logic_levels.longest_path(n.doc())
    assert result["logic_levels"] == 5
    assert [(s["scope"], s["logic_levels"]) for s in result["by_scope"]] == [
        ("top.norm", 5), ("top.quant", 2)]      # the LFSR's own input is undriven
    assert result["by_scope"][1]["sink"].startswith("top.quant.acc (FDRE D")
    assert result["by_scope"][1]["source"] == "top.lfsr.value (FDRE Q)"
    assert logic_levels.longest_path(n.doc(), scope_depth=0)["by_scope"] == []


def test_terminal_summary_prints_the_levels(capsys):
    from ternedge.boards import build

    found = logic_levels.longest_path(lut_chain(3).doc())
    path = {k: found[k] for k in ("source", "sink", "cells", "through", "path", "by_scope",
                                  "assumed")}
    path["by_scope"] = path["by_scope"] + [{"scope": "unit", "logic_levels": 2}]
    build._print_result({"design": "unit", "board": "kv260", "unit": "rope",
                         "unit_class": "RoPE", "unit_params": {"lanes": 4, "head_dim": 96},
                         "sized_as": {"model": "m", "hidden_size": 64,
                                      "intermediate_size": 128, "head_dim": 96,
                                      "max_context": 8, "attention_tile": 1,
                                      "gates": ["silu"]},
                         "utilization": {"lut": 10}, "fmax_mhz": None, "logic_levels": 3,
                         "critical_path": path, "bitstream": None})
    out = capsys.readouterr().out
    assert "unit rope on kv260: RoPE(lanes=4, head_dim=96)" in out
    assert ("levels       3 logic levels (3 LUT2): start_reg (FDRE Q) -> end_reg (FDRE D, "
            "from stage2)") in out
    assert "by scope     (top) 3, unit 2" in out
