"""Shared pieces of the trainer's tests: the tiny sizes, and a tokenizer, model and processor."""

from __future__ import annotations

import pytest

from mm_model.processor import Processor
from training.tokenizer import build as build_tokenizer
from training.train import build

SIZES = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}


@pytest.fixture(scope="module")
def setup():
    tok = build_tokenizer(vocab_size=1024, n=100, per_task=3)
    model = build(tok, 0, SIZES)
    return tok, model, Processor(model.config, tok)
