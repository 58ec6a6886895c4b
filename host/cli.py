# SPDX-License-Identifier: BSD-3-Clause
"""The ``ternedge`` command line. Errors a user can fix print one line and exit 1."""

import argparse
import json
import sys
from pathlib import Path

from . import argtypes
from .errors import TernedgeError

__all__ = ["main", "DEFAULT_MODEL"]

#: the project's shipped tiny model (byte-level BitNet trained on the King James Bible)
DEFAULT_MODEL = Path(__file__).parent / "models" / "tiny-kjv"


def _generate(args) -> int:
    from .backends import make_backend
    from .checkpoint import load_checkpoint
    from .errors import InputError
    from .generate import check_request, generate
    from .speculative import check_backend as check_speculative_backend
    from .speculative import make_drafter
    from .tokenizer import load_tokenizer

    weights = load_checkpoint(args.model)
    tokenizer = load_tokenizer(args.model)
    prompt_ids = tokenizer.encode(args.prompt)
    check_request(prompt_ids, args.max_new_tokens, weights.config.max_position_embeddings,
                  args.temperature, args.top_k)
    if args.backend == "rtl":
        from .rtl_backend import check_request as check_rtl_request

        check_rtl_request(len(prompt_ids), args.max_new_tokens)
    if args.draft_tokens < 1:
        raise InputError(f"--draft-tokens must be a positive integer, got {args.draft_tokens}")
    drafter = None if args.speculative == "none" else make_drafter(args.speculative)
    backend = make_backend(args.backend, weights)
    if drafter is not None:
        check_speculative_backend(backend)
    stream = None if args.json else (lambda text: print(text, end="", flush=True))
    if stream:
        print(args.prompt, end="", flush=True)
    try:
        result = generate(backend, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                          model_name=str(args.model), on_text=stream, drafter=drafter,
                          draft_tokens=args.draft_tokens)
    finally:
        if hasattr(backend, "close"):
            backend.close()
    cycles = _cycle_report(backend)
    if args.json:
        print(json.dumps(result.to_dict() | cycles))
        return 0
    print(f"\n\n[{args.backend}] prompt {result.prompt_tokens} tokens, "
          f"TTFT {result.ttft_s * 1e3:.1f} ms, {result.tokens_per_s:.1f} tokens/s, "
          f"{len(result.tokens)} new tokens")
    if drafter is not None:
        print(f"[speculative {result.speculative}, K={result.draft_tokens}] "
              f"{result.verify_passes} verify passes, {result.accepted_per_pass:.2f} accepted "
              f"draft tokens per pass ({1 + result.accepted_per_pass:.2f} tokens per pass), "
              f"{result.drafted_per_pass:.2f} drafted per pass")
    if cycles:
        rate = cycles["sim_cycles"] / max(cycles["sim_cpu_s"], 1e-9)
        print(f"[rtl] {cycles['sim_cycles']:,} cycles simulated in {cycles['sim_wall_s']:.1f} s "
              f"({rate:,.0f} cycles per CPU second); cycles per pass (RTL on Verilator | "
              f"sim.accelerator model, DDR {backend.ddr_name}):")
        for row in cycles["passes"]:
            mark = "equal" if row["rtl_cycles"] == row["model_cycles"] else "DIFFER"
            print(f"  {row['kind']:7} {row['tokens']:3d} tokens at {row['position']:3d}: "
                  f"{row['rtl_cycles']:>11,} | {row['model_cycles']:>11,}  {mark}")
    return 0


def _cycle_report(backend) -> dict:
    """The RTL backend's passes: measured cycles beside the cycle model's, and the harness's
    simulated cycles and wall time."""
    log = getattr(backend, "cycle_log", None)
    if not log:
        return {}
    from ..sim.accelerator import TopTiming, program_cycles

    timing = TopTiming.for_ddr(backend.accel_config, backend.ddr, backend.gates)
    passes = [{"kind": c.kind, "tokens": c.tokens, "position": c.position,
               "rtl_cycles": c.cycles,
               "model_cycles": program_cycles(backend.layout.program(c.tokens, c.position),
                                              timing)}
              for c in log]
    return {"sim_cycles": sum(c.sim_cycles for c in log),
            "sim_wall_s": round(sum(c.wall_s for c in log), 3),
            "sim_cpu_s": round(sum(c.cpu_s for c in log), 3), "passes": passes}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ternedge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate text with a BitNet b1.58 model")
    gen.add_argument("--prompt", required=True, help="text to continue")
    gen.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                     help="HF-format checkpoint directory (default: the shipped tiny model)")
    gen.add_argument("--backend", default="golden", choices=["golden", "torch", "rtl"],
                     help="rtl: the accelerator RTL on the Verilator C++ harness")
    gen.add_argument("--max-new-tokens", default=64, type=argtypes.integer(
        "--max-new-tokens", 1, what="a positive integer"))
    gen.add_argument("--temperature", default=0.0, help="0 = greedy", type=argtypes.real(
        "--temperature", 0, 100, note=" (0 = greedy)"))
    gen.add_argument("--top-k", default=0, help="0 = no limit", type=argtypes.integer(
        "--top-k", 0, note=" (0 = no limit)"))
    gen.add_argument("--seed", type=argtypes.seed(), default=0)
    gen.add_argument("--speculative", default="none",
                     choices=["none", "prompt-lookup", "ngram"],
                     help="draft tokens from the context and verify them K at a time "
                          "(greedy output is unchanged; see host/speculative.py)")
    gen.add_argument("--draft-tokens", type=argtypes.integer("--draft-tokens", 1, 1024),
                     default=4, metavar="K",
                     help="most draft tokens per verification pass (default 4)")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead")
    gen.set_defaults(run=_generate)

    from ..sim import cli as sim_cli

    sim_cli.register(commands)

    from . import neural, neural_lsl

    # --lsl-in / --lsl-out / --lsl-timeout: live decoding over Lab Streaming Layer
    neural_lsl.add_arguments(neural.register(commands))

    from . import numerics

    numerics.register(commands)

    from ..boards import build

    builder = commands.add_parser("build", help="build a bitstream or resource estimate")
    build.add_build_arguments(builder)
    builder.set_defaults(run=build.main_build)

    from . import rtl_bench

    rtl_bench.register(commands)
    return parser


def main(argv=None) -> int:
    try:
        # the option types (host.argtypes) raise InputError: one line, before any work
        args = _parser().parse_args(argv)
        return args.run(args)
    except TernedgeError as exc:
        print(f"ternedge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nternedge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
