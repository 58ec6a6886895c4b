# SPDX-License-Identifier: BSD-3-Clause
"""Next-token selection on the host: greedy, temperature and top-k, seeded and reproducible."""

import numpy as np

__all__ = ["sample", "validate_sampling"]


def validate_sampling(temperature: float, top_k: int) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), "
                         f"got {temperature}")
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top-k must be an integer >= 0 (0 = no limit), got {top_k}")


def sample(logits, *, temperature: float = 0.0, top_k: int = 0, rng=None) -> int:
    """Pick the next token id from float logits (V,).

    ``temperature == 0`` is greedy (lowest id among equal maxima). Otherwise the logits are
    divided by the temperature, restricted to the ``top_k`` largest (0 = all; ties at the
    boundary are kept), soft-maxed in float64 and sampled by inverse CDF with one
    ``rng.random()`` draw, so a seeded ``np.random.Generator`` reproduces the same tokens.
    """
    validate_sampling(temperature, top_k)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    if rng is None:
        raise ValueError("sampling with temperature > 0 needs a seeded rng")
    scaled = logits / temperature
    if 0 < top_k < scaled.size:
        threshold = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max())
    cdf = np.cumsum(probs)
    draw = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, draw, side="right"), scaled.size - 1))
