# SPDX-License-Identifier: BSD-3-Clause
"""The profile-guided harness build (``rtl.harness.build(train=...)``, ``RTLBackend``'s
default outside the test suite): an instrumented library, the training run, the merged
profile, the final library; the same results and cycles as the plain build's."""

import pytest

from ternedge.rtl import harness

pytestmark = pytest.mark.skipif(not harness.profile_guided(),
                                reason="needs clang++ and llvm-profdata (make setup)")

PROMPT = list(b"In the beginning God created")


@pytest.fixture(scope="module")
def weights():
    from ternedge.host.checkpoint import load_checkpoint
    from ternedge.host.cli import DEFAULT_MODEL

    return load_checkpoint(DEFAULT_MODEL)


def test_profile_guided_build_runs_bit_and_cycle_exact_to_the_plain_one(weights, rtl,
                                                                       tmp_path, monkeypatch):
    from ternedge.host.rtl_backend import RTLBackend

    trained = []
    original = RTLBackend._train

    def train(self, library):
        trained.append(library)
        original(self, library)

    with monkeypatch.context() as patch:
        patch.setattr(RTLBackend, "_train", train)
        guided = RTLBackend(weights, max_tokens=rtl.max_tokens, max_context=rtl.max_context,
                            build_dir=tmp_path, profile_guided=True)
    try:
        assert len(trained) == 1 and "instrumented" in trained[0].name
        # the final library was compiled with the profile; only it is left in the folder
        libraries = sorted(p.name for p in tmp_path.glob("*.so"))
        assert libraries == [guided.harness.library.name]
        assert not list(tmp_path.glob("profile-*")) and not list(tmp_path.glob("*.profraw"))
        assert "-fprofile-instr-use=" in (tmp_path / "build.log").read_text()
        assert guided.cycle_log == [] and guided.position == 0   # the training run is undone

        rtl.reset()
        plain_rows = [rtl.hidden(PROMPT, "prefill"), rtl.hidden([PROMPT[-1]], "decode")]
        guided_rows = [guided.hidden(PROMPT, "prefill"), guided.hidden([PROMPT[-1]], "decode")]
        for a, b in zip(plain_rows, guided_rows, strict=True):
            assert (a == b).all()
        plain_log, guided_log = rtl.cycle_log[-len(guided.cycle_log):], guided.cycle_log
        assert [(c.tokens, c.position, c.cycles, c.counters, c.sim_cycles) for c in plain_log] \
            == [(c.tokens, c.position, c.cycles, c.counters, c.sim_cycles) for c in guided_log]
    finally:
        guided.close()
