# SPDX-License-Identifier: BSD-3-Clause
"""Tokenizers: byte-level for the project's own models, ``tokenizers`` when a checkpoint ships
a ``tokenizer.json``. Both stream text: ``decode_stream`` returns only complete characters."""

import codecs
from pathlib import Path

from .errors import CheckpointError

__all__ = ["ByteTokenizer", "HFTokenizer", "load_tokenizer"]


class ByteTokenizer:
    """Token ids are the UTF-8 bytes of the text (vocabulary of 256)."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream(self):
        """A function that takes one id and returns the text it completes (maybe '')."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda token: decoder.decode(bytes([int(token)]))


class HFTokenizer:
    """A ``tokenizers`` tokenizer loaded from ``tokenizer.json``."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises bare Exceptions on bad files
            raise CheckpointError(f"{path}: cannot read tokenizer ({exc}); "
                                  "replace tokenizer.json with a valid one") from None
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def stream(self):
        ids: list[int] = []
        shown = [0]

        def step(token):
            ids.append(int(token))
            text = self.decode(ids)
            if text.endswith("\ufffd"):          # an incomplete multi-byte character
                return ""
            new, shown[0] = text[shown[0]:], len(text)
            return new

        return step


def load_tokenizer(model_dir) -> "ByteTokenizer | HFTokenizer":
    """The checkpoint's ``tokenizer.json`` if it has one, else byte-level."""
    path = Path(model_dir) / "tokenizer.json"
    return HFTokenizer(path) if path.exists() else ByteTokenizer()
