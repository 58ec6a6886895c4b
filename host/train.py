# SPDX-License-Identifier: BSD-3-Clause
"""Seeded, reproducible QAT training of the project's shipped tiny model (``tiny-kjv``).

A byte-level (vocab 256, token id = UTF-8 byte, no special tokens) BitNet b1.58 decoder in the
HF ``BitNetForCausalLM`` architecture, trained quantization-aware (ternary weights and INT8
activations through straight-through estimators from step 0) on the King James Bible from
Debian's ``bible-kjv`` package::

    apt-get install bible-kjv
    TORCHDYNAMO_DISABLE=1 python -m ternedge.host.train --out host/models/tiny-kjv

The text is ``bible "gen1:1-rev22:21"``, lightly cleaned (:func:`clean_kjv`). The last 5% (in
canonical book order) is held out; its first 16 KB is written to ``host/data/kjv_heldout.txt``.
At the end the script reports held-out bits per byte of the quantized model, writes
``train_log.json`` and the pre-quantized checkpoint (``config.json`` + ``model.safetensors``,
through :func:`ternedge.host.checkpoint.save_checkpoint`) to ``--out``, and the float
(QAT master) weights in HF naming to ``--float-out``.

``--export-from DIR`` skips training and only writes the pre-quantized checkpoint from a float
checkpoint written earlier by this script.
"""

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..golden.config import ModelConfig
from .checkpoint import save_checkpoint
from .torch_ref import BitNetTorch, to_model_weights

__all__ = ["TINY_KJV_CONFIG", "load_kjv", "clean_kjv", "split_corpus", "bits_per_byte",
           "float_state_dict", "load_float_checkpoint", "greedy_sample", "train", "main"]

#: architecture of the shipped tiny model
TINY_KJV_CONFIG = ModelConfig(
    vocab_size=256, hidden_size=256, intermediate_size=640, num_hidden_layers=5,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    hidden_act="relu2", rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
    family="bitnet")

BIBLE = "/usr/bin/bible"
HELDOUT_FRACTION = 0.05
HELDOUT_FILE_BYTES = 16 * 1024
_REPO = Path(__file__).resolve().parent.parent

_VERSE = re.compile(r"^\s+(\d+)\s+(.*)$")
_HEADING = re.compile(r"^(?:[1-3] )?[A-Z][A-Za-z ]+ \d+$")


def load_kjv() -> str:
    """The raw KJV text, as ``bible "gen1:1-rev22:21"`` prints it.

    Raises
    ------
    SystemExit
        When Debian's ``bible-kjv`` package is not installed.
    """
    exe = BIBLE if os.path.exists(BIBLE) else shutil.which("bible")
    if not exe:
        raise SystemExit(f"{BIBLE} not found: the training corpus comes from Debian's "
                         "bible-kjv package; run `apt-get install bible-kjv`")
    return subprocess.run([exe, "gen1:1-rev22:21"], check=True, capture_output=True,
                          text=True, encoding="utf-8").stdout


def clean_kjv(raw: str) -> str:
    """Light cleaning into English prose.

    Verse numbers and indentation are dropped, each verse becomes one line (wrapped lines
    joined, whitespace collapsed), and chapter headings (``Genesis 1``) are kept on their own
    line after a blank line.
    """
    out, verse = [], None

    def flush():
        nonlocal verse
        if verse is not None:
            out.append(" ".join(" ".join(verse).split()))
            verse = None

    for line in raw.splitlines():
        if not line.strip():
            continue
        m = _VERSE.match(line)
        if m:
            flush()
            verse = [m.group(2)]
        elif _HEADING.match(line):
            flush()
            if out:
                out.append("")
            out.append(line.strip())
        elif verse is not None:
            verse.append(line.strip())
        else:
            out.append(line.strip())
    flush()
    return "\n".join(out) + "\n"


def split_corpus(data: bytes, fraction: float = HELDOUT_FRACTION):
    """Chronological split: the last ``fraction`` of the bytes (from a line start) is held out.

    Returns
    -------
    (bytes, bytes)
        Training and held-out bytes.
    """
    cut = data.index(b"\n", int(len(data) * (1.0 - fraction))) + 1
    return data[:cut], data[cut:]


def _heldout_excerpt(held: bytes, limit: int = HELDOUT_FILE_BYTES) -> bytes:
    part = held[:limit]
    return part[:part.rindex(b"\n") + 1]


@torch.no_grad()
def bits_per_byte(model: BitNetTorch, data: bytes, seq_len: int = 256, batch: int = 32) -> float:
    """Mean bits per byte of ``data`` under ``model`` (non-overlapping windows of ``seq_len``).

    Each window predicts ``seq_len`` bytes from the byte before it and its own prefix; the first
    byte of ``data`` is never predicted.
    """
    ids = torch.tensor(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    model.eval()
    total, count = 0.0, 0
    windows = [ids[s:s + seq_len + 1] for s in range(0, len(ids) - 1, seq_len)]
    full = [w for w in windows if len(w) == seq_len + 1]
    groups = [full[i:i + batch] for i in range(0, len(full), batch)]
    groups += [[w] for w in windows if len(w) != seq_len + 1]  # the ragged tail
    for group in groups:
        x = torch.stack(group).to(model.device)
        logits = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += x[:, 1:].numel()
    return total / count / math.log(2.0)


def float_state_dict(model: BitNetTorch) -> dict:
    """The float (QAT master) weights in HF ``BitNetForCausalLM`` naming (``model.*``)."""
    out = {}
    for name, p in model.named_parameters():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        key = name if name.startswith("lm_head.") else "model." + name
        out[key] = p.detach().to("cpu", torch.float32).contiguous()
    return out


def _hf_config(cfg: ModelConfig) -> dict:
    d = cfg.to_dict()
    family = d.pop("family")
    d.update(model_type="bitnet", architectures=["BitNetForCausalLM"], torch_dtype="float32",
             head_dim=cfg.head_dim, attention_bias=False, attention_dropout=0.0,
             ternedge_family=family)
    return d


def _save_float(path: Path, model: BitNetTorch) -> None:
    from safetensors.torch import save_file
    path.mkdir(parents=True, exist_ok=True)
    save_file(float_state_dict(model), str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(_hf_config(model.config), indent=2) + "\n")


def load_float_checkpoint(path, device="cpu") -> BitNetTorch:
    """A QAT-mode :class:`BitNetTorch` from a float checkpoint written by this script."""
    from safetensors.torch import load_file
    path = Path(path)
    cfg_dict = json.loads((path / "config.json").read_text())
    fields = set(ModelConfig.__dataclass_fields__)
    cfg = ModelConfig(**{k: v for k, v in cfg_dict.items() if k in fields},
                      family=cfg_dict.get("ternedge_family", "bitnet"))
    model = BitNetTorch(cfg, device="cpu")
    sd = {(k if k.startswith("lm_head.") else k[len("model."):]): v
          for k, v in load_file(str(path / "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and cfg.tie_word_embeddings)
               and not m.endswith("weight_scale")]
    if missing or unexpected:
        raise ValueError(f"float checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    return model.to(device)


@torch.no_grad()
def greedy_sample(model: BitNetTorch, prompt: str, n_bytes: int = 200) -> str:
    """Greedy byte-level continuation of ``prompt`` with the KV-cached decode path."""
    model.eval()
    model.reset()
    ids = list(prompt.encode("utf-8"))
    logits = model.prefill(ids)[-1]
    out = []
    for _ in range(n_bytes):
        if len(ids) + len(out) >= model.config.max_position_embeddings:
            break
        tok = int(torch.argmax(logits))
        out.append(tok)
        logits = model.decode(tok)
    model.reset()
    return bytes(out).decode("utf-8", errors="replace")



def train(args) -> dict:
    """Run the whole recipe; returns the training log dictionary."""
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    text = clean_kjv(load_kjv())
    data = text.encode("utf-8")
    train_b, held_b = split_corpus(data)
    heldout_path = Path(args.heldout_file)
    heldout_path.parent.mkdir(parents=True, exist_ok=True)
    heldout_path.write_bytes(_heldout_excerpt(held_b))
    print(f"corpus: {len(data):,} bytes; train {len(train_b):,}, held-out {len(held_b):,} "
          f"(excerpt -> {heldout_path})", flush=True)

    train_ids = torch.tensor(np.frombuffer(train_b, dtype=np.uint8).astype(np.int64))
    cfg = TINY_KJV_CONFIG
    model = BitNetTorch(cfg, device=args.device)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio)
                          * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(args.seed)
    n_start = len(train_ids) - args.seq_len - 1
    model.train()
    losses = []
    bar = tqdm(range(args.steps), desc="QAT", mininterval=10, file=sys.stderr)
    stopped_early = None
    for step in bar:
        if args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes:
            stopped_early = step
            print(f"\nstopping early at step {step} (--max-minutes {args.max_minutes})",
                  flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, n_start, (args.batch,), generator=gen)
        x = torch.stack([train_ids[s:s + args.seq_len + 1] for s in starts.tolist()])
        x = x.to(model.device)
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == args.steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{lr_at(step):.2e}")
    bar.close()
    train_wall = time.time() - t0

    model.eval()
    qmodel = BitNetTorch.from_weights(to_model_weights(model), device=model.device)
    bpb = bits_per_byte(qmodel, held_b, seq_len=args.seq_len)
    bpb_excerpt = bits_per_byte(qmodel, _heldout_excerpt(held_b), seq_len=args.seq_len)
    sample = greedy_sample(qmodel, args.prompt, 200)
    print(f"held-out bits/byte (quantized model): {bpb:.4f} (whole held-out split), "
          f"{bpb_excerpt:.4f} ({heldout_path.name})", flush=True)
    print(f"greedy sample: {args.prompt!r} -> {sample!r}", flush=True)

    _save_float(Path(args.float_out), model)
    out = Path(args.out)
    save_checkpoint(out, to_model_weights(model), prequantized=True, overwrite=True)
    log = {
        "command": "TORCHDYNAMO_DISABLE=1 python -m ternedge.host.train "
                   + " ".join(shlex.quote(a) for a in args.argv),
        "seed": args.seed, "steps": args.steps, "steps_done": len(losses),
        "stopped_early_at": stopped_early, "batch": args.batch, "seq_len": args.seq_len,
        "lr": args.lr, "warmup": args.warmup, "min_lr_ratio": args.min_lr_ratio,
        "weight_decay": args.weight_decay, "threads": args.threads,
        "config": cfg.to_dict(),
        "corpus": {"source": 'bible "gen1:1-rev22:21" (Debian bible-kjv), clean_kjv',
                   "bytes": len(data), "train_bytes": len(train_b),
                   "heldout_bytes": len(held_b)},
        "final_train_loss_nats": float(np.mean(losses[-50:])),
        "final_train_bpb": float(np.mean(losses[-50:]) / math.log(2.0)),
        "heldout_bpb": bpb, "heldout_excerpt_bpb": bpb_excerpt,
        "train_wall_s": round(train_wall, 1), "wall_s": round(time.time() - t0, 1),
        "torch": torch.__version__, "device": str(model.device),
        "sample_prompt": args.prompt, "sample_greedy": sample,
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ternedge.host.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(_REPO / "host" / "models" / "tiny-kjv"),
                   help="pre-quantized checkpoint + train_log.json (default %(default)s)")
    p.add_argument("--float-out", default="/tmp/tiny-kjv-float",
                   help="float QAT weights in HF naming (default %(default)s)")
    p.add_argument("--heldout-file", default=str(_REPO / "host" / "data" / "kjv_heldout.txt"))
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared 2-core machine 2 threads ran "
                        "3-6x slower than 1 under load)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="safety stop: end training early (logged) after this many minutes")
    p.add_argument("--device", default="cpu",
                   help="training device (default cpu, for bit-reproducibility)")
    p.add_argument("--prompt", default="And the LORD said unto Moses, ")
    p.add_argument("--export-from", metavar="DIR",
                   help="only write the pre-quantized checkpoint from a float checkpoint")
    return p


def main(argv=None) -> int:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    if args.export_from:
        model = load_float_checkpoint(args.export_from)
        save_checkpoint(Path(args.out), to_model_weights(model), prequantized=True,
                        overwrite=True)
        print(f"wrote {args.out}")
        return 0
    log = train(args)
    print(json.dumps({k: log[k] for k in ("steps", "heldout_bpb", "final_train_loss_nats",
                                          "wall_s")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
