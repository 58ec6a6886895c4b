# SPDX-License-Identifier: BSD-3-Clause
"""PyTorch reference of BitNet b1.58 decoders: the ``torch`` backend's "GPU reference path".

The math is that of HF transformers' ``BitNetForCausalLM`` with its BitNet quantization
(``transformers/integrations/bitnet.py``) applied:

- RMSNorm in float32 (``w * x * rsqrt(mean(x^2) + eps)``);
- RoPE with HF's ``inv_freq = 1 / theta^(arange(0, d, 2) / d)`` and ``rotate_half``;
- GQA attention with a causal softmax, scaled by ``head_dim^-0.5``;
- ``attn_sub_norm`` before ``o_proj``; MLP ``down(ffn_sub_norm(act(gate(x)) * up(x)))`` with
  ``act`` = ReLU² (``hidden_act="relu2"``) or SiLU (LLaMA-style BitNet);
- pre-norm residuals, final norm, float LM head (tied to the embeddings when
  ``tie_word_embeddings``).

Every linear layer except the LM head is a :class:`BitLinear`, which fake-quantizes its input
per token to INT8 (``s = 127 / max|x|``, ``round(x * s).clamp(-128, 127) / s``, as
transformers' ``ActQuant``), and uses either

(a) float weights fake-quantized to absmean ternary with a straight-through estimator
    (transformers' ``WeightQuant``; quantization-aware training), or
(b) fixed ternary weights and a per-tensor scale, ``y = linear(x_q, W_t) * scale`` (as
    transformers' ``AutoBitLinear`` in offline mode), loaded from a
    :class:`ternedge.golden.weights.ModelWeights`; these are never re-quantized.

The device is CUDA when ``torch.cuda.is_available()`` and the CPU otherwise. Set
``TORCHDYNAMO_DISABLE=1`` when transformers is imported in the same process (its BitNet
integration wraps functions in ``torch.compile``); this module itself compiles nothing.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..golden.config import ModelConfig
from ..golden.quant import quantize_weights
from ..golden.weights import LINEAR_NAMES, LayerWeights, ModelWeights, TernaryLinear

__all__ = [
    "BitNetTorch",
    "BitLinear",
    "RMSNorm",
    "default_device",
    "activation_quant",
    "weight_quant",
    "to_model_weights",
]


def default_device() -> torch.device:
    """The reference path's device: ``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _ActQuant(torch.autograd.Function):
    """Per-token absmax INT8 fake quantization with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        dtype = x.dtype
        x = x.float()
        scale = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
        return ((x * scale).round().clamp(-128, 127) / scale).to(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _WeightQuant(torch.autograd.Function):
    """Per-tensor absmean ternary fake quantization with a straight-through gradient."""

    @staticmethod
    def forward(ctx, w):
        dtype = w.dtype
        w = w.float()
        scale = 1.0 / w.abs().mean().clamp(min=1e-5)
        return ((w * scale).round().clamp(-1, 1) / scale).to(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    """Fake-quantize activations per token (last axis) to INT8, straight-through gradient.

    Parameters
    ----------
    x : torch.Tensor
        Activations ``(..., K)``.

    Returns
    -------
    torch.Tensor
        ``round(x * s).clamp(-128, 127) / s`` with ``s = 127 / max(max|x|, 1e-5)`` per token.
    """
    return _ActQuant.apply(x)


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    """Fake-quantize a weight tensor to absmean ternary, straight-through gradient.

    Parameters
    ----------
    w : torch.Tensor
        Float weight ``(out, in)``.

    Returns
    -------
    torch.Tensor
        ``round(w / s).clamp(-1, 1) * s`` with ``s = max(mean|w|, 1e-5)``.
    """
    return _WeightQuant.apply(w)


class RMSNorm(nn.Module):
    """HF ``BitNetRMSNorm``: ``weight * x * rsqrt(mean(x^2) + eps)`` computed in float32.

    Parameters
    ----------
    size : int
        Normalized (last) dimension.
    eps : float
        Added to the mean square.
    """

    def __init__(self, size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class BitLinear(nn.Module):
    """A bias-free BitNet b1.58 linear layer with fake quantization.

    In QAT mode (the default) ``weight`` is a float parameter, ternarized on every forward with
    absmean scaling and a straight-through estimator. After :meth:`load_ternary` it holds the
    ternary values (as floats) and ``weight_scale`` the absmean scale, and computes
    ``linear(act_quant(x), W_t) * weight_scale``.

    Parameters
    ----------
    in_features, out_features : int
        Shape of the layer (weight is ``(out_features, in_features)``).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=0.02)
        self.register_buffer("weight_scale", torch.ones(1))
        self.prequantized = False

    def load_ternary(self, ternary, scale: float) -> None:
        """Fix the layer to ``ternary * scale``; the weights are not re-quantized later.

        Parameters
        ----------
        ternary : array-like
            ``(out_features, in_features)`` values in {-1, 0, +1}.
        scale : float
            The absmean scale.
        """
        t = torch.as_tensor(np.asarray(ternary), dtype=torch.float32)
        if tuple(t.shape) != (self.out_features, self.in_features):
            raise ValueError(f"ternary weight has shape {tuple(t.shape)}, expected "
                             f"{(self.out_features, self.in_features)}")
        with torch.no_grad():
            self.weight.data = t.to(self.weight.device)
            self.weight_scale.data = torch.tensor([float(scale)], dtype=torch.float32,
                                                  device=self.weight.device)
        self.weight.requires_grad_(False)
        self.prequantized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = activation_quant(x)
        if self.prequantized:
            return F.linear(x, self.weight) * self.weight_scale
        return F.linear(x, weight_quant(self.weight))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"prequantized={self.prequantized}")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        self.n_heads, self.n_kv, self.head_dim = (cfg.num_attention_heads,
                                                  cfg.num_key_value_heads, hd)
        self.q_proj = BitLinear(d, self.n_heads * hd)
        self.k_proj = BitLinear(d, self.n_kv * hd)
        self.v_proj = BitLinear(d, self.n_kv * hd)
        self.o_proj = BitLinear(self.n_heads * hd, d)
        self.attn_sub_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, cache=None, start=0):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat((cache["k"], k), dim=2)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        groups = self.n_heads // self.n_kv
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        s = k.shape[2]
        if start == 0 and s == t:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # query i sits at absolute position start + i and sees keys 0 .. start + i
            qpos = torch.arange(start, start + t, device=x.device)[:, None]
            mask = torch.arange(s, device=x.device)[None, :] <= qpos
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)
        return self.o_proj(self.attn_sub_norm(out))


class _MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = BitLinear(d, f)
        self.up_proj = BitLinear(d, f)
        self.down_proj = BitLinear(f, d)
        self.ffn_sub_norm = RMSNorm(f, cfg.rms_norm_eps)
        self.relu2 = cfg.hidden_act == "relu2"

    def forward(self, x):
        g = self.gate_proj(x)
        g = torch.square(F.relu(g)) if self.relu2 else F.silu(g)
        return self.down_proj(self.ffn_sub_norm(g * self.up_proj(x)))


class _Layer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = _Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = _MLP(cfg)

    def forward(self, x, cos, sin, cache=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class BitNetTorch(nn.Module):
    """A BitNet b1.58 decoder (HF ``BitNetForCausalLM`` math) in PyTorch.

    Built from a config it starts with random float weights in QAT mode (ternary fake
    quantization with a straight-through estimator on every BitLinear); built with
    :meth:`from_weights` it holds fixed ternary weights for inference.

    Parameters
    ----------
    config : ModelConfig
        Architecture.
    device : torch.device or str, optional
        Where the parameters live; default :func:`default_device`.

    Notes
    -----
    Module names follow HF (``embed_tokens``, ``layers.{i}.self_attn.q_proj``, ...), without
    the ``model.`` prefix.
    """

    def __init__(self, config: ModelConfig, device=None):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        hd = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache = None
        self._pos = 0
        self.to(default_device() if device is None else device)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.embed_tokens.weight.device

    def _rope(self, start: int, length: int):
        pos = torch.arange(start, start + length, device=self.inv_freq.device).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def _run(self, ids: torch.Tensor, cache=None, start: int = 0) -> torch.Tensor:
        t = ids.shape[1]
        if start + t > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {start + t} tokens exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        cos, sin = self._rope(start, t)
        x = self.embed_tokens(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if cache is None else cache[i], start)
        return self.lm_head(self.norm(x)).float()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Full-sequence causal forward pass.

        Parameters
        ----------
        input_ids : torch.LongTensor
            ``(B, T)`` token ids.

        Returns
        -------
        torch.Tensor
            float32 logits ``(B, T, vocab_size)``.
        """
        return self._run(input_ids.to(self.device))

    # ---- KV-cached incremental generation (batch 1) -------------------------------------

    def reset(self) -> None:
        """Empty the KV cache; the next :meth:`prefill` starts at position 0."""
        self._cache = None
        self._pos = 0

    @property
    def position(self) -> int:
        """Tokens held in the KV cache (the position the next token runs at)."""
        return self._pos

    def truncate(self, length: int) -> None:
        """Keep the keys and values of the first ``length`` tokens only (speculative
        decoding's rollback); the next :meth:`prefill` runs at position ``length``.

        Parameters
        ----------
        length : int
            In ``[0, position]``.
        """
        if (not isinstance(length, (int, np.integer)) or isinstance(length, bool)
                or not 0 <= length <= self._pos):
            raise ValueError(f"truncate length must be an integer in [0, {self._pos}] "
                             f"(the tokens in the KV cache), got {length!r}")
        length = int(length)
        if self._cache is not None:
            for layer in self._cache:
                if layer.get("k") is not None:
                    layer["k"] = layer["k"][:, :, :length]
                    layer["v"] = layer["v"][:, :, :length]
        self._pos = length

    @torch.no_grad()
    def prefill(self, ids) -> torch.Tensor:
        """Run a prompt through the model, appending its keys and values to the KV cache.

        Parameters
        ----------
        ids : 1-D LongTensor or sequence of int
            Prompt token ids (continues after whatever the cache already holds).

        Returns
        -------
        torch.Tensor
            float32 logits ``(T, vocab_size)``.
        """
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("prefill needs at least one token")
        if self._cache is None:
            self._cache = [{} for _ in self.layers]
            self._pos = 0
        logits = self._run(ids, self._cache, self._pos)
        self._pos += ids.shape[1]
        return logits[0]

    @torch.no_grad()
    def decode(self, token_id: int) -> torch.Tensor:
        """Run one token through the model using and extending the KV cache.

        Parameters
        ----------
        token_id : int
            The next token.

        Returns
        -------
        torch.Tensor
            float32 logits ``(vocab_size,)`` for the position after ``token_id``.
        """
        return self.prefill([int(token_id)])[0]

    # ---- weights in and out --------------------------------------------------------------

    @classmethod
    def from_weights(cls, weights: ModelWeights, device=None) -> "BitNetTorch":
        """An inference model with the fixed ternary weights of ``weights``.

        Parameters
        ----------
        weights : ModelWeights
            Quantized weights (ternary linears, float32 norms, embeddings and LM head).
        device : torch.device or str, optional
            Default :func:`default_device`.

        Returns
        -------
        BitNetTorch
            In eval mode, gradients off.
        """
        cfg = weights.config
        model = cls(cfg, device="cpu")
        if len(weights.layers) != cfg.num_hidden_layers:
            raise ValueError(f"weights have {len(weights.layers)} layers, config says "
                             f"{cfg.num_hidden_layers}")

        def f32(a):
            return torch.as_tensor(np.asarray(a, dtype=np.float32))

        with torch.no_grad():
            model.embed_tokens.weight.copy_(f32(weights.embed_tokens))
            if not cfg.tie_word_embeddings:
                model.lm_head.weight.copy_(f32(weights.lm_head))
            model.norm.weight.copy_(f32(weights.norm))
            for layer, lw in zip(model.layers, weights.layers, strict=True):
                layer.input_layernorm.weight.copy_(f32(lw.input_layernorm))
                layer.post_attention_layernorm.weight.copy_(f32(lw.post_attention_layernorm))
                layer.self_attn.attn_sub_norm.weight.copy_(f32(lw.attn_sub_norm))
                layer.mlp.ffn_sub_norm.weight.copy_(f32(lw.ffn_sub_norm))
                for name in LINEAR_NAMES:
                    tl = getattr(lw, name)
                    _linear(layer, name).load_ternary(tl.ternary, tl.scale)
        model.requires_grad_(False)
        model.eval()
        return model.to(default_device() if device is None else device)


def _linear(layer: nn.Module, name: str) -> BitLinear:
    parent = layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
    return getattr(parent, name)


def to_model_weights(model: BitNetTorch) -> ModelWeights:
    """Quantize a (QAT-trained) model's weights into a :class:`ModelWeights`.

    Float linear weights are quantized with :func:`ternedge.golden.quant.quantize_weights`
    (absmean ternary); layers already fixed to ternary are taken as they are.

    Parameters
    ----------
    model : BitNetTorch

    Returns
    -------
    ModelWeights
    """
    def np32(t):
        return t.detach().to("cpu", torch.float32).numpy().copy()

    layers = []
    for layer in model.layers:
        linears = {}
        for name in LINEAR_NAMES:
            lin = _linear(layer, name)
            if lin.prequantized:
                ternary = np32(lin.weight).astype(np.int8)
                scale = float(lin.weight_scale.item())
            else:
                ternary, scale = quantize_weights(np32(lin.weight))
            linears[name] = TernaryLinear(ternary=ternary, scale=scale)
        layers.append(LayerWeights(
            input_layernorm=np32(layer.input_layernorm.weight),
            post_attention_layernorm=np32(layer.post_attention_layernorm.weight),
            attn_sub_norm=np32(layer.self_attn.attn_sub_norm.weight),
            ffn_sub_norm=np32(layer.mlp.ffn_sub_norm.weight),
            **linears))
    embed = np32(model.embed_tokens.weight)
    return ModelWeights(config=model.config, embed_tokens=embed,
                        lm_head=embed.copy() if model.config.tie_word_embeddings
                        else np32(model.lm_head.weight),
                        norm=np32(model.norm.weight), layers=tuple(layers))
