"""Logit parity with transformers' DeepseekV3ForCausalLM and model invariants.

Parity: tiny random configs built and saved by transformers 5.23.0, loaded by `load_lm`; fp32 logits
must agree to max abs diff < 1e-4 (observed ~2e-6: only summation order differs).
"""

from __future__ import annotations

import pytest
import torch
from lm_helpers import make_reference

from mm_model import InputError
from mm_model.lm import LMConfig, load_lm

TOL = 1e-4
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 32.0,
        "beta_slow": 1.0}  # fmt: skip

CASES = {
    "no_rope_scaling": {},
    "yarn4_mscale_1_1": {"rope_scaling": {**YARN, "mscale": 1.0, "mscale_all_dim": 1.0}},
    "yarn4_mscale_0.707_1": {"rope_scaling": {**YARN, "mscale": 0.707, "mscale_all_dim": 1.0}},
    "yarn4_mscale_all_dim_only": {"rope_scaling": {**YARN, "mscale_all_dim": 1.0}},
    "yarn4_no_mscale_beta_1_1": {"rope_scaling": {**YARN, "beta_fast": 1.0, "beta_slow": 1.0}},
    "groups_4_top2": {"n_group": 4, "topk_group": 2, "num_experts_per_tok": 3},
    "first_k_dense_0": {"first_k_dense_replace": 0},
    "first_k_dense_2": {"first_k_dense_replace": 2},
    "no_q_lora_no_shared": {"q_lora_rank": None, "n_shared_experts": 0},
    "no_norm_topk_eps_1e-5": {"norm_topk_prob": False, "rms_norm_eps": 1e-5},
}


def _logits_diff(ref, ours, ids, mask=None) -> float:
    with torch.no_grad():
        a = ref(ids, attention_mask=mask).logits
        b = ours(ids, attention_mask=mask)
    if mask is not None:  # padding positions carry garbage in both; compare real tokens only
        a, b = a[mask.bool()], b[mask.bool()]
    return (a - b).abs().max().item()


@pytest.mark.parity
@pytest.mark.parametrize("overrides", list(CASES.values()), ids=list(CASES))
def test_logits_match_reference(tmp_path, overrides):
    ref = make_reference(tmp_path, **overrides)
    ours = load_lm(tmp_path)
    ids = torch.randint(0, ours.config.vocab_size, (2, 48))  # 48 > original 16: interpolated pairs matter
    diff = _logits_diff(ref, ours, ids)
    assert diff < TOL, f"max abs logit diff {diff:.3g}"


@pytest.mark.parity
def test_left_padded_batch_matches_reference(tmp_path):
    ref = make_reference(tmp_path, rope_scaling={**YARN, "mscale": 1.0, "mscale_all_dim": 1.0})
    ours = load_lm(tmp_path)
    ids = torch.randint(3, 128, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0
    mask[2, :1] = 0
    ids = ids.masked_fill(mask == 0, 0)
    diff = _logits_diff(ref, ours, ids, mask)
    assert diff < TOL, f"max abs logit diff {diff:.3g}"
    # and each padded row equals the same prompt run alone
    with torch.no_grad():
        alone = ours(ids[:1, 7:])
        batched = ours(ids, attention_mask=mask)[:1, 7:]
    assert (alone - batched).abs().max().item() < TOL


@pytest.mark.parity
def test_routing_matters(tmp_path):
    """The fixture must be able to catch routing bugs: ignoring the correction bias changes logits."""
    make_reference(tmp_path, n_group=4, topk_group=2)
    ours = load_lm(tmp_path)
    ids = torch.randint(0, 128, (1, 32))
    with torch.no_grad():
        before = ours(ids)
        for layer in ours.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.zero_()
        after = ours(ids)
    assert (before - after).abs().max().item() > 1e-2


def test_inputs_embeds_equals_input_ids():
    torch.manual_seed(0)
    model = _random_tiny()
    ids = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        a = model(ids)
        b = model(inputs_embeds=model.embed(ids))
    assert torch.equal(a, b)


def test_last_only_is_the_last_row():
    model = _random_tiny()
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        assert torch.allclose(model(ids)[:, -1:], model(ids, last_only=True), atol=1e-6)


def test_bad_inputs_raise_input_error():
    model = _random_tiny(max_position_embeddings=16)
    with pytest.raises(InputError, match="context window"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="exactly one"):
        model()
    with pytest.raises(InputError, match="left padding"):
        model(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.tensor([[1, 0, 1, 1]]))


def _random_tiny(**overrides) -> torch.nn.Module:
    from lm_helpers import randomize_

    from mm_model.lm import DeepseekV3LM

    model = DeepseekV3LM(LMConfig.tiny(**overrides)).eval()
    randomize_(model)
    return model


@pytest.mark.parametrize("padded", [False, True])
def test_prefill_attention_takes_the_fused_cpu_kernel(padded):
    """V (v_head_dim) is narrower than Q and K (nope + rope) in every DeepSeek-V3 config; unless it is
    widened, SDPA on the CPU drops to its unfused math path, which ignores causality and holds the
    whole (S, T) score matrix."""
    model = _random_tiny()
    ids = torch.randint(0, 256, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    if padded:
        mask[0, :3] = 0
    with torch.no_grad(), torch.profiler.profile() as prof:
        model(ids, attention_mask=mask if padded else None)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops
