# SPDX-License-Identifier: BSD-3-Clause
"""One backend interface for generation: golden (NumPy, bit-exact), torch (float reference),
rtl (the accelerator RTL simulated by Verilator, ``host.rtl_backend``).

A backend holds a model and a KV cache; ``prefill`` runs a prompt and returns the logits of
its last token, ``decode`` runs one token. ``forward`` runs several tokens at the current
``position`` and returns the logits of each, and ``truncate`` drops the KV cache past a length:
together they are speculative decoding's verification pass and rollback
(``host.speculative``). The generation loop in ``generate`` is the same for every backend.
"""

from abc import ABC, abstractmethod

import numpy as np

from ..golden.model import GoldenModel
from ..golden.weights import ModelWeights
from .errors import InputError

__all__ = ["Backend", "GoldenBackend", "TorchBackend", "BACKENDS", "make_backend"]


class Backend(ABC):
    """A model that runs on some engine. Logits are float64 NumPy vectors of vocab size."""

    name = "abstract"

    def __init__(self, weights: ModelWeights):
        self.weights = weights
        self.config = weights.config

    @property
    def context(self) -> int:
        """Most positions (prompt + generated tokens) one sequence may use."""
        return self.config.max_position_embeddings

    @abstractmethod
    def reset(self) -> None:
        """Start a new sequence."""

    @abstractmethod
    def prefill(self, token_ids) -> np.ndarray:
        """Run the prompt; return the logits of its last token."""

    @abstractmethod
    def decode(self, token_id: int) -> np.ndarray:
        """Run one token at the next position; return its logits."""

    #: backing store of ``position`` for backends that assign it (``self.position = n``)
    _position = 0

    @property
    def position(self) -> int:
        """Tokens currently held in the KV cache (where the next token runs)."""
        return self._position

    @position.setter
    def position(self, value: int) -> None:
        self._position = value

    def forward(self, token_ids) -> np.ndarray:
        """Run ``token_ids`` as one multi-token pass at ``position``, appending them to the
        KV cache (each token sees the cache and the block's tokens before it); return float64
        logits of every token, shape ``(len(token_ids), vocab)``."""
        raise NotImplementedError(f"the {self.name} backend has no multi-token forward")

    def truncate(self, length: int) -> None:
        """Drop the KV cache past ``length`` tokens (``0 <= length <= position``), so that the
        next pass runs at position ``length``."""
        raise NotImplementedError(f"the {self.name} backend cannot truncate its KV cache")


class GoldenBackend(Backend):
    """The bit-exact NumPy golden model (``ternedge.golden.model``)."""

    name = "golden"

    def __init__(self, weights: ModelWeights):
        super().__init__(weights)
        self.model = GoldenModel(weights)

    def reset(self) -> None:
        self.model.reset()

    def prefill(self, token_ids) -> np.ndarray:
        hidden = self.model.forward(token_ids)
        return self.model.logits(hidden[-1:])[0]

    def decode(self, token_id: int) -> np.ndarray:
        return self.model.logits(self.model.forward([token_id]))[0]

    @property
    def position(self) -> int:
        return self.model.position

    def forward(self, token_ids) -> np.ndarray:
        hidden = self.model.forward(token_ids)
        # one row at a time, as prefill and decode run the LM head: a BLAS product over
        # several rows may round differently in the last bit, and greedy verification must
        # see exactly the logits one-token decoding sees
        return np.concatenate([self.model.logits(hidden[i:i + 1]) for i in range(len(hidden))])

    def truncate(self, length: int) -> None:
        self.model.truncate(length)


class TorchBackend(Backend):
    """The PyTorch float reference (``ternedge.host.torch_ref``): CUDA when present, else CPU."""

    name = "torch"

    def __init__(self, weights: ModelWeights):
        super().__init__(weights)
        try:
            import torch

            from .torch_ref import BitNetTorch
        except ImportError:
            raise InputError("the torch backend needs PyTorch: install the reference extra "
                             "with `pip install -e '.[ref]'` (make setup does)") from None
        self._torch = torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = BitNetTorch.from_weights(weights, device=device)
        self.device = device

    def reset(self) -> None:
        self.model.reset()

    def _numpy(self, logits) -> np.ndarray:
        return logits.detach().to("cpu", self._torch.float64).numpy()

    def prefill(self, token_ids) -> np.ndarray:
        ids = self._torch.as_tensor(np.asarray(token_ids), dtype=self._torch.long)
        with self._torch.no_grad():
            return self._numpy(self.model.prefill(ids)[-1])

    def decode(self, token_id: int) -> np.ndarray:
        with self._torch.no_grad():
            return self._numpy(self.model.decode(int(token_id)))

    @property
    def position(self) -> int:
        return self.model.position

    def forward(self, token_ids) -> np.ndarray:
        ids = self._torch.as_tensor(np.asarray(token_ids), dtype=self._torch.long)
        with self._torch.no_grad():
            return self._numpy(self.model.prefill(ids))

    def truncate(self, length: int) -> None:
        self.model.truncate(length)


def _rtl_backend(weights: ModelWeights) -> Backend:
    try:
        from .rtl_backend import RTLBackend

        return RTLBackend(weights)
    except ImportError as exc:
        raise InputError(f"the rtl backend needs the simulation extra ({exc.name} is missing): "
                         "install it with `pip install -e '.[sim]'` (make setup does)") from None


BACKENDS = {"golden": GoldenBackend, "torch": TorchBackend, "rtl": _rtl_backend}


def make_backend(name: str, weights: ModelWeights) -> Backend:
    """Instantiate a backend by name."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](weights)
