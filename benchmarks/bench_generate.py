# SPDX-License-Identifier: BSD-3-Clause
"""Golden backend against the torch float reference on CPU: tokens/s of the shipped tiny model.

Run: ``.venv/bin/python benchmarks/bench_generate.py`` (``make bench``). Both backends run the
same greedy generation, side by side in one process, and the ratio is printed.
"""

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from ternedge.host.backends import make_backend  # noqa: E402
from ternedge.host.checkpoint import load_checkpoint  # noqa: E402
from ternedge.host.cli import DEFAULT_MODEL  # noqa: E402
from ternedge.host.generate import generate  # noqa: E402
from ternedge.host.tokenizer import load_tokenizer  # noqa: E402

PROMPT = "And it came to pass, when the king heard the words of the book of the law, that he"
NEW_TOKENS = 128


def main():
    torch.set_num_threads(1)        # one core each, like the NumPy golden model
    weights = load_checkpoint(DEFAULT_MODEL)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    results = {}
    for name in ("golden", "torch"):
        backend = make_backend(name, weights)
        generate(backend, tokenizer, PROMPT, max_new_tokens=8)          # warm up
        best = max((generate(backend, tokenizer, PROMPT, max_new_tokens=NEW_TOKENS)
                    for _ in range(3)), key=lambda r: r.tokens_per_s)
        results[name] = best
        print(f"{name:>6}: prompt {best.prompt_tokens} tokens, TTFT {best.ttft_s * 1e3:7.1f} ms, "
              f"decode {best.tokens_per_s:7.1f} tokens/s")
    ratio = results["golden"].tokens_per_s / results["torch"].tokens_per_s
    same = results["golden"].tokens == results["torch"].tokens
    print(f"golden / torch decode rate: {ratio:.2f}x; identical greedy tokens: {same}")


if __name__ == "__main__":
    main()
