"""The curriculum tokenizer: K2.5 special tokens, compact encodings, exact round trips."""

from __future__ import annotations

import pytest

from mm_model.tokenizer import K25_SPECIAL_TOKENS
from training.generators import sample
from training.tokenizer import build


@pytest.fixture(scope="module")
def tok():
    return build(vocab_size=1024, n=150, per_task=4)


def test_special_tokens_are_single_ids(tok):
    assert set(K25_SPECIAL_TOKENS) <= set(tok.special_tokens)
    for name in ("<think>", "</think>", "<|im_end|>", "<|media_pad|>"):
        assert tok.encode(name) == [tok.special_tokens[name]]
    assert tok.vocab_size <= 1024


@pytest.mark.parametrize("family", ["image", "screenshot", "video", "chat"])
def test_questions_round_trip_and_are_short(tok, family):
    s = sample("heldout", 1, family=family)
    content = s.messages[-1]["content"]
    question = content if isinstance(content, str) else content[-1]["text"]
    text = (
        f"<|im_user|>user<|im_middle|>{question}<|im_end|><|im_assistant|>assistant<|im_middle|>"
        + s.target_text()
    )
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(tok.encode(question)) <= 20  # common words are merged
