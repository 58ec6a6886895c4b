# SPDX-License-Identifier: BSD-3-Clause
"""Speculative decoding on the accelerator: verification passes instead of one-token decode.
Every number this module returns is *modeled*.

A verification pass runs the last emitted token and K drafted tokens (``host.speculative``)
as one multi-token forward at a past position: ``System.forward(K + 1, past)``, the same
transaction-level model as a prefill chunk (the host pads the block to whole attention query
tiles). Its linear weights stream from DDR once, as for one token, while the TLMM compute,
KV-cache writes and attention (the prefill attention over the cache, causal inside the block)
are for K + 1 tokens. Unlike a prefill chunk, every token of the pass needs its logits: the LM
head runs K + 1 rows (on the fabric its weights stream once and its MACs scale with the rows;
on the host each row is a GEMV of its own) and the host's per-token work runs K + 1 times
(``pass_seconds``). Decode is DDR-bound, so a pass over a few tokens costs little more than
one token, and every accepted draft is a token that did not need its own weight pass.

With a per-token acceptance rate ``a`` (each draft token accepted with probability ``a``, given
that the ones before it were), a pass of K drafts emits ``(1 - a**(K+1)) / (1 - a)`` tokens on
average (Leviathan et al. 2023, eq. 1): the accepted prefix plus the target's own token.
"""

from dataclasses import dataclass

from ..host.errors import InputError
from . import blocks
from .system import System, roofline

__all__ = ["expected_tokens_per_pass", "pass_seconds", "SpeculativeResult", "simulate",
           "from_passes", "break_even_acceptance"]


def expected_tokens_per_pass(k: int, acceptance: float) -> float:
    """Mean tokens a pass of ``k`` drafts emits at per-token acceptance rate ``acceptance``:
    ``sum_{i=0..k} a**i`` (1 when k = 0, k + 1 when a = 1)."""
    _check(k, acceptance)
    return float(sum(acceptance ** i for i in range(k + 1)))


def pass_seconds(system: System, tokens: int, past: int) -> float:
    """Seconds of one verification pass of ``tokens`` tokens (the last emitted one and
    ``tokens - 1`` drafts) after ``past`` cached ones: ``System.forward`` plus the LM head rows
    and per-token host work it does not include (it computes the last token's logits only).
    One token is exactly a decode step. *Modeled*."""
    seconds = system.forward(tokens, past).seconds
    if tokens == 1:
        return seconds
    m, head = system.model, system.lm_head
    one_row = head.seconds(m, system.dma)
    if head.on_host:
        rows = tokens * one_row
    else:       # weights stream once; the MACs (and the argmax) scale with the rows
        compute = (head.vocab_padded(m) * m.hidden_size
                   / blocks.c.FABRIC_LM_HEAD_MACS_PER_CYCLE / system.clock_hz)
        rows = max(tokens * compute, system.dma.seconds(head.weight_bytes(m)))
    return seconds + (rows - one_row) + (tokens - 1) * system.host.token_seconds()


def _check(k, acceptance):
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise InputError(f"--speculative-k must be an integer >= 0 (0 = plain decode), got {k!r}")
    if not 0.0 <= acceptance <= 1.0:
        raise InputError(f"--acceptance must be a probability in [0, 1], got {acceptance}")


@dataclass
class SpeculativeResult:
    """Decode by verification passes, beside one-token decode and the DDR roofline. *Modeled*.

    ``effective_tok_s`` is the generated tokens after the first over the time of the passes
    that produced them; ``decode_tok_s`` the same for one-token decode; the roofline is the
    one-token DDR roofline at context ``prompt_len + 1``.
    """

    k: int
    acceptance: float
    prompt_len: int
    gen: int
    tokens_per_pass: float
    passes: int
    pass_ms: float
    effective_tok_s: float
    decode_tok_s: float
    roofline_peak_tok_s: float
    roofline_sustained_tok_s: float

    @property
    def speedup(self) -> float:
        return self.effective_tok_s / self.decode_tok_s

    def to_dict(self) -> dict:
        out = {"modeled": True, **self.__dict__}
        out["speedup"] = self.speedup
        return out


def _one_token(system: System, prompt_len: int, gen: int):
    """One-token decode tokens/s over the same generation and the roofline."""
    seconds = sum(system.decode_step(prompt_len + i).seconds for i in range(1, max(gen, 2)))
    roof = roofline(system, prompt_len + 1)
    return max(gen - 1, 1) / seconds, roof


def simulate(system: System, k: int, acceptance: float, prompt_len: int = 128,
             gen: int = 128, *, baseline=None) -> SpeculativeResult:
    """Generate ``gen`` tokens after a ``prompt_len`` prompt by passes of ``k`` drafts at
    acceptance rate ``acceptance``: the passes advance the context by the expected tokens per
    pass (rounded per pass) until the ``gen - 1`` tokens after the prefill's are out.

    ``baseline``: a ``(decode_tok_s, roofline dict)`` pair from an earlier call, to skip
    recomputing one-token decode (sweeps)."""
    _check(k, acceptance)
    for name, value in (("prompt_len", prompt_len), ("gen", gen)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    system.check_context(prompt_len + gen + k)
    per_pass = expected_tokens_per_pass(k, acceptance)
    decode_tok_s, roof = baseline or _one_token(system, prompt_len, gen)
    target = max(gen - 1, 1)
    done, seconds, passes = 0.0, 0.0, 0
    while done < target - 1e-9:
        # the pass runs at the KV length reached so far: the prompt, the prefill's token
        # (not yet in the cache) and the tokens emitted since
        past = prompt_len + int(round(done))
        seconds += pass_seconds(system, k + 1, past)
        done += min(per_pass, target - done)
        passes += 1
    return SpeculativeResult(k=k, acceptance=acceptance, prompt_len=prompt_len, gen=gen,
                             tokens_per_pass=per_pass, passes=passes,
                             pass_ms=seconds / passes * 1e3, effective_tok_s=target / seconds,
                             decode_tok_s=decode_tok_s,
                             roofline_peak_tok_s=roof["peak_tok_s"],
                             roofline_sustained_tok_s=roof["sustained_tok_s"])


def from_passes(system: System, pass_log, prompt_len: int) -> dict:
    """Modeled time of a measured run's passes on ``system``.

    ``pass_log``: ``(drafted, accepted)`` of each verification pass in order
    (``GenerationResult.pass_log``); each pass runs ``1 + drafted`` tokens at the KV length the
    run had reached. Returns the tokens, the seconds and the effective tokens/s. *Modeled*.
    """
    past, seconds, tokens = prompt_len, 0.0, 0
    for drafted, accepted in pass_log:
        seconds += pass_seconds(system, 1 + drafted, past)
        past += accepted + 1
        tokens += accepted + 1
    return {"modeled": True, "tokens": tokens, "passes": len(pass_log), "seconds": seconds,
            "effective_tok_s": tokens / seconds if seconds else 0.0}


def break_even_acceptance(system: System, k: int, context: int) -> float:
    """Acceptance rate at which a pass of ``k`` drafts at ``context`` emits tokens as fast as
    one-token decode there (bisection; 0 if always faster, 1 if never). *Modeled*."""
    ratio = pass_seconds(system, k + 1, context - 1) / system.decode_step(context).seconds
    if ratio <= 1.0:
        return 0.0
    if ratio >= k + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens_per_pass(k, mid) < ratio else (lo, mid)
    return (lo + hi) / 2
