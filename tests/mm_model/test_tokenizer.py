"""Both tokenizer formats behind one interface; the released tiktoken layout read from a local dir."""

from __future__ import annotations

import base64
import json

import pytest

from mm_model.tokenizer import (
    K25_SPECIAL_TOKENS,
    NUM_RESERVED_SPECIAL,
    JsonTokenizer,
    TiktokenTokenizer,
    TokenizerError,
    load_tokenizer,
)


def write_tiktoken_dir(path, merges=(b"he", b"ll", b"hell", b"hello", b" w")):
    """A miniature released-format tokenizer: 256 byte ranks + a few merges + named specials."""
    ranks = [bytes([i]) for i in range(256)] + list(merges)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for rank, tok in enumerate(ranks)]
    (path / "tiktoken.model").write_text("\n".join(lines) + "\n")
    base = len(ranks)
    named = {"[BOS]": 0, "[EOS]": 1, "<|im_end|>": 2, "<|media_pad|>": 21, "<think>": 22, "</think>": 23}
    decoder = {str(base + off): {"content": name, "special": True} for name, off in named.items()}
    (path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    return base, named


def test_tiktoken_dir_round_trip_and_specials(tmp_path):
    base, _named = write_tiktoken_dir(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, TiktokenTokenizer)
    assert tok.vocab_size == base + NUM_RESERVED_SPECIAL
    assert tok.special_tokens["<|media_pad|>"] == base + 21
    assert tok.special_tokens[f"<|reserved_token_{base + 5}|>"] == base + 5  # unnamed ids still get names
    text = "hello world<|media_pad|><|media_pad|>你好<|im_end|>"
    ids = tok.encode(text)
    assert ids[0] == 259  # "hello" merged into one token by rank
    assert ids.count(base + 21) == 2
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "hello world你好"


def test_json_tokenizer_round_trip(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tokenizer.json")
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, JsonTokenizer)
    assert set(K25_SPECIAL_TOKENS) <= set(tok.special_tokens)
    text = "<|im_user|>user<|im_middle|>the cat, 你好 ✓<|im_end|>"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.count(tok.special_tokens["<|im_middle|>"]) == 1


def test_missing_and_broken_files(tmp_path):
    assert load_tokenizer(tmp_path) is None  # a model without tokenizer files still loads
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
