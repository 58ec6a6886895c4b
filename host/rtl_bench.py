# SPDX-License-Identifier: BSD-3-Clause
"""``ternedge rtl-bench``: the accelerator RTL as built, measured at board size.

It writes seeded random ternary weights of a model's shapes (``--layers`` of them, a small
vocabulary: the LM head runs on the host), builds the top at the board's default accelerator
configuration (``boards.build.ACCELERATOR_DEFAULTS``, ``--config`` overrides) on the Verilator
C++ harness under a DDR profile (``golden.ddr``), runs a ``--prompt-len`` prefill (in passes of
the top's ``max_tokens``) and ``--decode-tokens`` decode steps, and checks every pass against
golden bit for bit and against the cycle model (``sim.accelerator``) cycle for cycle.

Reported, at the board clock:

- the measured cycles of every pass on the layers run;
- their projection to the whole model (``sim.rtl_top.project_cycles``): per pass, the final
  norm once plus the per-layer cycles (measured, averaged over the layers run) times the
  model's layers; plus the host's part (``sim.rtl_top.host_seconds``, modeled): the LM head as
  TeLLMe runs it (FP16 on the ARM), once per generated token, a call per pass and the
  per-token host work;
- decode tokens/s at context P (the first decode step), TTFT (the prefill plus one LM head),
  prefill tokens/s, and the DDR bandwidth the top used during that decode step (each pass's
  read and write beats are also counted from its program, ``sim.rtl_top.program_traffic``);
- from the exact cycle model of the same top (``sim.rtl_top.RtlSystem``, what ``ternedge
  simulate --config default`` runs): decode tokens/s at contexts 512 and 1024 (no prefill of
  that length is run on the harness) and the energy of the decode step (``sim.power``).

Every number is the RTL as built (measured, projected from measurements as described, or
from its exact cycle model where said); nothing here is a design target.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..golden.config import ModelConfig, bram_max_job_n
from ..golden.model import GoldenModel
from ..sim.rtl_top import (
    BENCH_VOCAB,
    CONFIG_KEYS,
    accelerator_config,
    board_settings,
    host_seconds,
    program_traffic,
    project_cycles,
    random_weights,
)
from . import argtypes
from .errors import InputError

__all__ = ["register", "run", "bench"]

def bench(model: ModelConfig, *, layers: int, board: str, ddr: str = "kv260",
          prompt_len: int = 16, decode_tokens: int = 2, config_file=None, seed: int = 0,
          build_dir=None, waves=None, progress=None) -> dict:
    """Run the benchmark; the report as a dict (see the module docstring)."""
    from ..sim.accelerator import TopTiming, program_cycles
    from .rtl_backend import RTLBackend

    settings = board_settings(board, config_file)
    accel = accelerator_config(settings)
    full_layers = model.num_hidden_layers
    if not 1 <= layers <= full_layers:
        raise InputError(f"--layers must be 1 to {full_layers} (the model's layers), got "
                         f"{layers}")
    if prompt_len < 1 or decode_tokens < 1:
        raise InputError("--prompt-len and --decode-tokens must be positive integers")
    if waves is not None and not (Path(waves).parent.is_dir()
                                  and os.access(Path(waves).parent, os.W_OK)):
        raise InputError(f"cannot write the waveform {waves}: its folder does not exist or is "
                         "not writable; pass --waves in a writable folder")
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    run_model = dataclasses.replace(model, num_hidden_layers=layers, vocab_size=BENCH_VOCAB)
    max_context = settings["max_context"]
    if prompt_len + decode_tokens > max_context:
        raise InputError(f"{prompt_len} + {decode_tokens} tokens exceed the top's KV cache of "
                         f"{max_context}; lower --prompt-len or --decode-tokens")
    max_job_n = settings["max_job_n"]
    if max_job_n == "bram":
        max_job_n = bram_max_job_n(accel, run_model)
    clock_mhz = float(settings["clock_mhz"])
    say = progress or (lambda text: None)
    weights = random_weights(run_model, layers=layers, seed=seed)
    say(f"building the top ({accel.group_size},{accel.tables_per_step},"
        f"{accel.cols_per_cycle}) {accel.table_memory}, {layers} layer(s) of "
        f"hidden {model.hidden_size}")
    backend = RTLBackend(weights, config=accel, max_tokens=settings["max_tokens"],
                         max_context=max_context, max_job_n=max_job_n,
                         attention_tile=settings["attention_tile"], ddr=ddr,
                         clock_mhz=clock_mhz, build_dir=build_dir, waves=waves)
    golden = GoldenModel(weights, accel)
    timing = TopTiming.for_ddr(accel, backend.ddr, backend.gates)
    rng = np.random.default_rng(seed + 1)
    tokens = rng.integers(0, BENCH_VOCAB, size=prompt_len + decode_tokens)
    exact = True
    start = time.perf_counter()
    try:
        say(f"prefill of {prompt_len} tokens")
        exact &= bool(np.array_equal(backend.hidden(tokens[:prompt_len], "prefill"),
                                     golden.forward(tokens[:prompt_len])))
        for i in range(decode_tokens):
            say(f"decode step {i + 1} of {decode_tokens}")
            token = tokens[prompt_len + i:prompt_len + i + 1]
            exact &= bool(np.array_equal(backend.hidden(token, "decode"),
                                         golden.forward(token)))
    finally:
        backend.close()
    wall = time.perf_counter() - start

    passes = []
    layout = backend.layout
    kv = layout.k_cache + layout.v_cache
    kv_range = (min(kv), max(kv) + layout.head_stride * run_model.num_key_value_heads)
    for c in backend.cycle_log:
        program = layout.program(c.tokens, c.position)
        model_cycles = program_cycles(program, timing)
        passes.append({"kind": c.kind, "tokens": c.tokens, "position": c.position,
                       "rtl_cycles": c.cycles, "model_cycles": model_cycles,
                       "projected_cycles": project_cycles(program, c.cycles, timing,
                                                          layers_run=layers,
                                                          layers=full_layers),
                       "ddr_bytes": 16 * (c.counters["read_beats"] + c.counters["write_beats"]),
                       "model_ddr_bytes": sum(program_traffic(program, *kv_range).values()),
                       "sim_cycles": c.sim_cycles, "wall_s": round(c.wall_s, 3),
                       "cpu_s": round(c.cpu_s, 3)})
    hz = clock_mhz * 1e6
    prefill = [p for p in passes if p["kind"] == "prefill"]
    decode = [p for p in passes if p["kind"] == "decode"][0]
    prefill_s = sum(p["projected_cycles"] for p in prefill) / hz
    decode_s = decode["projected_cycles"] / hz
    say("the exact cycle model at contexts 512 and 1024, and the decode step's energy")
    from ..sim.rtl_top import RtlSystem

    system = RtlSystem(model, accel, None, settings=settings, ddr=ddr)
    by_context = {str(c): 1 / system.decode_step(c).seconds
                  for c in (512, 1024) if c <= max_context}
    step = system.decode_step(prompt_len + 1)
    sim_cycles = sum(p["sim_cycles"] for p in passes)
    sim_cpu = sum(c.cpu_s for c in backend.cycle_log)
    return {
        "bit_exact": exact,
        "rtl_cycles": sum(p["rtl_cycles"] for p in passes),
        "model_cycles": sum(p["model_cycles"] for p in passes),
        "cycle_exact": all(p["rtl_cycles"] == p["model_cycles"] for p in passes),
        "projected_cycles": sum(p["projected_cycles"] for p in passes),
        "decode_tok_s": 1 / (decode_s + host_seconds(accel, model)),
        "ttft_s": prefill_s + host_seconds(accel, model, passes=len(prefill)),
        "prefill_tok_s": prompt_len / prefill_s,
        "ddr_gbps": decode["ddr_bytes"] / (decode["rtl_cycles"] / hz) / 1e9,
        "host_s": host_seconds(accel, model),
        "traffic_exact": all(p["ddr_bytes"] == p["model_ddr_bytes"] for p in passes),
        "model_decode_tok_s_by_context": by_context,
        "model_decode_energy_j": step.energy_j,
        "clock_mhz": clock_mhz, "ddr": ddr, "board": board,
        "config": {"geometry": [accel.group_size, accel.tables_per_step, accel.cols_per_cycle],
                   "table_memory": accel.table_memory,
                   "fill_entries_per_cycle": accel.fill_entries_per_cycle,
                   "max_tokens": settings["max_tokens"],
                   "max_context": max_context, "max_job_n": max_job_n,
                   "attention_tile": settings["attention_tile"]},
        "ddr_timing": dataclasses.asdict(backend.ddr),
        "model": {"hidden_size": model.hidden_size,
                  "intermediate_size": model.intermediate_size,
                  "num_attention_heads": model.num_attention_heads,
                  "num_key_value_heads": model.num_key_value_heads,
                  "head_dim": model.head_dim, "layers": full_layers,
                  "vocab_size": model.vocab_size},
        "layers_run": layers, "prompt_len": prompt_len, "decode_tokens": decode_tokens,
        "sim_cycles": sim_cycles, "sim_wall_s": round(wall, 2),
        "sim_cycles_per_s": round(sim_cycles / wall),
        "sim_cycles_per_cpu_s": round(sim_cycles / sim_cpu),
        "passes": passes,
    }


def register(commands) -> argparse.ArgumentParser:
    """Add ``rtl-bench`` to ``commands`` (from ``ArgumentParser.add_subparsers``)."""
    from ..sim import presets

    bench_cmd = commands.add_parser(
        "rtl-bench", help="measure the accelerator RTL at board size (Verilator harness)",
        description=__doc__.splitlines()[0])
    bench_cmd.add_argument("--model", required=True,
                           help=f"preset ({', '.join(presets.MODELS)}) or an HF config.json")
    bench_cmd.add_argument("--layers", type=argtypes.integer("--layers", 1, 4096), default=None,
                           help="decoder layers to run (default: all of the model's)")
    bench_cmd.add_argument("--board", required=True, help="kv260 or ulx3s-85f")
    bench_cmd.add_argument("--config", metavar="FILE",
                           help=f"JSON overriding the board's accelerator defaults "
                                f"({', '.join(CONFIG_KEYS)})")
    bench_cmd.add_argument("--ddr", default="kv260", choices=["kv260", "ideal"],
                           help="DDR timing profile (golden/ddr.py)")
    bench_cmd.add_argument("--prompt-len", type=argtypes.integer("--prompt-len", 1, 65535),
                           default=16, help="prompt tokens (default 16)")
    bench_cmd.add_argument("--decode-tokens", default=2, help="decode steps (default 2)",
                           type=argtypes.integer("--decode-tokens", 1, 65535))
    bench_cmd.add_argument("--seed", type=argtypes.integer("--seed", 0, (1 << 32) - 1),
                           default=0)
    bench_cmd.add_argument("--waves", metavar="FILE.fst",
                           help="write an FST waveform of the whole run (a separate build)")
    bench_cmd.add_argument("--json", action="store_true", help="print one JSON object instead")
    bench_cmd.set_defaults(run=run)
    return bench_cmd


def run(args) -> int:
    from ..sim import presets

    model = presets.load_model(args.model)
    layers = model.num_hidden_layers if args.layers is None else args.layers

    def say(text):
        print(f"[rtl-bench] {text}", file=sys.stderr, flush=True)

    report = bench(model, layers=layers, board=args.board, ddr=args.ddr,
                   prompt_len=args.prompt_len, decode_tokens=args.decode_tokens,
                   config_file=args.config, seed=args.seed, waves=args.waves, progress=say)
    if args.json:
        print(json.dumps(report))
    else:
        print(_table(report))
    return 0 if report["bit_exact"] and report["cycle_exact"] else 1


def _table(r) -> str:
    g = r["config"]["geometry"]
    lines = [
        f"the RTL as built: ({g[0]},{g[1]},{g[2]}) {r['config']['table_memory']} on "
        f"{r['board']} at {r['clock_mhz']:g} MHz, DDR {r['ddr']}; {r['layers_run']} of "
        f"{r['model']['layers']} layers run, projected to all of them",
        f"  bit-exact to golden: {r['bit_exact']}; cycles equal to sim.accelerator: "
        f"{r['cycle_exact']}",
        f"  {'pass':8} {'tokens':>6} {'at':>5} {'RTL cycles':>13} {'model':>13} "
        f"{'projected':>14}",
    ]
    for p in r["passes"]:
        lines.append(f"  {p['kind']:8} {p['tokens']:6d} {p['position']:5d} "
                     f"{p['rtl_cycles']:13,} {p['model_cycles']:13,} "
                     f"{p['projected_cycles']:14,}")
    lines += [
        f"  decode at context {r['prompt_len']}: {r['decode_tok_s']:.2f} tokens/s "
        f"(the host's LM head and work {r['host_s'] * 1e3:.1f} ms of it, modeled)",
        f"  TTFT({r['prompt_len']}): {r['ttft_s']:.3f} s; prefill {r['prefill_tok_s']:.1f} "
        f"tokens/s",
        f"  DDR used in decode: {r['ddr_gbps']:.2f} GB/s",
        "  exact cycle model: decode " + ", ".join(
            f"{v:.2f} tokens/s at context {c}"
            for c, v in r["model_decode_tok_s_by_context"].items())
        + f"; {r['model_decode_energy_j'] * 1e3:.0f} mJ per decode token (sim.power)",
        f"  harness: {r['sim_cycles']:,} cycles in {r['sim_wall_s']:.1f} s "
        f"({r['sim_cycles_per_s']:,} cycles/s of wall time, {r['sim_cycles_per_cpu_s']:,} per "
        f"CPU second)",
    ]
    return "\n".join(lines)
