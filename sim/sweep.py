# SPDX-License-Identifier: BSD-3-Clause
"""Design-space sweep: the best configuration that fits a board. *Modeled*.

Every candidate is a ``base`` configuration with some fields replaced (the cartesian product
of ``space``); candidates that do not fit the board (``resources.check``) or cannot run the
model are dropped; the rest are simulated on a ``prompt_len``-token prefill (TTFT) and one
decode step at context ``decode_context`` (the middle of a 128 + 256-token run) and ranked by

    score = min(decode_tok_s / decode_target, ttft_target / ttft_s)

(the worse of the two targets, so both must be met for a score >= 1). Candidates that meet
both targets rank first; then scores equal to two decimals are ranked by fewer LUTs, then
lower TTFT (to the millisecond), then faster decode at the longest context the KV cache
holds. ``presets.CONFIGS["what-if"]`` is the winner of
``sweep(DEFAULT_SPACE)`` on the 0.73B model and the KV260 (tests/test_sim.py checks this with
a reduced space; the full sweep runs under the ``slow`` marker).
"""

import dataclasses
import itertools
from dataclasses import dataclass

from ..host.errors import ConfigurationError
from . import resources
from .system import System

__all__ = ["Candidate", "sweep", "DEFAULT_SPACE", "DECODE_TARGET_TOK_S", "TTFT_TARGET_S"]

#: targets on bitnet-b1.58-large: 3x TeLLMe v2's 25 tok/s decode, TTFT <= 0.30 s at 128 tokens
DECODE_TARGET_TOK_S = 75.0
TTFT_TARGET_S = 0.30

#: the space ``presets.CONFIGS["what-if"]`` was chosen from (over its own other fields)
DEFAULT_SPACE = {
    "table_memory": ("registers", "lutram"),
    "tables_per_step": (28, 32, 36, 42, 48, 56, 64),
    "cols_per_cycle": (8, 16, 24, 32),
    "ddr_ports": (4, 6),
    "attention_lanes": (16, 32),
    "attention_query_tile": (4, 8),
    "attention_pv_queries": (2, 4, 8),
    "decode_attention_lanes": (16, 32, 64),
    "elementwise_lanes": (16, 32),
    "lm_head": ("fabric-int8", "fabric-int4"),
}


@dataclass(frozen=True)
class Candidate:
    """One evaluated configuration (*modeled* numbers)."""

    config: object
    ttft_s: float
    decode_tok_s: float
    decode_long_tok_s: float
    lut: int
    score: float


def sweep(model, board, base, space: dict, *, prompt_len: int = 128, decode_context: int = 256,
          decode_target: float = DECODE_TARGET_TOK_S,
          ttft_target: float = TTFT_TARGET_S) -> list:
    """Evaluate every fitting configuration of ``space`` over ``base``; best first."""
    names = list(space)
    out = []
    for values in itertools.product(*(space[n] for n in names)):
        changes = dict(zip(names, values, strict=True))
        if changes.get("attention_pv_queries", 1) > changes.get(
                "attention_query_tile", base.attention_query_tile):
            continue
        try:
            config = dataclasses.replace(base, **changes)
            system = System(model, config, board)
        except (ConfigurationError, ValueError):
            continue
        ttft = system.prefill(prompt_len).seconds
        decode = 1.0 / system.decode_step(decode_context).seconds
        long_context = system.kv_cache.capacity(model)
        decode_long = 1.0 / system.decode_step(long_context).seconds
        lut = resources.totals(config, model)["lut"]
        score = min(decode / decode_target, ttft_target / ttft)
        out.append(Candidate(config=config, ttft_s=ttft, decode_tok_s=decode,
                             decode_long_tok_s=decode_long, lut=lut, score=score))
    out.sort(key=lambda cand: (cand.score < 1, -round(cand.score, 2), cand.lut,
                               round(cand.ttft_s, 3), -round(cand.decode_long_tok_s, 1)))
    return out
