"""The LM benchmark's sides hold the same weights and generate the same greedy tokens in fp32, and its
bandwidth bound counts the weights a decode step reads."""

from __future__ import annotations

import pytest
import torch

from benchmarks.lm_speed import build_pair, decode_bytes_per_token, decode_ours, decode_ref
from mm_model.footprint import resident_bytes
from mm_model.lm import LMConfig

pytest.importorskip("transformers")


def test_fp32_greedy_tokens_equal_the_reference():
    cfg = LMConfig.tiny(n_routed_experts=8, num_experts_per_tok=2)
    ours, ref = build_pair(cfg, torch.float32)
    ids = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = decode_ours(ours, ids, 10), decode_ref(ref, ids, 10)
    assert a.tokens.shape == (2, 11)
    assert torch.equal(a.tokens, b.tokens)
    assert a.decode_s > 0 and b.prefill_s > 0


def test_decode_bytes_leave_out_the_embedding_and_unpicked_experts():
    cfg = LMConfig.tiny(n_routed_experts=8, num_experts_per_tok=2)
    ours, _ = build_pair(cfg, torch.bfloat16)
    total = resident_bytes(ours)
    experts = sum(
        resident_bytes(layer.mlp.experts) for layer in ours.model.layers if hasattr(layer.mlp, "experts")
    )
    embedding = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size * 2
    assert decode_bytes_per_token(ours) == total - embedding - experts * 6 // 8
