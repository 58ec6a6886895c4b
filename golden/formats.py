# SPDX-License-Identifier: BSD-3-Clause
"""Compact formats the accelerator needs for speed: a narrower KV cache and an on-fabric LM head.

These are specifications (integer-exact NumPy functions), not yet wired into the RTL top.
Measured effect: ``ternedge numerics`` (per model), ``benchmarks/eval_formats.py`` (the shipped
model and random models; top-1 against the float reference, bits per byte on held-out text).

KV cache
--------
Today's cache holds keys (after RoPE) and values as int32 Q16: 32 bits an element.

* ``fp16``: IEEE binary16 of the real value (round to nearest even), 16 bits an element. Keys
  and values are saturated to +-128.0 by the attention unit anyway (``attention.OPERAND_LIMIT``),
  well inside FP16's range, and FP16 keeps 11 significant bits at every magnitude, where a
  16-bit fixed-point format would trade range against small-value precision.
* ``int8-head`` / ``int8-token``: symmetric INT8 with one absmax scale per (token, KV head) or
  per token (all KV heads together), the same rounding as the activation quantizer
  (``quant.quantize_activations``), dequantized with the Scale of ``amax / 127``. The scale is
  stored as a Scale (16-bit mantissa, 8-bit exponent): ``8 + 24 / head_dim`` bits an element
  per head, ``8 + 24 / (kv_heads * head_dim)`` per token.

Default: ``int8-head`` (``DEFAULT_KV``). Measured (``benchmarks/eval_formats.py --windows 4
--random-models 6``, golden range-scaled as ``GoldenModel`` runs it): on the shipped model over
2,048 held-out bytes, bits per byte and top-1 agreement with the float reference are unchanged
by either 8-bit format or by FP16 (within +-0.0015 bit per byte and -0.25 % top-1 of the int32
cache) and the KL to the float reference rises from 9.9e-5 to 1.7-1.8e-4 nats. On six random-init
models (2 x 64 tokens each) int8 costs more: mean top-1 97.8 % -> 95.6 % (FP16: 97.3 %), max
logit error 1.4 % -> 2.0 % of the range. So 8 bits with a per-(token, head) scale holds a
trained model's accuracy and moves 3.8x less KV traffic than int32 (1.9x less than FP16); FP16
is the format for a model whose top-1 against float must stay within half a percent. Per head
rather than per token: a GQA group's KV heads can differ in magnitude, and the scale costs
0.19 bit more per element at head_dim 128.

LM head
-------
Today the LM head is float64 on the host from the final norm's Q16 output. On the fabric it
would be fed what the fabric has: the final norm's output quantized per token to INT8 (the same
quantizer as every TLMM input). Weights are symmetric INT8 (``[-127, 127]``) or INT4
(``[-7, 7]``) with one absmax scale per group of ``group`` consecutive inputs of each output
row (a Scale, 24 bits). Per group the integer dot product ``acc_g`` is multiplied by the group
Scale and summed in units of 2**-20; the sum times the token's activation Scale gives Q16 logits.

Default: INT8 with groups of 128 (``DEFAULT_LM_HEAD``). Measured as above: INT8 (per row or
groups of 128 or 32) leaves the shipped model's bits per byte within 0.0005 and top-1 within
0.1 % of the float64 head, and costs random models 0.8 % mean top-1 with their max logit error
under 1.5 % of the range. INT4 costs the shipped model 0.002-0.0035 bit per byte, 2.4-2.7 % top-1
and 18-25x the KL, and random models 12-15 % top-1 and up to 8.7 % of the logit range: over the
3 % bound. Groups rather than rows, as the accelerator's weight DMA streams the head in K
tiles and one outlier column then only coarsens its own group.
"""

from dataclasses import dataclass

import numpy as np

from . import fixed, quant

__all__ = ["KVFormat", "LMHeadFormat", "KV_FORMATS", "LM_HEAD_FORMATS", "DEFAULT_KV",
           "DEFAULT_LM_HEAD", "candidates",
           "fp16_roundtrip", "int8_roundtrip"]

#: bits below the binary point of the LM head's group-sum accumulator
LM_HEAD_SUM_FRAC = 20


def fp16_roundtrip(x_q16):
    """Q16 -> IEEE binary16 (round to nearest even) -> Q16 (round half up)."""
    real = fixed.from_q16(x_q16)
    return fixed.to_q16(real.astype(np.float16).astype(np.float64))


def int8_roundtrip(x_q16, axes):
    """Symmetric INT8 with one absmax scale over ``axes`` (trailing axes), back to Q16.

    ``q = quantize_activations`` over the flattened ``axes``; ``x' = sat32(round(q * m *
    2**-(e - 16)))`` with ``(m, e)`` the Scale of ``amax / 127`` (``quant.activation_scale``).
    """
    x = np.asarray(x_q16, dtype=np.int64)
    lead = x.shape[:x.ndim - axes]
    flat = x.reshape(lead + (-1,))
    q, amax = quant.quantize_activations(flat)
    m, e = quant.activation_scale(amax)
    back = fixed.apply_scale(q.astype(np.int64), m[..., None], (e - fixed.FRAC)[..., None])
    return back.reshape(x.shape)


@dataclass(frozen=True)
class KVFormat:
    """How keys and values are stored in the KV cache.

    ``kind``: ``"int32"`` (today's exact Q16), ``"fp16"``, ``"int8-head"``, ``"int8-token"``.
    """

    kind: str

    @property
    def name(self) -> str:
        return self.kind

    def bits_per_element(self, kv_heads: int, head_dim: int) -> float:
        return {"int32": 32.0, "fp16": 16.0, "int8-head": 8 + 24 / head_dim,
                "int8-token": 8 + 24 / (kv_heads * head_dim)}[self.kind]

    def roundtrip(self, x_q16):
        """Q16 keys or values (T, kv_heads, head_dim) as read back from the cache."""
        if self.kind == "int32":
            return np.asarray(x_q16, dtype=np.int64)
        if self.kind == "fp16":
            return fp16_roundtrip(x_q16)
        if self.kind == "int8-head":
            return int8_roundtrip(x_q16, 1)
        if self.kind == "int8-token":
            return int8_roundtrip(x_q16, 2)
        raise ValueError(f"unknown KV format {self.kind!r}; one of {KV_FORMATS}")


@dataclass(frozen=True)
class LMHeadFormat:
    """An LM head with group-wise quantized weights, fed INT8 activations.

    ``bits`` 8 or 4; ``group`` inputs per scale (``None``: one scale per output row).
    """

    bits: int
    group: int | None = None

    @property
    def name(self) -> str:
        return f"int{self.bits}-g{self.group or 'row'}"

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def bits_per_weight(self, hidden: int) -> float:
        return self.bits + 24 / (self.group or hidden)

    def quantize_weight(self, weight):
        """Float (V, H) -> (int codes (V, H), per-group Scales m, e of shape (V, groups))."""
        w = np.asarray(weight, dtype=np.float64)
        rows, hidden = w.shape
        group = self.group or hidden
        groups = -(-hidden // group)
        padded = np.zeros((rows, groups * group))
        padded[:, :hidden] = w
        blocks = padded.reshape(rows, groups, group)
        amax = np.abs(blocks).max(-1)
        step = np.where(amax > 0, amax / self.qmax, 1.0)
        codes = np.clip(np.floor(np.abs(blocks) / step[..., None] + 0.5), 0, self.qmax)
        codes = (np.sign(blocks) * codes).astype(np.int64).reshape(rows, -1)[:, :hidden]
        scales = [fixed.float_to_scale(float(s)) for s in step.reshape(-1)]
        m = np.array([s[0] for s in scales], dtype=np.int64).reshape(rows, groups)
        e = np.array([s[1] for s in scales], dtype=np.int64).reshape(rows, groups)
        return codes, m, e

    def logits(self, hidden_q16, weight, prepared=None):
        """Float64 logits (T, V) from the final norm's Q16 output (integer-exact, Q16)."""
        codes, m, e = prepared if prepared is not None else self.quantize_weight(weight)
        rows, hidden = codes.shape
        group = self.group or hidden
        groups = m.shape[1]
        q, amax = quant.quantize_activations(np.asarray(hidden_q16, dtype=np.int64))
        qp = np.zeros((q.shape[0], groups * group), dtype=np.int64)
        qp[:, :hidden] = q
        cp = np.zeros((rows, groups * group), dtype=np.int64)
        cp[:, :hidden] = codes
        acc = np.einsum("tgk,vgk->tvg", qp.reshape(-1, groups, group),
                        cp.reshape(rows, groups, group))                  # exact int
        total = fixed.round_shift(acc * m[None], e[None] - LM_HEAD_SUM_FRAC).sum(-1)
        m_x, e_x = quant.activation_scale(amax)
        out = fixed.sat32(fixed.round_shift(total * m_x[:, None],
                                            (e_x + LM_HEAD_SUM_FRAC - fixed.FRAC)[:, None]))
        return fixed.from_q16(out)


KV_FORMATS = ("int32", "fp16", "int8-head", "int8-token")
LM_HEAD_FORMATS = (LMHeadFormat(8), LMHeadFormat(8, 128), LMHeadFormat(8, 32),
                   LMHeadFormat(4, 128), LMHeadFormat(4, 64), LMHeadFormat(4, 32))

#: chosen from the measurements in the module docstring
DEFAULT_KV = KVFormat("int8-head")
DEFAULT_LM_HEAD = LMHeadFormat(8, 128)


def candidates():
    """``(kind, golden_trace keyword, format)`` for every format the numerics report shows."""
    for kind in KV_FORMATS[1:]:
        yield "kv", "kv_format", KVFormat(kind)
    for fmt in LM_HEAD_FORMATS:
        yield "lm_head", "lm_head_format", fmt
