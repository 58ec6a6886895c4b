# SPDX-License-Identifier: BSD-3-Clause
"""Bad values of every numeric option of every ``ternedge`` command end in one clear line and
a non-zero exit, before any work starts (no checkpoint, session, simulation or synthesis).

The options are found by walking the parser, so a numeric option added later is swept too.
"""

import argparse

import pytest

from ternedge.host import argtypes, cli
from ternedge.host.errors import InputError

#: commands swept, with the arguments they need besides the one under test
BASE = {
    "generate": ["--prompt", "hello"],
    "simulate": ["--model", "bitnet-b1.58-large"],
    "decode-neural": [],
    "train-neural": ["--synthetic", "1", "--out", "/nonexistent-dir/m.safetensors"],
    "build": [],
    "rtl-bench": ["--model", "bitnet-b1.58-large", "--board", "kv260"],
}
#: (command, option, value) that are valid, so not bad input (0 = greedy, no limit, off, ...)
VALID = {("generate", "--temperature", "0"), ("generate", "--top-k", "0"),
         ("generate", "--seed", "0"), ("simulate", "--speculative-k", "0"),
         ("decode-neural", "--synthetic", "0"), ("train-neural", "--synthetic", "0"),
         ("train-neural", "--seed", "0"), ("rtl-bench", "--seed", "0")}
#: options that take numbers although their type is a string parser
NUMERIC_TEXT = {("build", "--geometry"): ["0,0,0", "-1,4,4", "nan,4,4", "3,99999999999,4"]}
#: the parse-time checks that are not argparse types (checked at the top of ``run``)
HUGE_INT = "99999999999999999999"
BAD = ["0", "-1", "nan", "inf", HUGE_INT, "1e300"]


def _subparsers():
    parser = cli._parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _numeric(action) -> bool:
    if action.type in (int, float):
        return True
    if getattr(action.type, "__name__", "") in ("integer", "real", "_positive_int", "_job_n"):
        return True
    return action.choices is not None and all(
        isinstance(c, (int, float)) for c in action.choices)


def _cases():
    cases = []
    commands = _subparsers()
    assert set(BASE) <= set(commands), sorted(commands)
    for name in BASE:
        for action in commands[name]._actions:
            if not action.option_strings:
                continue
            opt = action.option_strings[-1]
            if (name, opt) in NUMERIC_TEXT:
                values = NUMERIC_TEXT[(name, opt)]
            elif _numeric(action):
                values = BAD
            else:
                continue
            cases += [(name, opt, v) for v in values if (name, opt, v) not in VALID]
    return cases


CASES = _cases()


def test_the_sweep_covers_every_command():
    swept = {(c, o) for c, o, _ in CASES}
    assert {c for c, _ in swept} == set(BASE)
    for expected in [("generate", "--max-new-tokens"), ("generate", "--temperature"),
                     ("simulate", "--prompt-len"), ("simulate", "--acceptance"),
                     ("decode-neural", "--max-bins"), ("decode-neural", "--clock-mhz"),
                     ("train-neural", "--epochs"), ("train-neural", "--seed"),
                     ("build", "--max-tokens"), ("build", "--geometry")]:
        assert expected in swept, expected


@pytest.fixture
def no_work(monkeypatch):
    """Every command's first piece of real work raises, so a value that slips through
    validation fails the test instead of starting it."""
    from ternedge.boards import build
    from ternedge.host import checkpoint, neural
    from ternedge.sim import cli as sim_cli

    def started(*args, **kwargs):
        raise AssertionError("work started before the arguments were validated")

    monkeypatch.setattr(checkpoint, "load_checkpoint", started)
    monkeypatch.setattr(sim_cli, "build_system", started)
    monkeypatch.setattr(neural, "load_session", started)
    monkeypatch.setattr(build, "build_design", started)


def _run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("command, option, value", CASES,
                         ids=[f"{c} {o} {v}" for c, o, v in CASES])
def test_bad_numeric_value(command, option, value, capsys, no_work):
    argv = [command, *BASE[command], f"{option}={value}"]
    code, err = _run(argv, capsys)
    assert code not in (0, None), argv
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and option in last, (argv, err)
    if code == 1:                           # a TernedgeError: the whole message is one line
        assert err.count("\n") == 1 and err.startswith("ternedge: error: "), err


def test_clock_mhz_zero_is_refused(capsys, no_work):
    code, err = _run(["decode-neural", "--clock-mhz", "0"], capsys)
    assert (code, err) == (1, "ternedge: error: --clock-mhz must be a finite number in "
                              "(0, 10000], got 0\n")


def test_max_bins_negative_is_refused(capsys, no_work):
    code, err = _run(["decode-neural", "--max-bins", "-3"], capsys)
    assert (code, err) == (1, "ternedge: error: --max-bins must be an integer in [2, 16777216], "
                              "got -3\n")


@pytest.mark.parametrize("command", ["simulate", "decode-neural"])
def test_plots_under_a_file(tmp_path, capsys, no_work, command):
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    for target, message in ((afile / "plots", f"runs through a file ({afile})"),
                            (afile, "is a file, not a directory")):
        code, err = _run([command, *BASE[command], "--plots", str(target)], capsys)
        assert code not in (0, None) and "Traceback" not in err
        lines = err.strip().splitlines()
        assert message in lines[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_validators_refuse_non_finite_and_out_of_range():
    parse = argtypes.real("--x", 0, 10, exclusive_min=True)
    assert parse("2.5") == 2.5
    for text in ("0", "nan", "inf", "-inf", "11", "x"):
        with pytest.raises(InputError, match=r"^--x must be a finite number in \(0, 10\]"):
            parse(text)
    seed = argtypes.seed()
    assert seed("0") == 0 and seed(str(2**32 - 1)) == 2**32 - 1
    for text in ("-1", str(2**32), "1.5"):
        with pytest.raises(InputError, match="--seed must be a seed"):
            seed(text)
