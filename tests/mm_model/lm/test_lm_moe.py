"""MoE: the sorted, all-tokens-at-once dispatch and the single-token path against a per-token loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lm_helpers import randomize_

from mm_model.lm import LMConfig
from mm_model.lm.moe import MoE


def _naive(moe: MoE, x: torch.Tensor, cfg: LMConfig) -> torch.Tensor:
    """Slow twin: route each token on its own with plain loops (grouped top-k written out)."""
    out = []
    g, per = cfg.n_group, cfg.n_routed_experts // cfg.n_group
    for tok in x:
        scores = torch.sigmoid(moe.gate.weight.float() @ tok.float())
        choice = scores + moe.gate.e_score_correction_bias
        group_score = torch.stack([choice[i * per : (i + 1) * per].topk(2).values.sum() for i in range(g)])
        groups = group_score.topk(cfg.topk_group).indices.tolist()
        allowed = [e for e in range(cfg.n_routed_experts) if e // per in groups]
        chosen = sorted(allowed, key=lambda e: -choice[e].item())[: cfg.num_experts_per_tok]
        w = scores[chosen]
        if cfg.norm_topk_prob:
            w = w / w.sum()
        w = w * cfg.routed_scaling_factor
        y = moe.shared_experts(tok)
        for e, we in zip(chosen, w):
            gate, up = (moe.experts.gate_up_proj[e] @ tok).chunk(2)
            y = y + we * (moe.experts.down_proj[e] @ (F.silu(gate) * up))
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"n_group": 4, "topk_group": 2, "num_experts_per_tok": 3}, {"n_group": 1, "topk_group": 1},
     {"norm_topk_prob": False}],
    ids=["groups_2_1", "groups_4_2", "no_groups", "unnormalized"],
)  # fmt: skip
@pytest.mark.parametrize("tokens", [1, 13])
def test_dispatch_matches_per_token_loop(overrides, tokens):
    cfg = LMConfig.tiny(**overrides)
    moe = MoE(cfg)
    randomize_(moe, seed=tokens)
    x = torch.randn(1, tokens, cfg.hidden_size)
    with torch.no_grad():
        got = moe(x)[0]
        want = _naive(moe, x[0], cfg)
    assert (got - want).abs().max().item() < 1e-5


def test_bias_changes_selection_but_not_weights():
    cfg = LMConfig.tiny(n_group=1, topk_group=1)
    moe = MoE(cfg)
    randomize_(moe)
    x = torch.randn(5, cfg.hidden_size)
    with torch.no_grad():
        moe.gate.e_score_correction_bias.zero_()
        _, i0 = moe.gate(x)
        moe.gate.e_score_correction_bias[0] = 10.0  # expert 0 always selected...
        w1, i1 = moe.gate(x)
    assert (i1 == 0).any(-1).all() and not (i0 == 0).any(-1).all()
    scores = torch.sigmoid(x @ moe.gate.weight.T)
    expected = scores.gather(1, i1)  # ...with its unbiased score as weight
    expected = expected / expected.sum(-1, keepdim=True) * cfg.routed_scaling_factor
    torch.testing.assert_close(w1, expected)


@pytest.mark.parametrize("tokens", [1, 7, 40])
def test_grouped_mm_equals_expert_loop(tokens):
    cfg = LMConfig.tiny(n_routed_experts=16, num_experts_per_tok=4)
    moe = MoE(cfg)
    randomize_(moe)
    x = torch.randn(tokens, cfg.hidden_size)
    with torch.no_grad():
        w, idx = moe.gate(x)
        loop = moe.experts(x, w, idx, impl="loop")
        if not hasattr(torch, "_grouped_mm"):
            pytest.skip("this torch has no _grouped_mm")
        grouped = moe.experts(x, w, idx, impl="grouped")
    assert (loop - grouped).abs().max().item() < 1e-5


def test_direct_one_token_path_equals_expert_loop():
    cfg = LMConfig.tiny(n_routed_experts=16, num_experts_per_tok=4)
    moe = MoE(cfg)
    randomize_(moe)
    x = torch.randn(1, cfg.hidden_size)
    with torch.no_grad():
        w, idx = moe.gate(x)
        direct = moe.experts(x, w, idx, impl="direct")
        loop = moe.experts(x, w, idx, impl="loop")
        with pytest.raises(ValueError, match="one token"):
            moe.experts(x.expand(2, -1), w.expand(2, -1), idx.expand(2, -1), impl="direct")
    assert (direct - loop).abs().max().item() < 1e-5
    assert direct.abs().max() > 0


def test_auto_takes_the_packed_loop_for_few_tokens_on_native_bf16(monkeypatch):
    """On a native-bf16 CPU, bf16 decode goes through the packed expert loop, with the same numbers as
    the grouped / loop paths on plain weights (forced here on any CPU)."""
    import compute.dtypes as dtypes
    from compute import prepack

    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: True)
    prepack._available.cache_clear()
    cfg = LMConfig.tiny(n_routed_experts=16, num_experts_per_tok=4)
    moe = MoE(cfg)
    randomize_(moe)
    moe.bfloat16()
    exact = copy.deepcopy(moe).float()  # the same (bf16-rounded) weights in fp32: the plain path
    try:
        for tokens in (1, 3):
            x = torch.randn(tokens, cfg.hidden_size).bfloat16()
            with torch.inference_mode():
                w, idx = moe.gate(x)
                auto = moe.experts(x, w, idx)
                # the packed weights were used, where oneDNN has bf16 kernels (not on AVX2-only CPUs)
                assert hasattr(moe.experts.gate_up_proj, prepack._ATTR) == prepack._available()
                plain = exact.experts(x.float(), w, idx, impl="loop")
            assert (auto.float() - plain).abs().max().item() < 2e-2 * plain.abs().max().item()
    finally:
        prepack._available.cache_clear()
