# SPDX-License-Identifier: BSD-3-Clause
"""Golden against the torch float reference on real text: agreement, logit error, bits/byte."""

import numpy as np

from ..golden.model import GoldenModel
from ..golden.weights import ModelWeights

__all__ = ["compare_on_text", "bits_per_token"]


def bits_per_token(logits, targets) -> float:
    """Mean cross-entropy in bits of ``targets`` under float ``logits`` (T, V)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].mean() / np.log(2))


def compare_on_text(weights: ModelWeights, token_ids, window: int | None = None) -> dict:
    """Run golden and torch over ``token_ids`` in windows of the model's context.

    Returns next-token top-1 agreement, max and mean absolute logit error, and each backend's
    bits per token on the text (the next-token targets inside each window).
    """
    import torch

    from .torch_ref import BitNetTorch

    ids = np.asarray(token_ids, dtype=np.int64)
    window = window or weights.config.max_position_embeddings
    golden = GoldenModel(weights)
    reference = BitNetTorch.from_weights(weights, device="cpu")
    golden_logits, torch_logits, targets = [], [], []
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        if len(chunk) < 2:
            break
        golden.reset()
        golden_logits.append(golden.logits(golden.forward(chunk[:-1])))
        with torch.no_grad():
            out = reference(torch.as_tensor(chunk[None, :-1]))
        torch_logits.append(out[0].double().numpy())
        targets.append(chunk[1:])
    g, t, y = (np.concatenate(a) for a in (golden_logits, torch_logits, targets))
    error = np.abs(g - t)
    return {
        "positions": int(len(y)),
        "top1_agreement": float(np.mean(g.argmax(-1) == t.argmax(-1))),
        "max_logit_error": float(error.max()),
        "mean_logit_error": float(error.mean()),
        "logit_range": float(np.abs(t).max()),
        "golden_bits_per_token": bits_per_token(g, y),
        "torch_bits_per_token": bits_per_token(t, y),
    }
