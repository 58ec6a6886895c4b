# SPDX-License-Identifier: BSD-3-Clause
"""The layers' imports: golden/ (the spec: ISA, DDR layout, weight layout, numerics) imports
neither host/ nor rtl/, and sim/ does not import rtl/ (DESIGN.md); checked on the modules each
layer's code loads, in a fresh interpreter."""

import json
import pkgutil
import subprocess
import sys

import pytest

import ternedge.golden
import ternedge.sim


def _loaded_by(modules):
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def _modules(package):
    return [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]


@pytest.mark.parametrize("package, forbidden", [
    (ternedge.golden, ("ternedge.host", "ternedge.rtl")),
    (ternedge.sim, ("ternedge.rtl",))])
def test_layer_does_not_import_the_layers_above(package, forbidden):
    loaded = _loaded_by(_modules(package))
    bad = [name for name in loaded if name.startswith(forbidden)]
    assert not bad, f"{package.__name__} loads {bad}"


def test_the_top_model_loads_its_layout_from_the_spec():
    """``sim.rtl_top.RtlTop`` (the top's cycle model) builds its programs with
    ``golden.layout.Layout`` (imported when constructed): constructing one loads no rtl/."""
    code = ("import json, sys\n"
            "from ternedge.sim import presets, rtl_top\n"
            "model = presets.load_model('bitnet-b1.58-large')\n"
            "rtl_top.RtlTop(model, rtl_top.board_settings('kv260'))\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert not [name for name in json.loads(out) if name.startswith("ternedge.rtl")]
