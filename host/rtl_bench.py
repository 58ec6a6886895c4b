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
- their projection to the whole model: per pass, the final norm once plus the per-layer
  cycles (measured, averaged over the layers run) times the model's layers; plus the LM head
  on the host as TeLLMe runs it (FP16 on the ARM, ``sim.constants.ARM_LM_HEAD_BYTES_PER_S``),
  once per generated token;
- decode tokens/s at context P (the first decode step), TTFT (the prefill plus one LM head),
  prefill tokens/s, and the DDR bandwidth the top used during that decode step.

Every number is the RTL as built (measured, or projected from measurements as described);
nothing here is a design target.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..golden import isa
from ..golden.config import AcceleratorConfig, ModelConfig
from ..golden.model import GoldenModel
from ..golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear
from . import argtypes
from .errors import InputError

__all__ = ["register", "run", "random_weights", "board_settings", "accelerator_config",
           "project_cycles", "bench"]

#: vocabulary of the random model: the top never sees the LM head, the host runs it
BENCH_VOCAB = 256
#: fields ``--config`` may set (``boards.build.ACCELERATOR_DEFAULTS`` keys)
CONFIG_KEYS = ("geometry", "table_memory", "fill_entries_per_cycle", "max_tokens",
               "max_context", "max_job_n", "attention_tile", "clock_mhz")
#: the KV260 fabric clock every modeled number assumes (the board has no Fmax measurement)
KV260_CLOCK_MHZ = 250.0


def random_weights(config: ModelConfig, *, layers: int, seed: int = 0) -> ModelWeights:
    """Seeded random ternary weights of ``config``'s shapes (``layers`` decoder layers): about
    a third of each of -1, 0, +1, absmean scales of ``1 / sqrt(in_features)`` (unit-variance
    outputs), norms near 1, N(0, 1) embeddings."""
    rng = np.random.default_rng(seed)
    hd = config.head_dim
    shapes = {"q_proj": (config.num_attention_heads * hd, config.hidden_size),
              "k_proj": (config.num_key_value_heads * hd, config.hidden_size),
              "v_proj": (config.num_key_value_heads * hd, config.hidden_size),
              "o_proj": (config.hidden_size, config.num_attention_heads * hd),
              "gate_proj": (config.intermediate_size, config.hidden_size),
              "up_proj": (config.intermediate_size, config.hidden_size),
              "down_proj": (config.hidden_size, config.intermediate_size)}
    norm_sizes = {"input_layernorm": config.hidden_size,
                  "post_attention_layernorm": config.hidden_size,
                  "attn_sub_norm": config.num_attention_heads * hd,
                  "ffn_sub_norm": config.intermediate_size}

    def norm(size):
        return (1 + 0.1 * rng.standard_normal(size)).astype(np.float32)

    out = []
    for _ in range(layers):
        linears = {name: TernaryLinear(
            ternary=rng.integers(-1, 2, size=shapes[name], dtype=np.int8),
            scale=float(1.5 / math.sqrt(shapes[name][1]))) for name in LINEAR_NAMES}
        out.append(LayerWeights(**{name: norm(size) for name, size in norm_sizes.items()},
                                **linears))
    embed = rng.standard_normal((config.vocab_size, config.hidden_size)).astype(np.float32)
    return ModelWeights(config=config, embed_tokens=embed, lm_head=embed,
                        norm=norm(config.hidden_size), layers=tuple(out))


def board_settings(board: str, config_file) -> dict:
    """The board's default accelerator configuration (``ACCELERATOR_DEFAULTS``, the clock
    defaulting to 250 MHz), with ``config_file``'s JSON overrides."""
    from ..boards.build import ACCELERATOR_DEFAULTS

    if board not in ACCELERATOR_DEFAULTS:
        raise InputError(f"unknown board {board!r}; choose one of "
                         f"{', '.join(ACCELERATOR_DEFAULTS)}")
    settings = dict(ACCELERATOR_DEFAULTS[board])
    settings.setdefault("clock_mhz", KV260_CLOCK_MHZ)
    if settings["clock_mhz"] is None:
        settings["clock_mhz"] = KV260_CLOCK_MHZ
    if config_file:
        path = Path(config_file)
        try:
            extra = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read --config {path}: {exc}; pass a JSON object of "
                             f"{', '.join(CONFIG_KEYS)}") from None
        if not isinstance(extra, dict) or set(extra) - set(CONFIG_KEYS):
            raise InputError(f"--config {path} may only set {', '.join(CONFIG_KEYS)}")
        settings.update(extra)
    return settings


def accelerator_config(settings) -> AcceleratorConfig:
    """The ``AcceleratorConfig`` of ``board_settings``' geometry, table memory and weight
    ports (``fill_entries_per_cycle``)."""
    try:
        g, t, n = (int(v) for v in settings["geometry"])
        config = AcceleratorConfig(group_size=g, tables_per_step=t, cols_per_cycle=n,
                                   table_memory=settings.get("table_memory", "registers"))
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad accelerator geometry {settings['geometry']!r}: {exc}") from None
    ports = settings.get("fill_entries_per_cycle", 1)
    if isinstance(ports, bool) or ports not in isa.WEIGHT_PORTS or n % ports:
        raise InputError(f"fill_entries_per_cycle (the weight ports) must be one of "
                         f"{', '.join(map(str, isa.WEIGHT_PORTS))} and divide N={n}, got "
                         f"{ports!r}")
    return dataclasses.replace(config, fill_entries_per_cycle=ports)


def project_cycles(program, cycles: int, timing, *, layers_run: int, layers: int) -> int:
    """A pass of ``layers_run`` layers that took ``cycles``, projected to ``layers``: the
    final norm once (its model cycles run alone) plus the rest, per layer, times ``layers``."""
    from ..sim.accelerator import program_cycles

    tail = program_cycles(program[-1:], timing)
    return round(tail + (cycles - tail) / layers_run * layers)


def bench(model: ModelConfig, *, layers: int, board: str, ddr: str = "kv260",
          prompt_len: int = 16, decode_tokens: int = 2, config_file=None, seed: int = 0,
          build_dir=None, waves=None, progress=None) -> dict:
    """Run the benchmark; the report as a dict (see the module docstring)."""
    from ..boards.build import _BRAM_BANK_WORDS, _bank_words_max_job_n
    from ..sim.accelerator import TopTiming, program_cycles
    from ..sim.constants import ARM_LM_HEAD_BYTES_PER_S
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
        max_job_n = _bank_words_max_job_n(accel, run_model, _BRAM_BANK_WORDS)
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
    timing = TopTiming.for_ddr(accel, backend.ddr)
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
    for c in backend.cycle_log:
        program = backend.layout.program(c.tokens, c.position)
        model_cycles = program_cycles(program, timing)
        passes.append({"kind": c.kind, "tokens": c.tokens, "position": c.position,
                       "rtl_cycles": c.cycles, "model_cycles": model_cycles,
                       "projected_cycles": project_cycles(program, c.cycles, timing,
                                                          layers_run=layers,
                                                          layers=full_layers),
                       "ddr_bytes": 16 * (c.counters["read_beats"] + c.counters["write_beats"]),
                       "sim_cycles": c.sim_cycles, "wall_s": round(c.wall_s, 3),
                       "cpu_s": round(c.cpu_s, 3)})
    hz = clock_mhz * 1e6
    lm_head_s = model.vocab_size * model.hidden_size * 2 / ARM_LM_HEAD_BYTES_PER_S
    prefill = [p for p in passes if p["kind"] == "prefill"]
    decode = [p for p in passes if p["kind"] == "decode"][0]
    prefill_s = sum(p["projected_cycles"] for p in prefill) / hz
    decode_s = decode["projected_cycles"] / hz
    sim_cycles = sum(p["sim_cycles"] for p in passes)
    sim_cpu = sum(c.cpu_s for c in backend.cycle_log)
    return {
        "bit_exact": exact,
        "rtl_cycles": sum(p["rtl_cycles"] for p in passes),
        "model_cycles": sum(p["model_cycles"] for p in passes),
        "cycle_exact": all(p["rtl_cycles"] == p["model_cycles"] for p in passes),
        "projected_cycles": sum(p["projected_cycles"] for p in passes),
        "decode_tok_s": 1 / (decode_s + lm_head_s),
        "ttft_s": prefill_s + lm_head_s,
        "prefill_tok_s": prompt_len / prefill_s,
        "ddr_gbps": decode["ddr_bytes"] / (decode["rtl_cycles"] / hz) / 1e9,
        "lm_head_s": lm_head_s,
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
        f"(LM head on the host {r['lm_head_s'] * 1e3:.1f} ms of it)",
        f"  TTFT({r['prompt_len']}): {r['ttft_s']:.3f} s; prefill {r['prefill_tok_s']:.1f} "
        f"tokens/s",
        f"  DDR used in decode: {r['ddr_gbps']:.2f} GB/s",
        f"  harness: {r['sim_cycles']:,} cycles in {r['sim_wall_s']:.1f} s "
        f"({r['sim_cycles_per_s']:,} cycles/s of wall time, {r['sim_cycles_per_cpu_s']:,} per "
        f"CPU second)",
    ]
    return "\n".join(lines)
