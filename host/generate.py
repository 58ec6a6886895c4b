# SPDX-License-Identifier: BSD-3-Clause
"""The generation loop shared by every backend: prefill, then decode token by token."""

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..golden.sampling import sample, validate_sampling
from .backends import Backend
from .errors import InputError

__all__ = ["GenerationResult", "generate", "check_request"]


@dataclass
class GenerationResult:
    """What a generation run produced and how fast.

    ``ttft_s`` is the time from the start of prefill to the first generated token;
    ``tokens_per_s`` is the decode rate, tokens after the first over the time they took
    (0 when only one token was generated).
    """

    text: str
    tokens: list
    prompt_tokens: int
    ttft_s: float
    tokens_per_s: float
    backend: str
    model: str

    def to_dict(self) -> dict:
        return asdict(self)


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
             on_text=None) -> GenerationResult:
    """Generate a continuation of ``prompt``; ``on_text(str)`` receives text as it is produced."""
    prompt_ids = tokenizer.encode(prompt)
    check_request(prompt_ids, max_new_tokens, backend.context, temperature, top_k)
    rng = np.random.default_rng(seed)
    stream = tokenizer.stream()
    eos = backend.config.eos_token_id
    pieces, tokens = [], []

    backend.reset()
    start = time.perf_counter()
    logits = backend.prefill(prompt_ids)
    first_token_at = None
    while True:
        token = sample(logits, temperature=temperature, top_k=top_k, rng=rng)
        if first_token_at is None:
            first_token_at = time.perf_counter()
        tokens.append(token)
        piece = stream(token)
        pieces.append(piece)
        if on_text and piece:
            on_text(piece)
        if len(tokens) == max_new_tokens or token == eos:
            break
        logits = backend.decode(token)
    end = time.perf_counter()
    rate = (len(tokens) - 1) / (end - first_token_at) if len(tokens) > 1 else 0.0
    return GenerationResult(text="".join(pieces), tokens=tokens, prompt_tokens=len(prompt_ids),
                            ttft_s=first_token_at - start, tokens_per_s=rate,
                            backend=backend.name, model=model_name)
