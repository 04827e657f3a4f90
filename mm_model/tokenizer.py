"""Tokenizers behind one interface: the released K2.5 tiktoken format and `tokenizer.json` (ours).

Released checkpoints ship `tiktoken.model` (base64 token -> rank) plus `tokenizer_config.json`,
whose `added_tokens_decoder` names the special tokens of a 256-id block after the base vocabulary;
we read both from the local directory with the `tiktoken` package (no network). Our own models ship
a byte-level BPE `tokenizer.json` for the `tokenizers` package with the same special tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from mm_model.jsonfile import read_json
from vision.errors import InputError

# Kimi's pre-tokenizer regex (`pat_str` of the released tokenization_kimi.py); a format constant.
KIMI_PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
NUM_RESERVED_SPECIAL = 256

# The special tokens the chat format uses, with their ids in the released 163840-id vocabulary.
K25_SPECIAL_TOKENS: dict[str, int] = {
    "[BOS]": 163584,
    "[EOS]": 163585,
    "<|im_end|>": 163586,
    "<|im_user|>": 163587,
    "<|im_assistant|>": 163588,
    "<|im_system|>": 163594,
    "<|tool_calls_section_begin|>": 163595,
    "<|tool_calls_section_end|>": 163596,
    "<|tool_call_begin|>": 163597,
    "<|tool_call_argument_begin|>": 163598,
    "<|tool_call_end|>": 163599,
    "<|im_middle|>": 163601,
    "<|media_begin|>": 163602,
    "<|media_content|>": 163603,
    "<|media_end|>": 163604,
    "<|media_pad|>": 163605,
    "<think>": 163606,
    "</think>": 163607,
    "[UNK]": 163838,
    "[PAD]": 163839,
}


class TokenizerError(InputError):
    """Tokenizer files are missing, unreadable or lack a required special token."""


class Tokenizer(Protocol):
    """What the processor and the API need from a tokenizer."""

    special_tokens: dict[str, int]

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Token ids; special-token strings in `text` become their single ids."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...


def token_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token, or a clear error naming it."""
    try:
        return tokenizer.special_tokens[token]
    except KeyError:
        raise TokenizerError(f"the tokenizer has no special token {token!r}") from None


class TiktokenTokenizer:
    """The released K2.5 tokenizer: `tiktoken.model` + `tokenizer_config.json`."""

    def __init__(self, ranks: dict[bytes, int], special_tokens: dict[str, int], name: str = "kimi") -> None:
        import tiktoken

        self.special_tokens = dict(special_tokens)
        self._special_ids = set(special_tokens.values())
        self._enc = tiktoken.Encoding(
            name=name, pat_str=KIMI_PAT_STR, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> TiktokenTokenizer:
        from tiktoken.load import load_tiktoken_bpe

        path = Path(path)
        model_file = path / "tiktoken.model"
        try:
            ranks = load_tiktoken_bpe(str(model_file))
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot read {str(model_file)!r}: {exc}") from exc
        named: dict[int, str] = {}
        config_file = path / "tokenizer_config.json"
        if config_file.exists():
            decoder = read_json(config_file, TokenizerError).get("added_tokens_decoder", {})
            named = {int(i): entry["content"] for i, entry in decoder.items()}
        base = len(ranks)
        # Every id of the reserved block gets a name, as the released tokenization_kimi.py does.
        specials = {
            named.get(i, f"<|reserved_token_{i}|>"): i for i in range(base, base + NUM_RESERVED_SPECIAL)
        }
        specials.update({name: i for i, name in named.items() if i >= base})
        return cls(ranks, specials)

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special="all")

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids if not (skip_special_tokens and int(i) in self._special_ids)]
        return self._enc.decode(ids, errors="replace")


class JsonTokenizer:
    """A `tokenizer.json` (the `tokenizers` package): what our own models ship."""

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer
        self.special_tokens = {
            t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special
        }
        self._special_ids = set(self.special_tokens.values())

    @classmethod
    def from_file(cls, path: str | Path) -> JsonTokenizer:
        from tokenizers import Tokenizer as _Tokenizer

        try:
            return cls(_Tokenizer.from_file(str(path)))
        except Exception as exc:  # tokenizers raises its own Exception type for bad JSON
            raise TokenizerError(f"cannot read tokenizer file {str(path)!r}: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))


def load_tokenizer(path: str | Path) -> Tokenizer | None:
    """The tokenizer in a model directory, or None when it ships none (the model still runs)."""
    path = Path(path)
    if (path / "tokenizer.json").exists():
        return JsonTokenizer.from_file(path / "tokenizer.json")
    if (path / "tiktoken.model").exists():
        return TiktokenTokenizer.from_dir(path)
    return None


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = tuple(K25_SPECIAL_TOKENS)
) -> JsonTokenizer:
    """A byte-level BPE `tokenizer.json` trained on `texts`, with the chat special tokens appended.

    Uses Kimi's pre-tokenizer regex so words split as in the released tokenizer.
    """
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as _Tokenizer

    tok = _Tokenizer(models.BPE())
    # The Rust regex engine has no `&&` class intersection; drop the Han exclusion for our small vocabularies.
    pattern = KIMI_PAT_STR.replace("&&[^\\p{Han}]", "")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(special_tokens), 257),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(list(special_tokens))
    return JsonTokenizer(tok)
