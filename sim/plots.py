# SPDX-License-Identifier: BSD-3-Clause
"""Plots of a simulation (matplotlib, Agg backend). Every figure is labelled *modeled*."""

from pathlib import Path

from .system import BLOCKS, System, roofline

__all__ = ["write_all", "decode_timeline", "roofline_plot", "sweep_lengths", "breakdown_bars",
           "speculative_plot"]

_COLORS = {"host": "#7f7f7f", "norm": "#bcbd22", "tlmm": "#1f77b4", "weight_dma": "#d62728",
           "attention": "#2ca02c", "elementwise": "#9467bd", "lm_head": "#ff7f0e"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decode_timeline(system: System, context: int, path: Path) -> Path:
    """Stacked bar per layer of one decode step: time in each block."""
    plt = _pyplot()
    step = system.decode_step(context, record=True)
    fig, ax = plt.subplots(figsize=(10, 4))
    layers = range(len(step.per_layer))
    bottom = [0.0] * len(step.per_layer)
    for block in BLOCKS:
        values = [layer[block] * 1e3 for layer in step.per_layer]
        ax.bar(layers, values, bottom=bottom, label=block, color=_COLORS[block])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("ms")
    ax.set_title(f"One decode step at context {context}: {step.seconds * 1e3:.2f} ms (modeled)")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roofline_plot(system: System, contexts, path: Path) -> Path:
    """Decode tokens/s against context, beside the DDR roofline (peak and sustained)."""
    plt = _pyplot()
    curve = system.decode_curve(contexts)
    roofs = [roofline(system, ctx) for ctx in contexts]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(contexts, [r["peak_tok_s"] for r in roofs], "k--",
            label=f"DDR roofline at {system.config.ddr_peak_gbps} GB/s peak")
    ax.plot(contexts, [r["sustained_tok_s"] for r in roofs], "k:",
            label=f"at sustained {system.dma.bytes_per_s / 1e9:.1f} GB/s")
    ax.plot(contexts, [v for _, v in curve], "o-", label="simulated decode")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("decode tokens/s")
    ax.set_title("Decode vs DDR roofline (modeled)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_lengths(system: System, prompts, contexts, path: Path) -> Path:
    """TTFT and prefill tokens/s against prompt length; decode tokens/s against context."""
    plt = _pyplot()
    ttft = [system.prefill(p).seconds for p in prompts]
    curve = system.decode_curve(contexts)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(prompts, ttft, "o-")
    axes[0].set(xlabel="prompt tokens", ylabel="TTFT (s)", title="TTFT (modeled)")
    axes[1].plot(prompts, [p / t for p, t in zip(prompts, ttft, strict=True)], "o-")
    axes[1].set(xlabel="prompt tokens", ylabel="tokens/s", title="Prefill (modeled)")
    axes[2].plot([c for c, _ in curve], [v for _, v in curve], "o-")
    axes[2].set(xlabel="context tokens", ylabel="tokens/s", title="Decode (modeled)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def breakdown_bars(result, path: Path) -> Path:
    """Horizontal bars: prefill and one decode step, time per block."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    step = result.decode_steps[0]
    for ax, (title, fwd) in zip(axes, (("prefill", result.prefill),
                                       (f"decode step (context {step.context})", step)),
                                strict=True):
        values = [fwd.breakdown[b] * 1e3 for b in BLOCKS]
        ax.barh(BLOCKS, values, color=[_COLORS[b] for b in BLOCKS])
        ax.set_xlabel("ms")
        ax.set_title(f"{title}: {fwd.seconds * 1e3:.1f} ms (modeled)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def speculative_plot(system: System, context: int, path: Path, ks=(1, 2, 4, 8),
                     mark=None) -> Path:
    """Effective decode tokens/s by verification passes against the per-token acceptance
    rate, one curve per K (drafts per pass), at one context, beside one-token decode and the
    DDR roofline. ``mark``: an ``(acceptance, tokens/s, label)`` point to highlight."""
    from . import speculative

    plt = _pyplot()
    rates = [i / 20 for i in range(21)]
    decode = 1.0 / system.decode_step(context).seconds
    roof = roofline(system, context)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k in ks:
        seconds = speculative.pass_seconds(system, k + 1, context - 1)
        ax.plot(rates, [speculative.expected_tokens_per_pass(k, a) / seconds for a in rates],
                "-", label=f"K = {k} ({seconds * 1e3:.1f} ms per pass)")
    ax.axhline(decode, color="k", lw=1, label=f"one-token decode {decode:.1f} tok/s")
    ax.axhline(roof["peak_tok_s"], color="k", ls="--", lw=1,
               label=f"one-token DDR roofline {roof['peak_tok_s']:.1f} tok/s (peak)")
    if mark is not None:
        ax.plot([mark[0]], [mark[1]], "ko")
        ax.annotate(mark[2], (mark[0], mark[1]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.set_xlabel("per-token acceptance rate")
    ax.set_ylabel("effective decode tokens/s")
    ax.set_title(f"Speculative decode at context {context} (modeled)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_all(system: System, result, directory) -> list:
    """All four figures into ``directory`` (created); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    capacity = system.kv_cache.capacity(system.model)
    contexts = sorted({c for c in (16, 64, 128, 256, 512, 1024, 2048, 4096) if c <= capacity}
                      | {capacity})
    prompts = [p for p in (8, 16, 32, 64, 128, 256, 512) if p < capacity]
    context = result.prompt_len + 1
    return [
        decode_timeline(system, context, out / "decode_timeline.png"),
        roofline_plot(system, contexts, out / "roofline.png"),
        sweep_lengths(system, prompts, contexts, out / "lengths.png"),
        breakdown_bars(result, out / "breakdown.png"),
    ]
