# SPDX-License-Identifier: BSD-3-Clause
"""Bitstream builds (marker ``board``; minutes each, so only run when selected: -m board).

    .venv/bin/python -m pytest -m board tests/test_boards.py
"""

import os
from pathlib import Path

import pytest

from ternedge.boards import build, platforms

pytestmark = pytest.mark.board


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if "board" not in (request.config.getoption("-m") or ""):
        pytest.skip("board builds take minutes; select them with -m board")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    keep = os.environ.get("TERNEDGE_BOARD_BUILD_DIR")
    return Path(keep) if keep else tmp_path_factory.mktemp("boards")


def test_ulx3s_bitstream(out_dir):
    result = build.build_design("tlmm", "ulx3s-85f", (3, 4, 4), out_dir)
    bitstream = Path(result["bitstream"])
    assert bitstream.exists() and bitstream.stat().st_size > 100_000
    assert result["fmax_mhz"] > 0
    util = result["utilization"]
    assert 0 < util["lut"] <= util["lut_total"]
    assert 0 < util["ff"] <= util["ff_total"]
    assert result["macs_per_cycle"] == 3 * 4 * 4


def test_kv260_estimate_and_vivado_tree(out_dir):
    result = build.build_design("tlmm", "kv260", (3, 4, 4), out_dir)
    tree = Path(result["vivado_project"])
    tcl = (tree / "top.tcl").read_text()
    assert "xck26-sfvc784-2LV-c" in tcl
    assert (tree / "top.v").stat().st_size > 0 and (tree / "top.xdc").exists()
    util = result["utilization"]
    assert util["lut"] > 0 and util["ff"] > 0
    assert util["budget"] == platforms.KV260_BUDGET
    assert 0 < util["percent"]["lut"] < 100


def test_geometry_parsing():
    assert build.parse_geometry("3,28,16").macs_per_cycle == 1344
    with pytest.raises(ValueError, match="not 'G,T,N'"):
        build.parse_geometry("3,x,16")
    with pytest.raises(ValueError, match="tlmm design builds for"):
        build.build_design("tlmm", "nexys", (3, 4, 4), "/nonexistent")
