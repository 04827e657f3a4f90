"""LMConfig: presets, config.json round trips (both rope forms), validation, K2.5 parameter counts."""

from __future__ import annotations

import pytest

from mm_model import InputError
from mm_model.lm import LMConfig, RopeScaling, count_parameters

K2_CONFIG_JSON = {  # the released kimi_k2-style text config layout (legacy rope_scaling form)
    "model_type": "kimi_k2", "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 163840, "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 64,
    "num_key_value_heads": 64, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 384, "num_experts_per_tok": 8,
    "n_shared_experts": 1, "n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.827, "norm_topk_prob": True,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 50000.0, "max_position_embeddings": 262144,
    "rope_scaling": {"type": "yarn", "factor": 64.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                     "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
    "tie_word_embeddings": False, "num_nextn_predict_layers": 0, "bos_token_id": 163584, "eos_token_id": 163585,
    "pad_token_id": 163839, "aux_loss_alpha": 0.001, "seq_aux": True,
}  # fmt: skip


def test_k25_preset_reads_from_released_config_json():
    assert LMConfig.from_hf_dict(K2_CONFIG_JSON) == LMConfig.k25()


@pytest.mark.parametrize("cfg", [LMConfig.k25(), LMConfig.tiny(), LMConfig.tiny(rope_scaling=None, q_lora_rank=None)],
                         ids=["k25", "tiny", "tiny_plain"])  # fmt: skip
def test_round_trip(cfg):
    assert LMConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_unknown_keys_round_trip():
    d = LMConfig.from_hf_dict(K2_CONFIG_JSON).to_hf_dict()
    assert d["aux_loss_alpha"] == 0.001 and d["seq_aux"] is True
    assert d["rope_parameters"]["rope_type"] == "yarn" and d["rope_parameters"]["rope_theta"] == 50000.0


def test_rope_parameters_form_equals_rope_scaling_form():
    legacy = dict(K2_CONFIG_JSON)
    modern = {k: v for k, v in legacy.items() if k not in ("rope_scaling", "rope_theta")}
    modern["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 50000.0, **{
        k: v for k, v in legacy["rope_scaling"].items() if k != "type"}}  # fmt: skip
    assert LMConfig.from_hf_dict(modern) == LMConfig.from_hf_dict(legacy)


def test_yarn_missing_original_defaults_like_reference():
    d = {**LMConfig.tiny().to_hf_dict(), "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}
    assert LMConfig.from_hf_dict(d).rope_scaling == RopeScaling(
        factor=4.0, original_max_position_embeddings=256
    )
    d["original_max_position_embeddings"] = 32  # a top-level value wins, as in transformers
    assert LMConfig.from_hf_dict(d).rope_scaling.original_max_position_embeddings == 32


@pytest.mark.parity
def test_transformers_reads_our_config_json():
    transformers = pytest.importorskip("transformers")
    d = LMConfig.k25().to_hf_dict()
    hf = transformers.DeepseekV3Config(
        **{k: v for k, v in d.items() if k not in ("model_type", "architectures")}
    )
    assert hf.rope_parameters["factor"] == 64.0 and hf.rope_parameters["rope_type"] == "yarn"
    assert hf.n_routed_experts == 384 and hf.routed_scaling_factor == 2.827 and hf.rms_norm_eps == 1e-5
    assert LMConfig.from_hf_dict(hf.to_dict()) == LMConfig.k25()


BAD = {
    "hidden_size": ({"hidden_size": 0}, "hidden_size"),
    "group_divides": ({"n_routed_experts": 8, "n_group": 3}, "n_group"),
    "one_expert_per_group": ({"n_routed_experts": 8, "n_group": 8, "topk_group": 4}, "fewer than 2"),
    "topk_group": ({"n_group": 2, "topk_group": 3}, "topk_group"),
    "too_many_experts": ({"n_group": 2, "topk_group": 1, "num_experts_per_tok": 5}, "num_experts_per_tok"),
    "scoring": ({"scoring_func": "softmax"}, "scoring_func"),
    "dense_layers": ({"first_k_dense_replace": 9}, "first_k_dense_replace"),
    "odd_rope": ({"qk_rope_head_dim": 7}, "qk_rope_head_dim"),
    "yarn_factor": ({"rope_scaling": {"factor": 0.5, "original_max_position_embeddings": 4}}, "factor"),
}


@pytest.mark.parametrize("overrides, field", list(BAD.values()), ids=list(BAD))
def test_validation_names_the_field(overrides, field):
    with pytest.raises(InputError, match=field):
        LMConfig.tiny(**overrides)


def test_from_hf_dict_rejects_unsupported():
    with pytest.raises(InputError, match="rope type"):
        LMConfig.from_hf_dict({**LMConfig.tiny().to_hf_dict(), "rope_parameters": {"rope_type": "longrope"}})
    with pytest.raises(InputError, match="moe_layer_freq"):
        LMConfig.from_hf_dict({**LMConfig.tiny().to_hf_dict(), "moe_layer_freq": 2})


def test_k25_parameter_counts():
    """Published: about 1.03T total and 32B activated (Kimi K2.5 model card)."""
    total, active = count_parameters(LMConfig.k25())
    print(f"k25 LM parameters: total {total / 1e9:.2f}B, activated {active / 1e9:.2f}B")
    assert total == pytest.approx(1.03e12, rel=0.01)  # architecture gives 1026.4B
    assert active == pytest.approx(32e9, rel=0.04)  # 32.86B, of which 2.35B embeddings + lm_head
    tiny_total, tiny_active = count_parameters(LMConfig.tiny())
    assert tiny_active < tiny_total
