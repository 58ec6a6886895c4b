# SPDX-License-Identifier: BSD-3-Clause
"""Speculative decoding with drafts taken from the context itself: no draft model.

Decode on an edge FPGA streams every weight once per forward pass, so a pass over a few tokens
costs about what a pass over one does. A drafter guesses the next ``k`` tokens from the
prompt and the text generated so far; the target model checks them all in one multi-token
``Backend.forward`` (the last emitted token followed by the draft), and each pass emits the
accepted drafts plus one token of the target's own:

- **greedy** (temperature 0): a draft token is accepted while it equals the target's argmax at
  its position; the first mismatch is replaced by the target's argmax, and when every draft
  matched the target's next token follows. The output is the plain greedy decode, token for
  token (``tests/test_speculative.py`` checks it on every backend).
- **sampling**: the speculative-sampling rule (Leviathan et al. 2023, "Fast Inference from
  Transformers via Speculative Decoding", Algorithm 1; Chen et al. 2023) with a deterministic
  drafter, whose proposal ``q`` is a point mass on the draft token ``d``: accept ``d`` with
  probability ``min(1, p(d) / q(d)) = p(d)``; on rejection sample from the residual
  ``norm(max(p - q, 0))``, which is ``p`` with ``d`` zeroed and renormalized. Each emitted token
  is then distributed exactly as ``p``, the target's distribution under ``golden.sampling``'s
  conventions (temperature, then top-k, then softmax).

After the pass the KV cache is truncated to the tokens that were kept (``Backend.truncate``),
so the next pass runs where plain decoding would.
"""

from abc import ABC, abstractmethod

import numpy as np

from ..golden.sampling import sample, validate_sampling
from .errors import InputError

__all__ = ["Drafter", "PromptLookup", "NgramDrafter", "DRAFTERS", "make_drafter",
           "probabilities", "verify", "speculative_step", "check_backend"]


class Drafter(ABC):
    """Proposes the next tokens of a sequence from the sequence itself (deterministically)."""

    name = "abstract"

    def reset(self) -> None:  # noqa: B027 (stateless drafters need not override it)
        """Forget any state built from a previous sequence."""

    @abstractmethod
    def draft(self, context, k: int) -> list:
        """Up to ``k`` token ids that might follow ``context`` (prompt + generated tokens).

        May return fewer (or none) when the context gives no evidence.
        """


class PromptLookup(Drafter):
    """Prompt lookup decoding (Saxena 2023): find the longest suffix of the context that also
    occurs earlier in it, and propose the ``k`` tokens that followed that occurrence (the most
    recent one among equally long matches).

    Parameters
    ----------
    min_match : int
        Shortest suffix match that yields a draft (1: a single repeated token is enough).
    max_match : int or None
        Longest suffix compared (None: no limit).
    """

    name = "prompt-lookup"

    def __init__(self, *, min_match: int = 1, max_match: int | None = None):
        if not isinstance(min_match, int) or min_match < 1:
            raise ValueError(f"min_match must be an integer >= 1, got {min_match!r}")
        if max_match is not None and (not isinstance(max_match, int) or max_match < min_match):
            raise ValueError(f"max_match must be None or an integer >= min_match, "
                             f"got {max_match!r}")
        self.min_match, self.max_match = min_match, max_match

    def match(self, context):
        """``(end, length)`` of the longest earlier match of the context's suffix: the match
        covers ``context[end - length + 1 : end + 1]``; ``(None, 0)`` when there is none."""
        seq = np.asarray(context, dtype=np.int64).reshape(-1)
        n = seq.size
        if n < 2:
            return None, 0
        # candidate match ends j < n - 1, extended backwards one token at a time
        ends = np.flatnonzero(seq[:-1] == seq[-1])
        length = 1
        limit = n - 1 if self.max_match is None else min(self.max_match, n - 1)
        while ends.size and length < limit:
            start = ends - length
            keep = start >= 0
            keep[keep] = seq[start[keep]] == seq[n - 1 - length]
            if not keep.any():
                break
            ends, length = ends[keep], length + 1
        if ends.size == 0 or length < self.min_match:
            return None, 0
        return int(ends[-1]), length

    def draft(self, context, k: int) -> list:
        end, _ = self.match(context)
        if end is None or k <= 0:
            return []
        # copy what followed the match; past the context's end the copy reads its own output
        # (an overlapping copy, as LZ77's), so a repeating pattern continues with its period
        seq = [int(t) for t in context]
        out = []
        for i in range(k):
            index = end + 1 + i
            out.append(seq[index] if index < len(seq) else out[index - len(seq)])
        return out


class NgramDrafter(Drafter):
    """An n-gram table of the context: for every context of 1 .. ``order - 1`` tokens, the
    counts of the tokens that followed it. Drafts greedily, one token at a time: the most
    frequent successor of the longest context seen (ties: the most recent), backing off to
    shorter contexts, feeding each drafted token back as context.

    The table grows incrementally with the sequence; a sequence that does not extend the last
    one rebuilds it.

    Parameters
    ----------
    order : int
        n of the largest n-gram (context of ``order - 1`` tokens), at least 2.
    """

    name = "ngram"

    def __init__(self, *, order: int = 4):
        if not isinstance(order, int) or order < 2:
            raise ValueError(f"order must be an integer >= 2, got {order!r}")
        self.order = order
        self.reset()

    def reset(self) -> None:
        self._tokens = []
        # per context length c: {context tuple: {next token: [count, last index]}}
        self._tables = [dict() for _ in range(self.order)]

    def _index(self, context) -> None:
        tokens = [int(t) for t in context]
        n_old = len(self._tokens)
        if len(tokens) < n_old or tokens[:n_old] != self._tokens:
            self.reset()
            n_old = 0
        for i in range(max(n_old, 1), len(tokens)):
            for c in range(1, min(self.order - 1, i) + 1):
                successors = self._tables[c].setdefault(tuple(tokens[i - c:i]), {})
                entry = successors.setdefault(tokens[i], [0, i])
                entry[0] += 1
                entry[1] = i
        self._tokens = tokens

    def _next(self, seq):
        for c in range(min(self.order - 1, len(seq)), 0, -1):
            successors = self._tables[c].get(tuple(seq[-c:]))
            if successors:
                return max(successors.items(), key=lambda item: (item[1][0], item[1][1]))[0]
        return None

    def draft(self, context, k: int) -> list:
        self._index(context)
        seq, out = list(self._tokens), []
        for _ in range(max(k, 0)):
            token = self._next(seq)
            if token is None:
                break
            out.append(token)
            seq.append(token)
        return out


#: drafters by their CLI name (``ternedge generate --speculative``)
DRAFTERS = {PromptLookup.name: PromptLookup, NgramDrafter.name: NgramDrafter}


def make_drafter(name: str) -> Drafter:
    """A drafter by name (``prompt-lookup`` or ``ngram``), with its default parameters."""
    if name not in DRAFTERS:
        raise InputError(f"unknown drafter {name!r}; choose one of none, {', '.join(DRAFTERS)}")
    return DRAFTERS[name]()


def probabilities(logits, *, temperature: float, top_k: int = 0) -> np.ndarray:
    """The target distribution ``golden.sampling.sample`` draws from (temperature > 0):
    logits over the temperature, restricted to the ``top_k`` largest (ties at the boundary
    kept), soft-maxed in float64."""
    validate_sampling(temperature, top_k)
    if temperature == 0:
        raise ValueError("temperature 0 is greedy: there is no distribution to return")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if 0 < top_k < scaled.size:
        threshold = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max())
    return probs / probs.sum()


def _draw(probs, rng) -> int:
    """One inverse-CDF draw with one ``rng.random()``, as ``golden.sampling.sample`` does."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), probs.size - 1))


def verify(rows, draft, *, temperature: float = 0.0, top_k: int = 0, rng=None):
    """Check a draft against the target's logits.

    Parameters
    ----------
    rows : float array (len(draft) + 1, vocab)
        ``rows[i]``: the target's logits for the token after the context and ``draft[:i]``
        (row 0 follows the last emitted token).
    draft : sequence of int
        The drafter's proposal.
    temperature, top_k : as ``golden.sampling.sample``; temperature 0 is greedy.
    rng : np.random.Generator, needed when temperature > 0.

    Returns
    -------
    (tokens, accepted) : the tokens to emit (the ``accepted`` leading drafts, then one token
        of the target's: the correction at the first rejection, or the next token after a
        fully accepted draft) and the number of draft tokens accepted.
    """
    rows = np.asarray(rows, dtype=np.float64)
    draft = [int(t) for t in draft]
    if rows.ndim != 2 or rows.shape[0] != len(draft) + 1:
        raise ValueError(f"verify needs len(draft) + 1 = {len(draft) + 1} rows of logits, "
                         f"got shape {rows.shape}")
    validate_sampling(temperature, top_k)
    if temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs a seeded rng")
    out = []
    for i, proposed in enumerate(draft):
        if temperature == 0:
            target = int(np.argmax(rows[i]))
            if target != proposed:
                return out + [target], i
            out.append(proposed)
            continue
        p = probabilities(rows[i], temperature=temperature, top_k=top_k)
        if rng.random() < p[proposed]:
            out.append(proposed)
            continue
        # p(proposed) < 1 here (rng.random() < 1 always), so the residual has mass
        residual = p.copy()
        residual[proposed] = 0.0
        return out + [_draw(residual / residual.sum(), rng)], i
    return out + [sample(rows[-1], temperature=temperature, top_k=top_k, rng=rng)], len(draft)


def check_backend(backend) -> None:
    """Raise ``InputError`` unless ``backend`` has the multi-token forward and KV truncation
    that verification needs."""
    from .backends import Backend

    cls = type(backend)
    if any(getattr(cls, name) is getattr(Backend, name) for name in ("forward", "truncate")):
        raise InputError(f"the {backend.name} backend has no multi-token forward or KV "
                         "truncation, which speculative decoding needs; run it with "
                         "--speculative none")


def speculative_step(backend, last_token: int, context, drafter: Drafter, k: int, *,
                     limit: int, temperature: float = 0.0, top_k: int = 0, rng=None):
    """One verification pass.

    ``backend`` holds the KV cache of ``context`` without its last token ``last_token``
    (where plain decoding would call ``decode(last_token)``). Drafts at most
    ``min(k, limit - 1)`` tokens, so that the pass emits at most ``limit`` tokens; runs
    ``[last_token] + draft`` as one ``forward``; keeps the accepted drafts in the KV cache and
    truncates the rest.

    Returns
    -------
    (tokens, accepted, drafted) : the emitted tokens (the last not yet in the KV cache), the
        draft tokens accepted and the draft tokens proposed.
    """
    draft = drafter.draft(context, min(k, limit - 1)) if limit > 1 else []
    start = backend.position
    rows = backend.forward([int(last_token)] + draft)
    tokens, accepted = verify(rows, draft, temperature=temperature, top_k=top_k, rng=rng)
    if accepted < len(draft):
        backend.truncate(start + 1 + accepted)
    return tokens, accepted, len(draft)
