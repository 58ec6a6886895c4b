# SPDX-License-Identifier: BSD-3-Clause
"""Measured draft acceptance on real text, and what it means on the KV260 (modeled).

Run: ``.venv/bin/python benchmarks/bench_speculative.py`` (``make bench``; about 5 minutes on
2 busy cores). The shipped tiny model (golden backend, greedy) continues passages of two
public-domain English texts: ``host/data/kjv_heldout.txt`` (held out from its training) and
``host/data/austen_pride_prejudice.txt`` (never seen in training). For each drafter and K it
checks that the speculative output equals plain decoding token for token, and reports per
verification pass the mean accepted draft tokens, the tokens emitted, the drafts proposed and
the per-token acceptance rate (maximum likelihood under the simulator's geometric model:
accepted drafts over accepted drafts plus rejections).

Then every measured pass (its draft length and accepted count, in order) is replayed on
bitnet-b1.58-large on the KV260, twice:

- through ``sim.speculative.from_passes`` on the ``what-if`` configuration (the
  transaction-level design point of ``sim/system.py``, which the RTL does not implement):
  modeled effective decode tokens/s, beside modeled one-token decode over the same positions
  and the one-token DDR roofline;
- the same on the ``default`` configuration, the RTL as built (``sim.rtl_top.RtlSystem``: each
  pass's program counted by the top's exact cycle model, ``sim.accelerator.program_cycles``,
  for one layer at the KV260's defaults under the ``kv260`` DDR profile, projected to 24 layers
  as ``ternedge rtl-bench`` projects its measurements, plus the host's FP16 LM head for every
  row of the pass and its per-call and per-token work).

The acceptance is the tiny model's; the timing is the large model's: how a model whose drafts
are accepted as often would run there.
"""

import argparse
import json
import time
from pathlib import Path

from ternedge.host.backends import GoldenBackend
from ternedge.host.checkpoint import load_checkpoint
from ternedge.host.cli import DEFAULT_MODEL
from ternedge.host.generate import generate
from ternedge.host.speculative import make_drafter
from ternedge.host.tokenizer import load_tokenizer
from ternedge.sim import speculative as sim_speculative
from ternedge.sim.cli import build_system
from ternedge.sim.system import roofline

DATA = Path(__file__).parents[1] / "host" / "data"
TEXTS = {"kjv-heldout": DATA / "kjv_heldout.txt",
         "austen": DATA / "austen_pride_prejudice.txt"}
DRAFTERS = ("prompt-lookup", "ngram")
#: K = 3 beside the asked-for 2, 4, 8: a pass of 4 tokens fills one 4-query attention tile
KS = (2, 3, 4, 8)
#: the acceptance sweep through ``sim.speculative.simulate`` (prompt 128, 256 generated)
SWEEP_KS = (2, 3, 4, 8)
SWEEP_RATES = (0.3, 0.5, 0.7, 0.9)


def load_text(path: Path) -> str:
    """The text without its ``# `` header lines (source and license)."""
    lines = path.read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("# "):
        lines.pop(0)
    return "".join(lines).lstrip("\n")


def passages(text: str, count: int, length: int) -> list:
    """``count`` prompts of ``length`` bytes, starting at line starts spread evenly."""
    starts = []
    for i in range(count):
        at = text.find("\n", i * (len(text) - length) // count)
        starts.append(0 if i == 0 else at + 1)
    return [text[s:s + length] for s in starts]


def acceptance_rate(pass_log) -> float:
    """Per-token acceptance (MLE): accepted / (accepted + rejections)."""
    accepted = sum(a for _, a in pass_log)
    rejected = sum(1 for d, a in pass_log if a < d)
    return accepted / (accepted + rejected) if accepted + rejected else 0.0


def modeled_rate(system, results) -> dict:
    """Each passage's passes replayed from its own prompt length; tokens over seconds."""
    tokens = seconds = 0.0
    for result, _ in results:
        replay = sim_speculative.from_passes(system, result.pass_log, result.prompt_tokens)
        tokens += replay["tokens"]
        seconds += replay["seconds"]
    return {"modeled": True, "effective_tok_s": tokens / seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=8, help="passages per text")
    parser.add_argument("--prompt-bytes", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    weights = load_checkpoint(DEFAULT_MODEL)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    backend = GoldenBackend(weights)
    system = build_system("bitnet-b1.58-large", "kv260", "what-if")
    rtl = build_system("bitnet-b1.58-large", "kv260", "default")
    rows = []
    for text_name, path in TEXTS.items():
        prompts = passages(load_text(path), args.passages, args.prompt_bytes)
        runs = {("none", 0): []}
        runs.update({(d, k): [] for d in DRAFTERS for k in KS})
        for prompt in prompts:
            start = time.perf_counter()
            plain = generate(backend, tokenizer, prompt, max_new_tokens=args.new_tokens)
            runs[("none", 0)].append((plain, time.perf_counter() - start))
            for drafter, k in runs:
                if drafter == "none":
                    continue
                start = time.perf_counter()
                got = generate(backend, tokenizer, prompt, max_new_tokens=args.new_tokens,
                               drafter=make_drafter(drafter), draft_tokens=k)
                elapsed = time.perf_counter() - start
                if got.tokens != plain.tokens:
                    raise SystemExit(f"{drafter} K={k} differs from plain greedy decoding on "
                                     f"{text_name}: {prompt[:40]!r}")
                runs[(drafter, k)].append((got, elapsed))
        prompt_len = len(tokenizer.encode(prompts[0]))
        base = modeled_rate(system, runs[("none", 0)])
        rtl_base = modeled_rate(rtl, runs[("none", 0)])["effective_tok_s"]
        roof = roofline(system, prompt_len + 1)
        for (drafter, k), results in runs.items():
            log = [p for r, _ in results for p in r.pass_log]
            passes = len(log)
            accepted = sum(a for _, a in log)
            modeled = modeled_rate(system, results)
            rows.append({
                "text": text_name, "drafter": drafter, "k": k, "passages": len(results),
                "new_tokens": args.new_tokens, "verify_passes": passes,
                "accepted_per_pass": accepted / passes,
                "tokens_per_pass": (accepted + passes) / passes,
                "drafted_per_pass": sum(d for d, _ in log) / passes,
                "acceptance_rate": acceptance_rate(log),
                "golden_cpu_s": sum(t for _, t in results),
                "modeled_effective_tok_s": modeled["effective_tok_s"],
                "modeled_one_token_tok_s": base["effective_tok_s"],
                "roofline_peak_tok_s": roof["peak_tok_s"],
                "roofline_sustained_tok_s": roof["sustained_tok_s"],
                "rtl_as_built_tok_s": modeled_rate(rtl, results)["effective_tok_s"],
                "rtl_as_built_one_token_tok_s": rtl_base,
                "pass_logs": [r.pass_log for r, _ in results],
            })
            r = rows[-1]
            print(f"{text_name:<12} {drafter:<13} K={k}: {r['accepted_per_pass']:.2f} accepted "
                  f"per pass ({r['tokens_per_pass']:.2f} tokens, {r['drafted_per_pass']:.2f} "
                  f"drafted, acceptance {r['acceptance_rate']:.2f}), {passes} passes; modeled "
                  f"KV260 {r['modeled_effective_tok_s']:.1f} tok/s vs one-token "
                  f"{r['modeled_one_token_tok_s']:.1f}, roofline {r['roofline_peak_tok_s']:.1f}"
                  f"; RTL as built {r['rtl_as_built_tok_s']:.2f} vs {rtl_base:.2f}"
                  f"; golden CPU {r['golden_cpu_s']:.1f} s", flush=True)

    print("\n| text | drafter | K | accepted / pass | tokens / pass | drafted / pass | "
          "acceptance rate | KV260 `what-if` modeled tok/s | vs one-token decode | "
          "RTL as built tok/s | vs one-token decode |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = "none (one-token decode)" if r["drafter"] == "none" else r["drafter"]
        print(f"| {r['text']} | {name} | {r['k'] or '–'} | {r['accepted_per_pass']:.2f} | "
              f"{r['tokens_per_pass']:.2f} | {r['drafted_per_pass']:.2f} | "
              f"{r['acceptance_rate']:.2f} | {r['modeled_effective_tok_s']:.1f} | "
              f"{r['modeled_effective_tok_s'] / r['modeled_one_token_tok_s']:.2f}x | "
              f"{r['rtl_as_built_tok_s']:.2f} | "
              f"{r['rtl_as_built_tok_s'] / r['rtl_as_built_one_token_tok_s']:.2f}x |")
    print(f"\none-token DDR roofline of bitnet-b1.58-large on the KV260 what-if: "
          f"{rows[0]['roofline_peak_tok_s']:.1f} tok/s at peak, "
          f"{rows[0]['roofline_sustained_tok_s']:.1f} sustained (modeled)")

    baseline = None
    sweep, break_even = [], {}
    print("\nKV260 `what-if`, bitnet-b1.58-large, prompt 128 + 256 generated (modeled): "
          "effective tok/s by K and per-token acceptance rate")
    print("| K | " + " | ".join(f"A = {a:g}" for a in SWEEP_RATES) + " | break-even A |")
    print("|---|" + "---|" * (len(SWEEP_RATES) + 1))
    for k in SWEEP_KS:
        cells = []
        for a in SWEEP_RATES:
            result = sim_speculative.simulate(system, k, a, 128, 256, baseline=baseline)
            baseline = baseline or (result.decode_tok_s, roofline(system, 129))
            sweep.append(result.to_dict())
            cells.append(f"{result.effective_tok_s:.1f}")
        even = break_even[k] = sim_speculative.break_even_acceptance(system, k, 256)
        print(f"| {k} | " + " | ".join(cells) + f" | {even:.2f} |")
    print(f"one-token decode {baseline[0]:.1f} tok/s; one-token DDR roofline "
          f"{baseline[1]['peak_tok_s']:.1f} tok/s at peak, "
          f"{baseline[1]['sustained_tok_s']:.1f} sustained (context 129)")
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": rows, "sweep": sweep,
                                               "break_even": break_even}, indent=1))


if __name__ == "__main__":
    main()
