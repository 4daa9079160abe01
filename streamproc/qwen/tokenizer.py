"""A thin wrapper over a `tokenizers` Tokenizer (tokenizer.json): encode, decode, special ids.

No transformers: the TPU path tokenises with the Rust library alone. Special tokens written in
text (e.g. "<|im_start|>") become their ids, as with transformers' Qwen2 tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer

from ..errors import ModelError
from .config import TOKENIZER_FILE, TokenIds


class QwenTokenizer:
    def __init__(self, tokenizer: Tokenizer, path: Path | None = None):
        self._tok = tokenizer
        self.path = path
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = len(vocab)
        self._vocab = vocab
        self._special = {
            token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special
        }

    @classmethod
    def from_dir(cls, path: str | Path) -> "QwenTokenizer":
        file = Path(path) / TOKENIZER_FILE
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # the Rust library raises plain Exceptions
            raise ModelError(f"cannot load the tokenizer {file}: {exc}") from None
        # The template adds every special token itself; a post-processor must not add more.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(tokenizer, Path(path))

    @property
    def vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def token_id(self, token: str) -> int:
        try:
            return self._vocab[token]
        except KeyError:
            raise ModelError(f"the tokenizer has no token {token!r}") from None

    def token_ids(self) -> TokenIds:
        from .config import SPECIAL_TOKENS

        return TokenIds(*(self.token_id(name) for name in SPECIAL_TOKENS))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def is_special(self, token_id: int) -> bool:
        return self._tok.id_to_token(int(token_id)) in self._special
