# SPDX-License-Identifier: BSD-3-Clause
"""``ternedge simulate``: predicted TTFT, tokens/s, breakdown and energy. *Modeled*.

``register(commands)`` adds the subcommand to an argparse subparsers object; its ``run``
returns an exit code and raises ``host.errors`` ``ConfigurationError`` / ``InputError`` for
bad input (host/cli.py prints those on one line).
"""

import argparse
import json

from ..host import argtypes
from ..host.errors import InputError
from . import power, presets, resources
from .system import BLOCKS, System, roofline

__all__ = ["register", "run", "build_system"]


def register(commands) -> argparse.ArgumentParser:
    """Add ``simulate`` to ``commands`` (from ``ArgumentParser.add_subparsers``)."""
    sim = commands.add_parser(
        "simulate", help="predict TTFT, tokens/s and energy of a model on a board (modeled)",
        description=__doc__.splitlines()[0])
    sim.add_argument("--model", required=True,
                     help=f"preset ({', '.join(presets.MODELS)}) or an HF config.json path")
    sim.add_argument("--board", default="kv260", help=f"board ({', '.join(presets.BOARDS)})")
    sim.add_argument("--config", default="default",
                     help=f"accelerator configuration ({', '.join(presets.CONFIGS)}) or a JSON "
                          "file of AcceleratorConfig fields")
    sim.add_argument("--prompt-len", type=int, default=128, help="prompt tokens")
    sim.add_argument("--gen", type=int, default=128, help="generated tokens")
    sim.add_argument("--speculative-k", type=int, default=0, metavar="K",
                     help="also model decode by verification passes of K drafted tokens "
                          "(sim/speculative.py; 0 = off)")
    sim.add_argument("--acceptance", type=float, default=None, metavar="A",
                     help="per-token draft acceptance rate in [0, 1] for --speculative-k")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead")
    sim.add_argument("--plots", metavar="DIR", type=argtypes.output_dir(),
                     help="write PNG plots into DIR")
    sim.set_defaults(run=run)
    return sim


#: the most prompt or generated tokens a run models
_TOKENS_MAX = 1 << 20


def build_system(model: str, board: str, config: str) -> System:
    """Resolve names/paths and build the System (validated against the board): the RTL's
    exact cycle model for ``presets.RTL_CONFIGS``, else the transaction-level model."""
    if config in presets.RTL_CONFIGS:
        from .rtl_top import RtlSystem

        return RtlSystem(presets.load_model(model), presets.load_config(config),
                         presets.load_board(board))
    return System(presets.load_model(model), presets.load_config(config),
                  presets.load_board(board))


def _summary(system: System, result) -> dict:
    out = result.to_dict()
    capacity = system.kv_cache.capacity(system.model)
    contexts = sorted({c for c in (64, 128, 256, 512, 1024, 2048) if c <= capacity}
                      | {result.prompt_len + 1})
    out["decode_tok_s_by_context"] = {str(c): v for c, v in system.decode_curve(contexts)}
    out["roofline"] = roofline(system, result.prompt_len + 1)
    rtl = hasattr(system, "top")
    out["model_of"] = "rtl" if rtl else "transaction-level"
    # the RTL's resources are measured by its build (``ternedge build --design accelerator``)
    out["resources"] = None if rtl else resources.totals(system.config, system.model)
    out["energy_components_decode_step_j"] = power.components(result.decode_steps[0])
    return out


def _table(system: System, result, summary) -> str:
    step = result.decode_steps[0]
    what = ("the RTL as built, from its exact cycle model; the host's part modeled"
            if summary["model_of"] == "rtl" else "all numbers modeled")
    lines = [
        f"ternedge simulate ({what}) on {system.board.name if system.board else ''}"
        f" @ {system.config.clock_mhz:g} MHz, prompt {result.prompt_len}, gen {result.gen}",
        f"  TTFT                 {result.ttft_s * 1e3:10.1f} ms",
        f"  prefill              {result.prefill_tok_s:10.1f} tokens/s",
        f"  decode               {result.decode_tok_s:10.1f} tokens/s (average)",
        f"  energy               {result.energy_j_per_token * 1e3:10.1f} mJ/token (decode), "
        f"{result.average_power_w:.2f} W average",
        f"  TLMM utilization     {result.tlmm_utilization * 100:10.1f} %",
        f"  DDR bandwidth        {result.ddr_bandwidth_gbps:10.2f} GB/s "
        f"({result.ddr_utilization * 100:.0f} % of peak)",
        f"  DDR roofline         {summary['roofline']['peak_tok_s']:10.1f} tokens/s at peak, "
        f"{summary['roofline']['sustained_tok_s']:.1f} sustained "
        f"({summary['roofline']['bytes_per_token'] / 1e6:.1f} MB/token)",
        "",
        f"  {'block':<12} {'prefill ms':>11} {'decode ms':>10}   (decode step at context "
        f"{step.context})",
    ]
    for block in BLOCKS:
        lines.append(f"  {block:<12} {result.prefill.breakdown[block] * 1e3:11.2f} "
                     f"{step.breakdown[block] * 1e3:10.3f}")
    lines.append(f"  {'total':<12} {result.prefill.seconds * 1e3:11.2f} "
                 f"{step.seconds * 1e3:10.3f}")
    lines.append("")
    lines.append("  decode tokens/s by context: " + ", ".join(
        f"{c}: {v:.1f}" for c, v in summary["decode_tok_s_by_context"].items()))
    used = summary["resources"]
    board = system.board
    if used is None:
        lines.append("  resources: measured by `ternedge build --design accelerator --board "
                     f"{board.name}` (a Yosys estimate)")
    elif board is not None:
        shown = [k for k in used if system.config.resource_model == "ternedge"
                 or k in ("bram36", "uram")]
        lines.append("  resources: " + ", ".join(
            f"{k.upper()} {used[k]}/{getattr(board, k)}" for k in shown))
        if system.config.resource_model == "published":
            lines.append("  (logic use of a published design is its authors' result, "
                         "not modeled)")
    return "\n".join(lines)


def run(args) -> int:
    """Run ``ternedge simulate``; returns the exit code."""
    for name in ("prompt_len", "gen"):
        value = getattr(args, name)
        if not 0 < value <= _TOKENS_MAX:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer (at "
                             f"most {_TOKENS_MAX}), got {value}")
    k, acceptance = args.speculative_k, args.acceptance
    if not 0 <= k <= 1024:
        raise InputError(f"--speculative-k must be an integer in [0, 1024] (0 = off), got {k}")
    if k and acceptance is None:
        raise InputError("--speculative-k needs --acceptance A, the per-token draft acceptance "
                         "rate in [0, 1] (benchmarks/bench_speculative.py measures it)")
    if acceptance is not None and not k:
        raise InputError("--acceptance only applies with --speculative-k K (K >= 1)")
    if acceptance is not None and not 0.0 <= acceptance <= 1.0:
        raise InputError(f"--acceptance must be a probability in [0, 1], got {acceptance}")
    system = build_system(args.model, args.board, args.config)
    result = system.run(args.prompt_len, args.gen)
    summary = _summary(system, result)
    spec = None
    if k:
        from . import speculative

        spec = speculative.simulate(system, k, acceptance, args.prompt_len, args.gen)
        summary["speculative"] = spec.to_dict()
    if args.plots:
        from . import plots

        summary["plots"] = [str(p) for p in plots.write_all(system, result, args.plots)]
        if spec is not None:
            from pathlib import Path

            context = args.prompt_len + args.gen // 2
            ks = sorted({1, 2, 3, 4, 8, k})
            mark = (acceptance, spec.effective_tok_s, f"K={k}, A={acceptance:g}")
            summary["plots"].append(str(plots.speculative_plot(
                system, context, Path(args.plots) / "speculative.png", ks, mark)))
    if args.json:
        print(json.dumps(summary))
    else:
        print(_table(system, result, summary))
        if spec is not None:
            print(f"  speculative decode   {spec.effective_tok_s:10.1f} tokens/s effective "
                  f"(K={k} drafts per pass, acceptance {acceptance:g}: "
                  f"{spec.tokens_per_pass:.2f} tokens per {spec.pass_ms:.2f} ms pass), "
                  f"{spec.speedup:.2f}x one-token decode, "
                  f"{spec.effective_tok_s / spec.roofline_peak_tok_s:.2f}x its peak roofline")
        if args.plots:
            print("  plots: " + ", ".join(summary["plots"]))
    return 0
