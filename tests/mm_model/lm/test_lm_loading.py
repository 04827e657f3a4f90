"""Checkpoint loading: key maps consume every key and fill every parameter, shards, prefixes, dtypes,
and errors that name what is wrong."""

from __future__ import annotations

import json

import pytest
import torch
from lm_helpers import make_reference, randomize_
from safetensors.torch import save_file

from mm_model import InputError
from mm_model.lm import DeepseekV3LM, LMConfig, export_state_dict, load_lm


def _save(model: DeepseekV3LM, path, prefix="", shards=1, extra=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.config.to_hf_dict()))
    items = [(k, v.contiguous().clone()) for k, v in export_state_dict(model, prefix)] + list(
        (extra or {}).items()
    )
    if shards == 1:
        save_file(dict(items), str(path / "model.safetensors"))
        return items
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = dict(items[s::shards])
        save_file(part, str(path / name))
        weight_map.update(dict.fromkeys(part, name))
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return items


@pytest.fixture
def model() -> DeepseekV3LM:
    m = DeepseekV3LM(LMConfig.tiny()).eval()
    randomize_(m)
    return m


def _same(a: DeepseekV3LM, b: DeepseekV3LM) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].dtype)) for k in sa)


def test_round_trip_fills_every_parameter(model, tmp_path):
    _save(model, tmp_path)
    assert _same(model, load_lm(tmp_path))


def test_fused_expert_layout(model, tmp_path):
    """transformers 5 keeps experts fused in memory (`mlp.experts.gate_up_proj`); that layout loads too."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_hf_dict()))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    assert _same(model, load_lm(tmp_path))


def test_tied_embeddings(tmp_path):
    m = DeepseekV3LM(LMConfig.tiny(tie_word_embeddings=True)).eval()
    randomize_(m)
    items = _save(m, tmp_path)
    assert "lm_head.weight" not in dict(items)
    loaded = load_lm(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert _same(m, loaded)


def test_sharded_with_index_and_prefix(model, tmp_path):
    _save(model, tmp_path, prefix="language_model.", shards=3, extra={"vision_tower.x": torch.zeros(2)})
    assert _same(model, load_lm(tmp_path, prefix="language_model."))


def test_kimi_k25_save_pretrained_block_names(model, tmp_path):
    items = _save(model, tmp_path / "a")
    renamed = {k.replace("model.layers.", "model.blocks."): v for k, v in items}
    (tmp_path / "b").mkdir()
    save_file(renamed, str(tmp_path / "b" / "model.safetensors"))
    (tmp_path / "b" / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
    assert _same(model, load_lm(tmp_path / "b"))


def test_bf16_keeps_router_bias_fp32(model, tmp_path):
    _save(model, tmp_path)
    m = load_lm(tmp_path, dtype=torch.bfloat16)
    assert m.lm_head.weight.dtype == torch.bfloat16
    bias = m.model.layers[1].mlp.gate.e_score_correction_bias
    assert bias.dtype == torch.float32
    assert torch.equal(bias, model.model.layers[1].mlp.gate.e_score_correction_bias)


def test_missing_and_unknown_keys_are_named(model, tmp_path):
    items = dict(_save(model, tmp_path / "ok"))
    del items["model.layers.2.mlp.experts.5.up_proj.weight"]
    items["model.layers.0.mlp.surprise.weight"] = torch.zeros(1)
    (tmp_path / "bad").mkdir()
    save_file(items, str(tmp_path / "bad" / "model.safetensors"))
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(InputError, match=r"surprise.*model\.layers\.2\.mlp\.experts\.gate_up_proj"):
        load_lm(tmp_path / "bad")


def test_shape_mismatch_and_bad_directories(model, tmp_path):
    _save(model, tmp_path / "ok")
    with pytest.raises(InputError, match="shape"):
        load_lm(tmp_path / "ok", config=LMConfig.tiny(vocab_size=300))
    with pytest.raises(InputError, match="does not exist"):
        load_lm(tmp_path / "nope")
    (tmp_path / "pickle").mkdir()
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="only safetensors"):
        load_lm(tmp_path / "pickle")


@pytest.mark.parity
def test_every_transformers_key_is_consumed(tmp_path):
    """save_pretrained writes per-expert keys; all are consumed and all parameters filled (strict)."""
    ref = make_reference(tmp_path, first_k_dense_replace=1)
    ours = load_lm(tmp_path)
    experts = ref.model.layers[2].mlp.experts
    assert torch.equal(ours.model.layers[2].mlp.experts.gate_up_proj, experts.gate_up_proj)
    assert torch.equal(ours.model.layers[2].mlp.experts.down_proj, experts.down_proj)
