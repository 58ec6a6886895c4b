# SPDX-License-Identifier: BSD-3-Clause
"""Golden's numerics against the float torch reference, per layer and per op.

``ternedge numerics --model DIR`` runs the same tokens through two traces and compares every
intermediate tensor:

* ``golden_trace`` composes the golden op functions (``golden.ops``, ``golden.quant``,
  ``golden.tlmm``, ``golden.attention``) layer by layer exactly as ``golden.model.GoldenModel``
  runs them, keeping each op's output; its final hidden state equals ``GoldenModel.forward``
  bit for bit (``tests/test_numerics.py``).
* ``float_trace`` composes the modules of ``host.torch_ref.BitNetTorch`` (float32, HF BitNet
  math) the same way; its logits equal ``BitNetTorch``'s bit for bit.

Both are teacher-forced on the same token ids, so each op's error is the error accumulated up
to that op (what the accelerator's output would show). Errors are absolute and relative to the
float tensor's RMS; the logits also get top-1 agreement, the KL divergence of golden's
next-token distribution from the float one, and the max error relative to the float logits'
range (``max - min`` over all positions and tokens).

The accelerator's optional formats (``golden.formats``: a narrower KV cache, an on-fabric
INT8/INT4 LM head) are reported as logit metrics of the golden trace run with each format.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden import attention, fixed, formats, ops, quant, scaling, tlmm
from ..golden.model import EngineLinear
from ..golden.weights import ModelWeights
from .errors import InputError

__all__ = ["OPS", "Trace", "golden_trace", "float_trace", "local_reference", "compare",
           "logit_metrics", "numerics_report", "format_table", "plot_report", "register"]

#: per-layer ops in dataflow order; the final state adds ("final", "final_norm"), "logits"
OPS = ("input_norm", "attn_act", "q_proj", "k_proj", "v_proj", "rope_q", "rope_k", "scores",
       "probs", "attn_out", "attn_sub_norm", "o_act", "o_proj", "attn_residual", "post_norm",
       "mlp_act", "gate_proj", "up_proj", "gate", "ffn_sub_norm", "down_act", "down_proj",
       "residual")


@dataclass
class Trace:
    """Every tapped tensor of one forward pass, as float64 in real units.

    ``taps`` maps ``(layer, op)`` to an array (``layer`` an int, or ``"final"``); attention
    scores and probabilities are (T, heads, S) with ``visible`` marking the causal entries.
    ``hidden`` is the final norm's output (Q16 integers for golden), ``logits`` (T, V).
    """

    taps: dict = field(default_factory=dict)
    visible: np.ndarray | None = None
    hidden: np.ndarray | None = None
    logits: np.ndarray | None = None


def _activations_real(q, amax):
    return q.astype(np.float64) * (amax.astype(np.float64)[..., None] / 127.0) / fixed.ONE


def golden_trace(weights: ModelWeights, ids, *, kv_format=None, lm_head_format=None,
                 group_size: int = 3) -> Trace:
    """Golden forward of ``ids`` from position 0, composed op by op (see the module doc).

    Parameters
    ----------
    weights : ModelWeights
    ids : int array (T,)
    kv_format : ``golden.formats.KVFormat`` or None
        Round-trips keys and values through the cache format (None: int32 Q16, exact).
    lm_head_format : ``golden.formats.LMHeadFormat`` or None
        None: the host's float64 LM head (``golden.model.lm_head``).

    Runs the range-scaled model as ``GoldenModel`` does (``golden.scaling.rescale``); the taps
    are divided by their ``scaling.tap_factor``, so they are in the units of the unit-scale
    model. ``hidden`` is the final norm's Q16 output (the final norm is not rescaled).
    """
    weights = scaling.rescale(weights)
    cfg = weights.config
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    tokens, heads, kv_heads, head_dim = (ids.size, cfg.num_attention_heads,
                                         cfg.num_key_value_heads, cfg.head_dim)
    eps = ops.eps_q16(cfg.rms_norm_eps)
    cos, sin = ops.rope_tables(cfg.max_position_embeddings, head_dim, cfg.rope_theta)
    positions = np.arange(tokens)
    trace = Trace()

    def tap(layer, op, value):
        trace.taps[(layer, op)] = value

    def linear(layer_index, act_name, x, layers):
        flat = x.reshape(-1, x.shape[-1])
        q, amax = quant.quantize_activations(flat)
        tap(layer_index, act_name, _activations_real(q, amax))
        outs = []
        for name, tl in layers:
            engine = EngineLinear.from_ternary(tl, group_size)
            acc = tlmm.tlmm(q, engine.indices, engine.group_size)
            y = quant.dequantize(acc, amax, (engine.scale_m, engine.scale_e))
            tap(layer_index, name, fixed.from_q16(y))
            outs.append(y)
        return outs

    x = fixed.to_q16(weights.embed_tokens)[ids]
    for i, lw in enumerate(weights.layers):
        h = ops.rmsnorm(x, fixed.to_q16(lw.input_layernorm), eps)
        tap(i, "input_norm", fixed.from_q16(h))
        q, k, v = linear(i, "attn_act", h, [(n, getattr(lw, n))
                                            for n in ("q_proj", "k_proj", "v_proj")])
        q = ops.rope(q.reshape(tokens, heads, head_dim), positions, cos, sin)
        k = ops.rope(k.reshape(tokens, kv_heads, head_dim), positions, cos, sin)
        v = v.reshape(tokens, kv_heads, head_dim)
        tap(i, "rope_q", fixed.from_q16(q))
        tap(i, "rope_k", fixed.from_q16(k))
        if kv_format is not None:
            k, v = kv_format.roundtrip(k), kv_format.roundtrip(v)
        scores, visible = attention.attention_scores(q, k, positions)
        probs = attention.attention_weights(scores, visible)
        total = probs.sum(axis=-1)
        inv_m, inv_e = fixed.ratio_scale(np.full(total.shape, fixed.ONE), total)
        a = attention.attention_output(probs, v)
        trace.visible = visible
        tap(i, "scores", np.where(visible, fixed.from_q16(scores), 0.0))
        tap(i, "probs", fixed.from_q16(probs) * (inv_m * 2.0 ** -inv_e.astype(np.float64))[
            ..., None])
        tap(i, "attn_out", fixed.from_q16(a).reshape(tokens, -1))
        a = ops.rmsnorm(a.reshape(tokens, heads * head_dim), fixed.to_q16(lw.attn_sub_norm), eps)
        tap(i, "attn_sub_norm", fixed.from_q16(a))
        (o,) = linear(i, "o_act", a, [("o_proj", lw.o_proj)])
        x = ops.residual_add(x, o)
        tap(i, "attn_residual", fixed.from_q16(x))
        h = ops.rmsnorm(x, fixed.to_q16(lw.post_attention_layernorm), eps)
        tap(i, "post_norm", fixed.from_q16(h))
        gate, up = linear(i, "mlp_act", h, [("gate_proj", lw.gate_proj), ("up_proj", lw.up_proj)])
        gated = (ops.relu2_gate(gate, up) if cfg.hidden_act == "relu2"
                 else ops.silu_gate(gate, up))
        tap(i, "gate", fixed.from_q16(gated))
        m = ops.rmsnorm(gated, fixed.to_q16(lw.ffn_sub_norm), eps)
        tap(i, "ffn_sub_norm", fixed.from_q16(m))
        (down,) = linear(i, "down_act", m, [("down_proj", lw.down_proj)])
        x = ops.residual_add(x, down)
        tap(i, "residual", fixed.from_q16(x))
    trace.hidden = ops.rmsnorm(x, fixed.to_q16(weights.norm), eps)
    tap("final", "final_norm", fixed.from_q16(trace.hidden))
    if lm_head_format is None:
        trace.logits = fixed.from_q16(trace.hidden) @ np.asarray(weights.lm_head,
                                                                 dtype=np.float64).T
    else:
        trace.logits = lm_head_format.logits(trace.hidden, weights.lm_head)
    for (layer, op), value in trace.taps.items():
        trace.taps[(layer, op)] = value / scaling.tap_factor(op, weights.range_scales)
    return trace


def float_trace(weights: ModelWeights, ids, model=None) -> Trace:
    """The float32 torch reference's forward of ``ids``, composed from ``BitNetTorch``'s
    modules op by op; attention outputs come from SDPA as in ``BitNetTorch``, the scores and
    probabilities beside them from the explicit ``softmax(q k^T / sqrt(d))``.

    ``model`` (a ``BitNetTorch`` on the CPU) is built from ``weights`` when not given.
    """
    import torch
    import torch.nn.functional as F

    from .torch_ref import BitNetTorch, _rotate_half, activation_quant

    if model is None:
        model = BitNetTorch.from_weights(weights, device="cpu")
    cfg = weights.config
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64).reshape(1, -1), device=model.device)
    tokens = ids_t.shape[1]
    heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    trace = Trace()

    def np64(t):
        return t.detach().to("cpu", torch.float64).numpy()

    def tap(layer, op, value):
        trace.taps[(layer, op)] = np64(value)

    with torch.no_grad():
        pos = torch.arange(0, tokens, device=model.inv_freq.device).float()
        freqs = pos[:, None] * model.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        causal = torch.tril(torch.ones(tokens, tokens, dtype=torch.bool, device=model.device))
        x = model.embed_tokens(ids_t)
        for i, layer in enumerate(model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            h = layer.input_layernorm(x)
            tap(i, "input_norm", h[0])
            tap(i, "attn_act", activation_quant(h)[0])
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
            for name, t in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                tap(i, name, t[0])
            q = q.view(1, tokens, heads, head_dim).transpose(1, 2)
            k = k.view(1, tokens, kv_heads, head_dim).transpose(1, 2)
            v = v.view(1, tokens, kv_heads, head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            tap(i, "rope_q", q[0].transpose(0, 1))
            tap(i, "rope_k", k[0].transpose(0, 1))
            groups = heads // kv_heads
            if groups > 1:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
            scores = (q @ k.transpose(-1, -2)) * head_dim ** -0.5
            scores = scores.masked_fill(~causal, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            tap(i, "scores", scores.masked_fill(~causal, 0.0)[0].transpose(0, 1))
            tap(i, "probs", probs[0].transpose(0, 1))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out = out.transpose(1, 2).reshape(1, tokens, heads * head_dim)
            tap(i, "attn_out", out[0])
            a = attn.attn_sub_norm(out)
            tap(i, "attn_sub_norm", a[0])
            tap(i, "o_act", activation_quant(a)[0])
            o = attn.o_proj(a)
            tap(i, "o_proj", o[0])
            x = x + o
            tap(i, "attn_residual", x[0])
            h = layer.post_attention_layernorm(x)
            tap(i, "post_norm", h[0])
            tap(i, "mlp_act", activation_quant(h)[0])
            g, up = mlp.gate_proj(h), mlp.up_proj(h)
            tap(i, "gate_proj", g[0])
            tap(i, "up_proj", up[0])
            gated = (torch.square(F.relu(g)) if mlp.relu2 else F.silu(g)) * up
            tap(i, "gate", gated[0])
            m = mlp.ffn_sub_norm(gated)
            tap(i, "ffn_sub_norm", m[0])
            tap(i, "down_act", activation_quant(m)[0])
            down = mlp.down_proj(m)
            tap(i, "down_proj", down[0])
            x = x + down
            tap(i, "residual", x[0])
        hidden = model.norm(x)
        tap("final", "final_norm", hidden[0])
        trace.hidden = np64(hidden[0])
        trace.logits = np64(model.lm_head(hidden).float()[0])
        trace.visible = np64(causal).astype(bool)[:, None, :]
    return trace


def local_reference(weights: ModelWeights, trace: Trace, ids) -> dict:
    """Each op of a golden ``trace`` recomputed in float64 from golden's own inputs to it.

    Comparing golden's output of an op with this isolates the op's own rounding from the
    error it inherited; returns ``{(layer, op): array}`` like ``Trace.taps``.
    """
    cfg = weights.config
    eps = cfg.rms_norm_eps
    t = trace.taps
    tokens, heads, kv_heads, head_dim = (len(np.asarray(ids).reshape(-1)),
                                         cfg.num_attention_heads, cfg.num_key_value_heads,
                                         cfg.head_dim)
    half = head_dim // 2
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, head_dim, 2) / head_dim)
    angles = np.arange(tokens)[:, None] * inv_freq[None]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]

    def rms(x, gamma):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * np.asarray(gamma, np.float64)

    def act(x):
        scale = 127 / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
        return np.clip(np.round(x * scale), -128, 127) / scale

    def lin(x, tl):
        return x @ (tl.ternary.astype(np.float64) * tl.scale).T

    def rope(x):
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    out = {}
    x = np.asarray(weights.embed_tokens, np.float64)[np.asarray(ids).reshape(-1)]
    for i, lw in enumerate(weights.layers):
        out[(i, "input_norm")] = rms(x, lw.input_layernorm)
        out[(i, "attn_act")] = act(t[(i, "input_norm")])
        for name in ("q_proj", "k_proj", "v_proj"):
            out[(i, name)] = lin(t[(i, "attn_act")], getattr(lw, name))
        out[(i, "rope_q")] = rope(t[(i, "q_proj")].reshape(tokens, heads, head_dim))
        out[(i, "rope_k")] = rope(t[(i, "k_proj")].reshape(tokens, kv_heads, head_dim))
        k = np.repeat(t[(i, "rope_k")], heads // kv_heads, axis=1)
        v = np.repeat(t[(i, "v_proj")].reshape(tokens, kv_heads, head_dim), heads // kv_heads,
                      axis=1)
        visible = trace.visible
        scores = np.einsum("thd,shd->ths", t[(i, "rope_q")], k) / np.sqrt(head_dim)
        out[(i, "scores")] = np.where(visible, scores, 0.0)
        g_scores = np.where(visible, t[(i, "scores")], -np.inf)
        p = np.exp(g_scores - g_scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[(i, "probs")] = p
        out[(i, "attn_out")] = np.einsum("ths,shd->thd", p, v).reshape(tokens, -1)
        out[(i, "attn_sub_norm")] = rms(t[(i, "attn_out")], lw.attn_sub_norm)
        out[(i, "o_act")] = act(t[(i, "attn_sub_norm")])
        out[(i, "o_proj")] = lin(t[(i, "o_act")], lw.o_proj)
        out[(i, "attn_residual")] = x + t[(i, "o_proj")]
        out[(i, "post_norm")] = rms(t[(i, "attn_residual")], lw.post_attention_layernorm)
        out[(i, "mlp_act")] = act(t[(i, "post_norm")])
        out[(i, "gate_proj")] = lin(t[(i, "mlp_act")], lw.gate_proj)
        out[(i, "up_proj")] = lin(t[(i, "mlp_act")], lw.up_proj)
        g = t[(i, "gate_proj")]
        g = np.maximum(g, 0) ** 2 if cfg.hidden_act == "relu2" else g / (1 + np.exp(-g))
        out[(i, "gate")] = g * t[(i, "up_proj")]
        out[(i, "ffn_sub_norm")] = rms(t[(i, "gate")], lw.ffn_sub_norm)
        out[(i, "down_act")] = act(t[(i, "ffn_sub_norm")])
        out[(i, "down_proj")] = lin(t[(i, "down_act")], lw.down_proj)
        out[(i, "residual")] = t[(i, "attn_residual")] + t[(i, "down_proj")]
        x = t[(i, "residual")]
    out[("final", "final_norm")] = rms(x, weights.norm)
    return out


def compare(got, ref, mask=None) -> dict:
    """Max and mean absolute error of ``got`` against ``ref``, and both relative to the RMS
    of ``ref`` (over the entries where ``mask`` is true)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if mask is not None:
        mask = np.broadcast_to(mask, ref.shape)
        got, ref = got[mask], ref[mask]
    err = np.abs(got - ref)
    rms = float(np.sqrt(np.mean(ref * ref)))
    scale = rms if rms > 0 else 1.0
    return {"max_abs": float(err.max()), "mean_abs": float(err.mean()), "ref_rms": rms,
            "max_rel": float(err.max()) / scale, "mean_rel": float(err.mean()) / scale}


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def logit_metrics(got, ref) -> dict:
    """Top-1 agreement, mean KL(ref || got) in nats, max |error| and max error / range."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    lp_ref, lp_got = _log_softmax(ref), _log_softmax(got)
    kl = float(np.mean(np.sum(np.exp(lp_ref) * (lp_ref - lp_got), axis=-1)))
    err = float(np.abs(got - ref).max())
    span = float(ref.max() - ref.min())
    return {"top1": float(np.mean(got.argmax(-1) == ref.argmax(-1))), "kl": kl,
            "max_err": err, "range": span, "max_err_rel": err / span if span > 0 else 0.0}


def numerics_report(weights: ModelWeights, ids, *, with_formats: bool = True) -> dict:
    """The whole report: per-(layer, op) errors, logit metrics, and each optional format.

    Errors are in the units of the unit-scale model (``golden.scaling``); the report's
    ``range_scales`` are the factors golden runs the model with."""
    weights = scaling.undo(weights)
    reference = float_trace(weights, ids)
    golden = golden_trace(weights, ids)
    local = local_reference(weights, golden, ids)
    rows = []
    for (layer, op), value in golden.taps.items():
        mask = reference.visible if op in ("scores", "probs") else None
        own = compare(value, local[(layer, op)], mask)
        rows.append({"layer": layer, "op": op} | compare(value, reference.taps[(layer, op)],
                                                         mask)
                    | {"local_max_rel": own["max_rel"], "local_mean_rel": own["mean_rel"]})
    factors = scaling.choose(weights)
    report = {"tokens": int(np.asarray(ids).size), "layers": len(weights.layers),
              "range_scales": {"residual": factors.residual, "norm": factors.norm,
                               "gate": factors.gate},
              "logits": logit_metrics(golden.logits, reference.logits), "ops": rows}
    if with_formats:
        cfg = weights.config

        def bits(kind, fmt):
            if kind == "kv":
                return fmt.bits_per_element(cfg.num_key_value_heads, cfg.head_dim)
            return fmt.bits_per_weight(cfg.hidden_size)

        report["formats"] = [
            {"kind": kind, "format": fmt.name, "bits": bits(kind, fmt),
             "default": fmt in (formats.DEFAULT_KV, formats.DEFAULT_LM_HEAD)}
            | logit_metrics(golden_trace(weights, ids, **{arg: fmt}).logits, reference.logits)
            for kind, arg, fmt in formats.candidates()]
    return report


def format_table(report: dict) -> str:
    """The report as plain text: one row per (layer, op), the logits, the formats."""
    lines = [f"{'layer':>5}  {'op':<14}{'max abs':>11}{'mean abs':>11}{'ref rms':>11}"
             f"{'max/rms':>10}{'mean/rms':>10}{'own max':>10}{'own mean':>10}"]
    for row in report["ops"]:
        lines.append(f"{row['layer']!s:>5}  {row['op']:<14}{row['max_abs']:>11.3g}"
                     f"{row['mean_abs']:>11.3g}{row['ref_rms']:>11.3g}{row['max_rel']:>10.2%}"
                     f"{row['mean_rel']:>10.2%}{row['local_max_rel']:>10.3%}"
                     f"{row['local_mean_rel']:>10.4%}")
    lg = report["logits"]
    lines.append(f"logits over {report['tokens']} tokens: top-1 agreement {lg['top1']:.2%}, "
                 f"KL {lg['kl']:.3g} nats, max error {lg['max_err']:.3g} "
                 f"({lg['max_err_rel']:.2%} of the range {lg['range']:.3g})")
    if "range_scales" in report:
        rs = report["range_scales"]
        lines.append(f"golden runs the model range-scaled (golden.scaling): residual x"
                     f"{rs['residual']}, norm outputs x{rs['norm']}, gate x{rs['gate']}")
    for row in report.get("formats", []):
        mark = " (default)" if row["default"] else ""
        lines.append(f"  format {row['kind']:<8}{row['format']:<12}{row['bits']:6.2f} bits  "
                     f"top-1 {row['top1']:7.2%}  KL {row['kl']:9.3g}  max error "
                     f"{row['max_err_rel']:6.2%} of the range{mark}")
    return "\n".join(lines)


def plot_report(report: dict, directory) -> Path:
    """A PNG of the mean and max error (relative to the tensor's RMS) by op, one line per
    layer, and of each op's own error (golden against float64 on golden's inputs), written
    atomically into ``directory``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layers = list(dict.fromkeys(row["layer"] for row in report["ops"] if row["layer"] != "final"))
    fig, axes = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    for ax, key, title in ((axes[0], "mean_rel", "mean |error| / RMS"),
                           (axes[1], "max_rel", "max |error| / RMS"),
                           (axes[2], "local_mean_rel", "the op's own\nmean |error| / RMS")):
        floor = 1e-8       # exact ops (the INT8 quantizers, the residual adds) sit on the floor
        for layer in layers:
            rows = {r["op"]: r for r in report["ops"] if r["layer"] == layer}
            ax.semilogy(range(len(OPS)), [max(rows[op][key], floor) for op in OPS], marker="o",
                        label=f"layer {layer}")
        final = [r for r in report["ops"] if r["layer"] == "final"][0]
        ax.semilogy([len(OPS)], [max(final[key], floor)], "k*", markersize=10,
                    label="final norm")
        ax.set_ylabel(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=4)
    axes[2].set_xticks(range(len(OPS) + 1), list(OPS) + ["final_norm"], rotation=60,
                       ha="right", fontsize=8)
    lg = report["logits"]
    fig.suptitle(f"golden vs float reference: top-1 {lg['top1']:.2%}, KL {lg['kl']:.3g}, "
                 f"max logit error {lg['max_err_rel']:.2%} of range")
    fig.tight_layout()
    path = directory / "numerics.png"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".png.tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _token_ids(args, weights):
    context = weights.config.max_position_embeddings
    if args.prompt is not None:
        from .tokenizer import load_tokenizer

        ids = np.asarray(load_tokenizer(args.model).encode(args.prompt), dtype=np.int64)
        if ids.size == 0:
            raise InputError("--prompt is empty: give some text, or use --random-tokens N")
        if ids.size > context:
            raise InputError(f"--prompt is {ids.size} tokens, more than the model's context "
                             f"of {context}: shorten it")
        if ids.max() >= weights.config.vocab_size:
            raise InputError(f"--prompt encodes to token id {int(ids.max())}, outside the "
                             f"model's vocabulary of {weights.config.vocab_size}: use "
                             f"--random-tokens N or a model with a matching tokenizer")
        return ids
    count = args.random_tokens
    if count < 1 or count > context:
        raise InputError(f"--random-tokens must be between 1 and the model's context of "
                         f"{context}, got {count}")
    return np.random.default_rng(args.seed).integers(0, weights.config.vocab_size, count)


def _run(args) -> int:
    from .checkpoint import load_checkpoint

    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise InputError(f"--plots {args.plots} is a file: give a directory")
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    weights = load_checkpoint(args.model)
    ids = _token_ids(args, weights)
    report = numerics_report(weights, ids, with_formats=not args.no_formats)
    report["model"] = str(args.model)
    if args.plots is not None:
        report["plot"] = str(plot_report(report, args.plots))
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        if "plot" in report:
            print(f"plot: {report['plot']}")
    return 0


def register(commands) -> None:
    """Add ``ternedge numerics`` to the CLI's subcommands."""
    from .cli import DEFAULT_MODEL

    parser = commands.add_parser(
        "numerics", help="golden's per-layer, per-op error against the float torch reference")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="HF-format checkpoint directory (default: the shipped tiny model)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="text to run (teacher-forced)")
    source.add_argument("--random-tokens", type=int, default=64, metavar="N",
                        help="run N random token ids (default 64; --seed picks them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="write numerics.png (error by layer and op) into DIR")
    parser.add_argument("--no-formats", action="store_true",
                        help="skip the KV-cache and LM-head format comparison")
    parser.set_defaults(run=_run)
