# SPDX-License-Identifier: BSD-3-Clause
"""Speculative decoding: drafters, multi-token forward and KV truncation on every backend,
greedy output identical to plain decoding (golden, torch, rtl), the sampling rule's
distribution (chi-square against the exact target), and the CLI."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats

from ternedge.host import speculative
from ternedge.host.backends import Backend, GoldenBackend, make_backend
from ternedge.host.checkpoint import load_checkpoint
from ternedge.host.cli import DEFAULT_MODEL, main
from ternedge.host.errors import InputError
from ternedge.host.generate import generate
from ternedge.host.speculative import NgramDrafter, PromptLookup, verify
from ternedge.host.tokenizer import load_tokenizer

HELDOUT = DEFAULT_MODEL.parents[1] / "data" / "kjv_heldout.txt"
#: a held-out KJV passage with the repetition real text has ("the house of the LORD")
PROMPT = HELDOUT.read_text()[2380:2480]


@pytest.fixture(scope="module")
def weights():
    return load_checkpoint(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture
def one_torch_thread():
    """The torch reference on one thread: on a busy 2-core machine two threads spin against
    each other (7x slower here)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- drafters --------------------------------------------------------------------------

def test_prompt_lookup_takes_the_longest_most_recent_match():
    #        0  1  2  3  4  5  6  7  8  9 10 11
    seq = [5, 1, 2, 3, 9, 1, 2, 7, 4, 1, 2, 3]
    drafter = PromptLookup()
    # suffix (1, 2, 3) occurs at 1..3 only; (1, 2) also at 5..6 but is shorter
    assert drafter.match(seq) == (3, 3)
    assert drafter.draft(seq, 2) == [9, 1]
    assert drafter.draft(seq, 10) == seq[4:] + [9, 1]       # the copy runs on into itself
    # equal lengths: the most recent occurrence wins
    assert PromptLookup().draft([1, 2, 8, 1, 2, 9, 0, 2], 2) == [9, 0]
    assert PromptLookup().draft([3, 4, 5], 4) == []           # nothing repeats
    assert PromptLookup().draft([7], 4) == []
    assert PromptLookup(min_match=2).draft([1, 5, 2, 1], 3) == []
    capped = [2, 3, 7, 9, 3, 8, 2, 3]
    assert PromptLookup().match(capped) == (1, 2)
    assert PromptLookup(max_match=1).match(capped) == (4, 1)
    # a repeating pattern continues with its period
    assert PromptLookup().draft([4, 4, 4, 4], 3) == [4, 4, 4]
    assert PromptLookup().draft([1, 2, 1, 2, 1], 5) == [2, 1, 2, 1, 2]
    with pytest.raises(ValueError, match="min_match"):
        PromptLookup(min_match=0)


def test_ngram_drafter_uses_counts_and_backs_off():
    drafter = NgramDrafter(order=3)
    # after (1, 2) came 3 twice and 4 once; after 3 came 1
    seq = [1, 2, 3, 1, 2, 4, 1, 2, 3, 1, 2]
    assert drafter.draft(seq, 1) == [3]
    assert drafter.draft(seq, 4) == [3, 1, 2, 3]
    # an unseen bigram context (9, 1) backs off to the unigram context 1
    assert drafter.draft([1, 2, 5, 9, 1], 1) == [2]
    assert drafter.draft([6, 7], 3) == []                    # 7 never had a successor
    # ties: the most recent successor
    assert NgramDrafter(order=2).draft([1, 5, 1, 6, 1], 1) == [6]


def test_ngram_table_grows_incrementally_and_rebuilds_for_a_new_sequence():
    rng = np.random.default_rng(8)
    seq = [int(t) for t in rng.integers(0, 6, 200)]
    incremental = NgramDrafter()
    for n in range(2, 200, 7):
        assert incremental.draft(seq[:n], 5) == NgramDrafter().draft(seq[:n], 5), n
    other = [int(t) for t in rng.integers(0, 6, 50)]
    assert incremental.draft(other, 5) == NgramDrafter().draft(other, 5)


def test_unknown_drafter_is_an_input_error():
    with pytest.raises(InputError, match="prompt-lookup, ngram"):
        speculative.make_drafter("eagle")


# ---- multi-token forward and KV truncation ---------------------------------------------

@pytest.mark.parametrize("name", ["golden", "torch"])
def test_forward_at_a_position_and_truncation(weights, name, request):
    if name == "torch":
        request.getfixturevalue("one_torch_thread")
    backend = make_backend(name, weights)
    ids = [int(t) for t in np.random.default_rng(4).integers(32, 127, 14)]
    backend.reset()
    one_by_one = [backend.prefill(ids[:6])] + [backend.decode(t) for t in ids[6:]]
    assert backend.position == 14
    backend.reset()
    backend.prefill(ids[:5])
    block = backend.forward(ids[5:])                   # 9 tokens at position 5
    assert block.shape == (9, weights.config.vocab_size) and block.dtype == np.float64
    assert backend.position == 14
    # roll back past 3 tokens, run 3 others, roll back again and rerun the originals
    backend.truncate(11)
    assert backend.position == 11
    detour = backend.forward([65, 66, 67])
    backend.truncate(11)
    again = backend.forward(ids[11:])
    backend.reset()
    backend.prefill(ids[:11])
    fresh_detour = backend.forward([65, 66, 67])
    if name == "golden":               # bit-exact: a block equals its tokens one at a time
        np.testing.assert_array_equal(block, np.stack(one_by_one))
        np.testing.assert_array_equal(again, block[-3:])
        np.testing.assert_array_equal(detour, fresh_detour)
    else:
        # float32 matmuls of other shapes round differently, and a per-token INT8 rounding
        # may flip with them (logits span about +-26; a wrong position or cache is off by
        # whole units)
        np.testing.assert_allclose(block, np.stack(one_by_one), atol=0.1)
        np.testing.assert_array_equal(block.argmax(-1), np.stack(one_by_one).argmax(-1))
        np.testing.assert_allclose(again, block[-3:], atol=0.1)
        np.testing.assert_allclose(detour, fresh_detour, atol=0.1)
    backend.truncate(0)
    np.testing.assert_allclose(backend.forward(ids[:6])[-1], one_by_one[0], atol=0.1)
    for bad in (-1, 7, 1.5, True):                     # position is 6
        with pytest.raises(ValueError, match="truncate length"):
            backend.truncate(bad)


def test_backend_without_forward_is_refused(weights, tokenizer):
    class OneTokenOnly(Backend):
        name = "one-token"

        def __init__(self, weights):
            super().__init__(weights)
            self.inner = GoldenBackend(weights)

        def reset(self):
            self.inner.reset()

        def prefill(self, token_ids):
            return self.inner.prefill(token_ids)

        def decode(self, token_id):
            return self.inner.decode(token_id)

    backend = OneTokenOnly(weights)
    with pytest.raises(InputError, match="--speculative none"):
        generate(backend, tokenizer, "abc", max_new_tokens=4,
                 drafter=speculative.make_drafter("ngram"))
    # plain decoding still runs on it
    assert len(generate(backend, tokenizer, "abc", max_new_tokens=3).tokens) == 3
    for bad in (0, -2, 2.5, True):
        with pytest.raises(InputError, match="--draft-tokens must be a positive integer"):
            generate(GoldenBackend(weights), tokenizer, "abc", max_new_tokens=3,
                     drafter=speculative.make_drafter("ngram"), draft_tokens=bad)


# ---- greedy output identical to plain decoding ----------------------------------------

def _identical_greedy(backend, tokenizer, prompt, max_new_tokens, cases):
    plain = generate(backend, tokenizer, prompt, max_new_tokens=max_new_tokens)
    assert plain.verify_passes == max_new_tokens - 1 and plain.accepted_per_pass == 0
    accepted = 0.0
    for name, k in cases:
        got = generate(backend, tokenizer, prompt, max_new_tokens=max_new_tokens,
                       drafter=speculative.make_drafter(name), draft_tokens=k)
        assert got.tokens == plain.tokens, (name, k)
        assert got.speculative == name and got.draft_tokens == k
        assert sum(a + 1 for _, a in got.pass_log) == max_new_tokens - 1
        assert all(0 <= a <= d <= k for d, a in got.pass_log)
        accepted += got.accepted_per_pass
    assert accepted > 0, "no draft was ever accepted: the verify path went untested"
    return plain


def test_speculative_greedy_identical_golden(weights, tokenizer):
    _identical_greedy(GoldenBackend(weights), tokenizer, PROMPT, 24,
                      [("prompt-lookup", 1), ("prompt-lookup", 8), ("ngram", 3)])


def test_speculative_greedy_identical_torch(weights, tokenizer, one_torch_thread):
    _identical_greedy(make_backend("torch", weights), tokenizer, PROMPT, 24,
                      [("prompt-lookup", 4), ("ngram", 8)])


def test_speculative_stops_at_eos_and_max_tokens(weights, tokenizer):
    backend = GoldenBackend(weights)
    for n in (1, 2, 5):
        got = generate(backend, tokenizer, PROMPT, max_new_tokens=n,
                       drafter=speculative.make_drafter("prompt-lookup"), draft_tokens=8)
        assert len(got.tokens) == n and got.verify_passes <= n - 1
    plain = generate(backend, tokenizer, PROMPT, max_new_tokens=12)
    stop = plain.tokens[5]                        # pretend a mid-draft token is the EOS
    backend.config = dataclasses.replace(backend.config, eos_token_id=stop)
    want = generate(backend, tokenizer, PROMPT, max_new_tokens=12).tokens
    got = generate(backend, tokenizer, PROMPT, max_new_tokens=12,
                   drafter=speculative.make_drafter("prompt-lookup"), draft_tokens=8).tokens
    assert got == want and got[-1] == stop and len(got) <= 6


@pytest.mark.xdist_group("rtl_accelerator")
def test_speculative_greedy_identical_rtl(rtl, weights, tokenizer):
    from ternedge.sim.accelerator import TopTiming, program_cycles

    prompt = "the LORD, and the LO"                 # 20 byte tokens, "the LORD" repeats
    want = generate(GoldenBackend(weights), tokenizer, prompt, max_new_tokens=8)
    rtl.cycle_log.clear()
    got = generate(rtl, tokenizer, prompt, max_new_tokens=8,
                   drafter=speculative.make_drafter("prompt-lookup"), draft_tokens=4)
    assert got.tokens == want.tokens
    # verification passes of several tokens ran at past positions (RTL forward, truncate)
    assert got.drafted_per_pass > 0 and got.verify_passes < 7
    verify = [c for c in rtl.cycle_log if c.kind == "verify"]
    assert verify and any(c.tokens > 1 for c in verify)
    timing = TopTiming.for_ddr(rtl.accel_config, rtl.ddr, rtl.gates)
    assert all(c.cycles == program_cycles(rtl.layout.program(c.tokens, c.position), timing)
               for c in rtl.cycle_log)


# ---- sampling: the rule preserves the target distribution ------------------------------

class _MarkovBackend(Backend):
    """A target whose logits depend on the previous token only: exact sequence
    probabilities for the statistical test, forward and truncate like a real KV cache."""

    name = "markov"

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float64)
        self.tokens = []

    @property
    def position(self):
        return len(self.tokens)

    def reset(self):
        self.tokens = []

    def forward(self, token_ids):
        self.tokens += [int(t) for t in token_ids]
        return self.table[np.asarray(token_ids, dtype=np.int64)]

    def truncate(self, length):
        assert 0 <= length <= len(self.tokens)
        del self.tokens[length:]

    def prefill(self, token_ids):
        return self.forward(token_ids)[-1]

    def decode(self, token_id):
        return self.forward([token_id])[0]


class _CyclicDrafter(speculative.Drafter):
    """Deterministic drafts that are often wrong: ``(last + 1) % V`` repeated."""

    name = "cyclic"

    def __init__(self, vocab):
        self.vocab = vocab

    def draft(self, context, k):
        out, last = [], context[-1]
        for _ in range(k):
            last = (last + 1) % self.vocab
            out.append(last)
        return out


def _sequence_counts(rule, runs, seed, *, temperature, top_k, k=3, length=3):
    vocab = 4
    table = np.random.default_rng(5).normal(0.0, 1.5, (vocab, vocab))
    backend = _MarkovBackend(table)
    drafter = _CyclicDrafter(vocab)
    rng = np.random.default_rng(seed)
    counts = np.zeros((vocab,) * length, dtype=np.int64)
    original = speculative.verify
    speculative.verify = rule
    try:
        for _ in range(runs):
            backend.reset()
            backend.prefill([0])
            tokens, last = [], 0
            while len(tokens) < length:
                new, _, _ = speculative.speculative_step(
                    backend, last, [0] + tokens, drafter, k, limit=length - len(tokens),
                    temperature=temperature, top_k=top_k, rng=rng)
                tokens += new
                last = tokens[-1]
            counts[tuple(tokens)] += 1
    finally:
        speculative.verify = original
    # the exact target: a Markov chain from token 0
    p = np.stack([speculative.probabilities(row, temperature=temperature, top_k=top_k)
                  for row in table])
    exact = np.zeros_like(counts, dtype=np.float64)
    for seq in np.ndindex(*counts.shape):
        prev, prob = 0, 1.0
        for t in seq:
            prob, prev = prob * p[prev, t], t
        exact[seq] = prob
    return counts.reshape(-1), exact.reshape(-1)


def _chi_square_p(counts, exact):
    support = exact > 0
    assert counts[~support].sum() == 0, "a token outside the target's support was emitted"
    expected = exact * counts.sum()
    # cells expected fewer than 5 times are pooled into one, so the chi-square law holds
    big = expected >= 5
    observed = np.append(counts[big], counts[support & ~big].sum())
    expected = np.append(expected[big], expected[support & ~big].sum())
    assert big.sum() >= 20
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.7, 3)])
def test_speculative_sampling_preserves_the_target_distribution(temperature, top_k):
    counts, exact = _sequence_counts(verify, 6000, seed=2024, temperature=temperature,
                                     top_k=top_k)
    # 3-token sequences over 4 tokens (64 cells, 27 under top-3); fixed seeds: not flaky
    assert _chi_square_p(counts, exact) > 1e-3


def test_the_distribution_test_rejects_a_biased_rule():
    def accept_too_often(rows, draft, *, temperature=0.0, top_k=0, rng=None):
        # accepts with sqrt(p(d)) instead of p(d): biased towards the draft
        out = []
        for i, d in enumerate(draft):
            p = speculative.probabilities(rows[i], temperature=temperature, top_k=top_k)
            if rng.random() < np.sqrt(p[d]):
                out.append(int(d))
                continue
            residual = p.copy()
            residual[d] = 0
            return out + [speculative._draw(residual / residual.sum(), rng)], i
        p = speculative.probabilities(rows[-1], temperature=temperature, top_k=top_k)
        return out + [speculative._draw(p, rng)], len(draft)

    counts, exact = _sequence_counts(accept_too_often, 6000, seed=2024, temperature=1.0,
                                     top_k=0)
    assert _chi_square_p(counts, exact) < 1e-6


def test_verify_greedy_and_bad_input():
    rows = np.array([[0, 5, 1], [9, 0, 0], [0, 0, 3], [1, 0, 0]], dtype=float)
    assert verify(rows, [1, 0, 2]) == ([1, 0, 2, 0], 3)
    assert verify(rows, [1, 2, 2]) == ([1, 0], 1)
    assert verify(rows[:1], []) == ([1], 0)
    with pytest.raises(ValueError, match="rows of logits"):
        verify(rows, [1])
    with pytest.raises(ValueError, match="seeded rng"):
        verify(rows, [1, 0, 2], temperature=1.0)
    # a draft outside the top-k has p = 0 and is always replaced
    rng = np.random.default_rng(0)
    for _ in range(50):
        tokens, accepted = verify(rows[:2], [0], temperature=1.0, top_k=1, rng=rng)
        assert tokens == [1] and accepted == 0


# ---- CLI ---------------------------------------------------------------------------------

def _cli(capsys, *args):
    code = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_speculative_json_and_summary(capsys):
    args = ("--prompt", PROMPT[:60], "--max-new-tokens", 12, "--json")
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    plain = json.loads(out)
    assert plain["speculative"] == "none" and plain["verify_passes"] == 11
    code, out, err = _cli(capsys, *args, "--speculative", "prompt-lookup", "--draft-tokens", 6)
    assert code == 0, err
    spec = json.loads(out)
    assert spec["tokens"] == plain["tokens"]
    assert spec["speculative"] == "prompt-lookup" and spec["draft_tokens"] == 6
    assert 1 <= spec["verify_passes"] <= 11 and spec["tokens_per_s"] > 0
    assert spec["verify_passes"] * (1 + spec["accepted_per_pass"]) == pytest.approx(11)
    code, out, _ = _cli(capsys, *args[:-1], "--speculative", "ngram")
    assert code == 0
    assert "verify passes" in out and "accepted draft tokens per pass" in out


@pytest.mark.parametrize("args, phrase", [
    (("--speculative", "ngram", "--draft-tokens", 0), "--draft-tokens must be"),
    (("--speculative", "ngram", "--draft-tokens", -3), "--draft-tokens must be"),
])
def test_cli_bad_speculative_requests_are_one_line_errors(capsys, args, phrase):
    code, out, err = _cli(capsys, "--prompt", "abc", "--max-new-tokens", 3, *args)
    assert code == 1 and out == ""
    assert phrase in err and err.count("\n") == 1


def test_cli_unknown_drafter_is_a_usage_error():
    with pytest.raises(SystemExit):
        main(["generate", "--prompt", "x", "--speculative", "medusa"])


# ---- the simulator's verification passes (modeled) --------------------------------------

@pytest.fixture(scope="module")
def large():
    from ternedge.sim.cli import build_system

    return build_system("bitnet-b1.58-large", "kv260", "what-if")


def test_a_pass_computes_every_row_of_logits(large):
    from ternedge.sim.speculative import pass_seconds

    assert pass_seconds(large, 1, 50) == large.decode_step(51).seconds
    head = large.lm_head
    one_row = head.seconds(large.model, large.dma)
    for tokens in (2, 4, 9):
        extra = pass_seconds(large, tokens, 50) - large.forward(tokens, 50).seconds
        # the fabric LM head: weights once, MACs per row; host work once per row
        assert extra >= (tokens - 1) * large.host.token_seconds() - 1e-12
        assert extra <= (tokens - 1) * (one_row + large.host.token_seconds()) + 1e-12
    # 9 rows of INT4 LM head MACs outlast one stream of its weights
    assert (pass_seconds(large, 9, 50) - large.forward(9, 50).seconds
            > 8 * large.host.token_seconds())


def test_expected_tokens_per_pass():
    from ternedge.sim.speculative import expected_tokens_per_pass

    assert expected_tokens_per_pass(0, 0.3) == 1.0
    assert expected_tokens_per_pass(4, 1.0) == 5.0
    assert expected_tokens_per_pass(3, 0.0) == 1.0
    assert expected_tokens_per_pass(2, 0.5) == pytest.approx(1.75)
    with pytest.raises(InputError, match="--acceptance"):
        expected_tokens_per_pass(2, 1.5)


def test_simulated_passes_against_one_token_decode(large):
    from ternedge.sim import speculative as sim_spec

    plain = sim_spec.simulate(large, 0, 0.0, 32, 12)
    run = large.run(32, 12)
    assert plain.effective_tok_s == pytest.approx(run.decode_tok_s, rel=1e-12)
    assert plain.passes == 11 and plain.speedup == pytest.approx(1.0)
    rates = [sim_spec.simulate(large, 3, a, 32, 12).effective_tok_s for a in (0, 0.5, 0.9, 1)]
    assert rates == sorted(rates)
    best = sim_spec.simulate(large, 3, 1.0, 32, 12)
    # four tokens per weight pass: past the one-token DDR roofline
    assert best.effective_tok_s > best.roofline_peak_tok_s > best.decode_tok_s
    assert best.passes == 3 and best.tokens_per_pass == 4.0
    # with nothing accepted a verification pass only costs
    assert rates[0] < plain.effective_tok_s
    a = sim_spec.break_even_acceptance(large, 3, 40)
    assert 0 < a < 1
    assert (sim_spec.expected_tokens_per_pass(3, a) / sim_spec.pass_seconds(large, 4, 39)
            == pytest.approx(1 / large.decode_step(40).seconds, rel=1e-6))


def test_measured_passes_through_the_simulator(large):
    from ternedge.sim.speculative import from_passes, pass_seconds

    plain = from_passes(large, [(0, 0)] * 5, 20)
    assert plain["tokens"] == 5
    assert plain["seconds"] == pytest.approx(sum(large.decode_step(21 + i).seconds
                                                 for i in range(5)))
    spec = from_passes(large, [(3, 3), (3, 1), (2, 0)], 20)
    assert spec["tokens"] == 4 + 2 + 1 and spec["passes"] == 3
    assert spec["seconds"] == pytest.approx(pass_seconds(large, 4, 20)
                                            + pass_seconds(large, 4, 24)
                                            + pass_seconds(large, 3, 26))


def _simulate(capsys, *args, config="what-if"):
    code = main(["simulate", "--model", "bitnet-b1.58-large", "--board", "kv260",
                 "--config", config, "--prompt-len", "32", "--gen", "8", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_cli_speculative(capsys, tmp_path):
    code, out, err = _simulate(capsys, "--speculative-k", 3, "--acceptance", 0.8, "--json")
    assert code == 0, err
    spec = json.loads(out)["speculative"]
    assert spec["modeled"] and spec["k"] == 3 and spec["acceptance"] == 0.8
    assert spec["effective_tok_s"] > spec["decode_tok_s"]
    # the RTL as built (``--config default``): a verification pass is the top's cycle model
    # of a K + 1-token pass plus the host's LM head for every row
    code, out, err = _simulate(capsys, "--speculative-k", 3, "--acceptance", 0.8, "--json",
                               config="default")
    assert code == 0, err
    spec = json.loads(out)["speculative"]
    assert spec["modeled"] and spec["effective_tok_s"] > 0
    assert spec["pass_ms"] > 1e3 / spec["decode_tok_s"]          # 4 tokens cost more than 1
    code, out, err = _simulate(capsys, "--speculative-k", 2, "--acceptance", 0.5, "--plots",
                               tmp_path)
    assert code == 0, err
    assert "speculative decode" in out and "tokens/s effective" in out
    assert (tmp_path / "speculative.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, phrase", [
    (("--speculative-k", 3), "needs --acceptance"),
    (("--acceptance", 0.5), "only applies with --speculative-k"),
    (("--speculative-k", 3, "--acceptance", 1.5), "probability in [0, 1]"),
    (("--speculative-k", -1, "--acceptance", 0.5), "--speculative-k must be an integer"),
])
def test_simulate_cli_bad_speculative_input(capsys, args, phrase):
    code, out, err = _simulate(capsys, *args)
    assert code == 1 and out == ""
    assert phrase in err and err.count("\n") == 1
