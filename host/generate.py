# SPDX-License-Identifier: BSD-3-Clause
"""The generation loop shared by every backend: prefill, then decode token by token, or with
a drafter, by speculative verification passes (``host.speculative``)."""

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..golden.sampling import sample, validate_sampling
from . import speculative
from .backends import Backend
from .errors import InputError

__all__ = ["GenerationResult", "generate", "check_request"]


@dataclass
class GenerationResult:
    """What a generation run produced and how fast.

    ``ttft_s`` is the time from the start of prefill to the first generated token;
    ``tokens_per_s`` is the decode rate, tokens after the first over the time they took
    (0 when only one token was generated).

    Every forward pass after the prefill is a verification pass (``verify_passes``); in plain
    decoding (``speculative == "none"``) each checks an empty draft and emits one token.
    ``accepted_per_pass`` is the mean number of draft tokens accepted per pass (0 .. K), so a
    pass emits ``1 + accepted_per_pass`` tokens on average. ``pass_log`` holds
    ``(drafted, accepted)`` of every pass (not in ``to_dict``).
    """

    text: str
    tokens: list
    prompt_tokens: int
    ttft_s: float
    tokens_per_s: float
    backend: str
    model: str
    speculative: str = "none"
    draft_tokens: int = 0
    verify_passes: int = 0
    accepted_per_pass: float = 0.0
    drafted_per_pass: float = 0.0
    pass_log: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["pass_log"]
        return out


def check_request(prompt_ids, max_new_tokens: int, context: int, temperature: float,
                  top_k: int) -> None:
    """Reject a request that cannot run, with a message that names the fix."""
    if len(prompt_ids) == 0:
        raise InputError("the prompt is empty; pass some text with --prompt")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be a positive integer, got {max_new_tokens}")
    try:
        validate_sampling(temperature, top_k)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if len(prompt_ids) > context:
        raise InputError(f"the prompt is {len(prompt_ids)} tokens but the context is "
                         f"{context}; shorten the prompt")
    if len(prompt_ids) + max_new_tokens > context:
        raise InputError(f"{len(prompt_ids)} prompt tokens + {max_new_tokens} new tokens exceed "
                         f"the context of {context}; lower --max-new-tokens to at most "
                         f"{context - len(prompt_ids)}")


def generate(backend: Backend, tokenizer, prompt: str, *, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int = 0, seed: int = 0, model_name: str = "",
             on_text=None, drafter=None, draft_tokens: int = 4) -> GenerationResult:
    """Generate a continuation of ``prompt``; ``on_text(str)`` receives text as it is produced.

    With a ``drafter`` (``host.speculative``), each pass after the prefill verifies up to
    ``draft_tokens`` drafted tokens in one multi-token forward; greedy output is the same as
    without it, and sampled output has the same distribution.
    """
    prompt_ids = tokenizer.encode(prompt)
    check_request(prompt_ids, max_new_tokens, backend.context, temperature, top_k)
    if drafter is not None:
        if (not isinstance(draft_tokens, int) or isinstance(draft_tokens, bool)
                or draft_tokens < 1):
            raise InputError(f"--draft-tokens must be a positive integer, got {draft_tokens}")
        speculative.check_backend(backend)
        drafter.reset()
    rng = np.random.default_rng(seed)
    stream = tokenizer.stream()
    eos = backend.config.eos_token_id
    pieces, tokens, pass_log = [], [], []

    backend.reset()
    start = time.perf_counter()
    logits = backend.prefill(prompt_ids)
    first_token_at = None
    new = [sample(logits, temperature=temperature, top_k=top_k, rng=rng)]
    while True:
        for token in new:
            if first_token_at is None:
                first_token_at = time.perf_counter()
            tokens.append(token)
            piece = stream(token)
            pieces.append(piece)
            if on_text and piece:
                on_text(piece)
            if len(tokens) == max_new_tokens or token == eos:
                break
        if len(tokens) == max_new_tokens or tokens[-1] == eos:
            break
        if drafter is None:
            logits = backend.decode(tokens[-1])
            new = [sample(logits, temperature=temperature, top_k=top_k, rng=rng)]
            pass_log.append((0, 0))
        else:
            new, accepted, drafted = speculative.speculative_step(
                backend, tokens[-1], list(prompt_ids) + tokens, drafter, draft_tokens,
                limit=max_new_tokens - len(tokens), temperature=temperature, top_k=top_k,
                rng=rng)
            pass_log.append((drafted, accepted))
    end = time.perf_counter()
    rate = (len(tokens) - 1) / (end - first_token_at) if len(tokens) > 1 else 0.0
    passes = len(pass_log)
    return GenerationResult(text="".join(pieces), tokens=tokens, prompt_tokens=len(prompt_ids),
                            ttft_s=first_token_at - start, tokens_per_s=rate,
                            backend=backend.name, model=model_name,
                            speculative="none" if drafter is None else drafter.name,
                            draft_tokens=0 if drafter is None else draft_tokens,
                            verify_passes=passes,
                            accepted_per_pass=sum(a for _, a in pass_log) / passes if passes
                            else 0.0,
                            drafted_per_pass=sum(d for d, _ in pass_log) / passes if passes
                            else 0.0,
                            pass_log=pass_log)
