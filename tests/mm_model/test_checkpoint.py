"""Checkpoints people have: a transformers save of a default (tied-head) Kimi_K25Config, an INT4
checkpoint written with the compressed-tensors library, and our `convert --to released-int4` output read
back by that library."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mm_model
from mm_model.checkpoint import load_model, save_model
from mm_model.cli import main as cli
from mm_model.config import ModelConfig
from mm_model.lm.int4 import RELEASE_QUANTIZATION_CONFIG, dequantize_int4
from mm_model.lm.int4_experts import Int4Experts, quantize_experts_
from mm_model.lm.loading import CheckpointError, checkpoint_files
from tests.conftest import randomize_

EXPERT_KEY = re.compile(
    r"^language_model\.model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$"
)


def reference(cfg: ModelConfig, **overrides):
    """A random transformers Kimi_K25ForConditionalGeneration for our config; its own defaults (a
    tied head) unless overridden."""
    from transformers import Kimi_K25Config, Kimi_K25ForConditionalGeneration

    d = cfg.to_dict()
    d["text_config"]["model_type"] = "deepseek_v3"
    hf_cfg = Kimi_K25Config(
        text_config=d["text_config"], vision_config=d["vision_config"], image_token_id=cfg.media_placeholder_token_id,
        video_token_id=cfg.text.vocab_size, projection_hidden_size=cfg.vision.hidden_size,
        projection_layer_norm_eps=cfg.vision.projector_ln_eps, **overrides,
    )  # fmt: skip
    torch.manual_seed(7)
    return randomize_(Kimi_K25ForConditionalGeneration(hf_cfg)).eval()


def _ids(cfg: ModelConfig) -> torch.Tensor:
    ids = torch.randint(0, cfg.text.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    return ids.masked_fill(ids == cfg.media_placeholder_token_id, 5)


@pytest.mark.parity
def test_default_tied_kimi_k25_config_loads_and_matches_transformers(tiny_cfg, tmp_path):
    """transformers 5.23 ties the head by default and saves no lm_head.weight; we load that, tied,
    and match its logits within 1e-4 (fp32); our re-save keeps the tie and transformers reads it."""
    pytest.importorskip("transformers")
    from transformers import Kimi_K25ForConditionalGeneration

    hf = reference(tiny_cfg)
    assert hf.config.tie_word_embeddings and not hf.config.text_config.tie_word_embeddings
    hf.save_pretrained(tmp_path / "hf")
    keys = set().union(*(safe_open(str(p), "pt").keys() for p in (tmp_path / "hf").glob("*.safetensors")))
    assert not any("lm_head" in k for k in keys)
    ours = mm_model.load(tmp_path / "hf", dtype=torch.float32).model
    lm = ours.language_model
    assert lm.config.tie_word_embeddings and lm.lm_head.weight is lm.model.embed_tokens.weight
    ids = _ids(tiny_cfg)
    with torch.no_grad():
        ref, got = hf(input_ids=ids).logits, ours(ids)
    diff = (got - ref).abs().max().item()
    assert diff < 1e-4 and ref.std() > 1e-2, f"max logit diff {diff}"

    save_model(ours, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["tie_word_embeddings"] is True
    back = Kimi_K25ForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (back(input_ids=ids).logits - ref).abs().max() < 1e-4


def _scheme():
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
    return QuantizationScheme(targets=["Linear"], weights=args)


@pytest.mark.parity
def test_int4_written_by_compressed_tensors_matches_dequantised_transformers(tiny_cfg, tmp_path):
    """An INT4 checkpoint made with the library's own compressor (scales by min-max, as its observer
    would, in bf16 as released) loads INT4; our fp32 logits match transformers running the library's
    decompression of the same experts within 1e-4, and differ from the unquantised model's."""
    pytest.importorskip("transformers")
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor as PQC
    from compressed_tensors.quantization import QuantizationConfig

    hf = reference(tiny_cfg, tie_word_embeddings=False)
    hf.save_pretrained(tmp_path / "hf")
    save_model(load_model(tmp_path / "hf"), tmp_path / "int4")  # the released layout, fp32
    tensors = load_file(str(tmp_path / "int4" / "model.safetensors"))
    n = tiny_cfg.text.moe_intermediate_size
    experts = {}
    for key in [k for k in tensors if EXPERT_KEY.match(k)]:
        w = tensors.pop(key)
        scale = (w.unflatten(-1, (-1, 32)).abs().amax(-1) / 7.5).to(torch.bfloat16)
        packed = PQC.compress({"weight": w, "weight_scale": scale}, _scheme())
        tensors.update({f"{key}_{k.split('_')[-1]}": v for k, v in packed.items()})
        experts[key] = PQC.decompress(packed, _scheme())["weight"].float()
    save_file(tensors, str(tmp_path / "int4" / "model.safetensors"))
    config = json.loads((tmp_path / "int4" / "config.json").read_text())
    config["quantization_config"] = QuantizationConfig(
        config_groups={"group_0": _scheme()}, format="pack-quantized", quantization_status="compressed",
        ignore=["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", r"re:.*mlp\.(gate|up|gate_up|down)_proj.*"],
    ).model_dump(mode="json")  # fmt: skip
    (tmp_path / "int4" / "config.json").write_text(json.dumps(config))

    ours = mm_model.load(tmp_path / "int4", dtype=torch.float32).model
    assert isinstance(ours.language_model.model.layers[1].mlp.experts, Int4Experts)
    ids = _ids(tiny_cfg)
    with torch.no_grad():
        unquantised = hf(input_ids=ids).logits
        for key, w in experts.items():
            layer, e, proj = EXPERT_KEY.match(key).groups()
            mod = hf.model.language_model.layers[int(layer)].mlp.experts
            if proj == "down":
                mod.down_proj[int(e)] = w
            else:
                mod.gate_up_proj[int(e), slice(0, n) if proj == "gate" else slice(n, 2 * n)] = w
        ref, got = hf(input_ids=ids).logits, ours(ids)
    diff = (got - ref).abs().max().item()
    assert diff < 1e-4, f"max logit diff {diff}"
    assert (unquantised - ref).abs().max() > 1e-3  # the INT4 rounding is really in play


def test_convert_released_int4_is_what_compressed_tensors_reads(tiny_dir, tmp_path, capsys):
    """`convert --to released-int4`: the release's config fields and key layout, and for every expert
    the library's decompression of our tensors equals our dequantisation, bit for bit; the library's
    compression of the source weight with our scales gives our words. The result loads and runs."""
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor as PQC
    from compressed_tensors.quantization import QuantizationConfig

    out = tmp_path / "int4"
    assert cli(["convert", str(tiny_dir), str(out), "--to", "released-int4"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == RELEASE_QUANTIZATION_CONFIG
    assert config["text_config"]["quantization_config"] == RELEASE_QUANTIZATION_CONFIG
    QuantizationConfig.model_validate(config["quantization_config"])
    tensors = {}
    for file in checkpoint_files(out):
        tensors.update(load_file(str(file)))
    source = load_model(tiny_dir, dtype=torch.bfloat16, int4_kernel=False)
    src = dict(source.language_model.state_dict())
    twin = quantize_experts_(copy.deepcopy(source.language_model)).state_dict()  # quantised after loading
    got = load_model(out, dtype=torch.bfloat16, int4_kernel=False).language_model.state_dict()
    assert got.keys() == twin.keys() and all(torch.equal(got[k], twin[k]) for k in got)
    n, checked = source.config.text.moe_intermediate_size, 0
    for key in [k for k in tensors if k.endswith(".weight_packed")]:
        base = key[: -len("_packed")]
        assert base not in tensors and tensors[base + "_scale"].dtype == torch.bfloat16
        assert tensors[base + "_shape"].dtype == torch.int32  # as in the release
        triple = {f"weight_{s}": tensors[f"{base}_{s}"] for s in ("packed", "scale", "shape")}
        theirs = PQC.decompress(triple, _scheme())["weight"]
        assert torch.equal(theirs, dequantize_int4(triple["weight_packed"], triple["weight_scale"]))
        layer, e, proj = re.match(r".*layers\.(\d+)\.mlp\.experts\.(\d+)\.(\w+)_proj", key).groups()
        stacked = src[f"model.layers.{layer}.mlp.experts.{'down_proj' if proj == 'down' else 'gate_up_proj'}"]
        w = (
            stacked[int(e)]
            if proj == "down"
            else stacked[int(e), :n]
            if proj == "gate"
            else stacked[int(e), n:]
        )
        again = PQC.compress({"weight": w.float(), "weight_scale": triple["weight_scale"]}, _scheme())
        assert torch.equal(again["weight_packed"], triple["weight_packed"])
        checked += 1
    cfg = source.config.text
    assert checked == 3 * cfg.n_routed_experts * (cfg.num_hidden_layers - cfg.first_k_dense_replace)
    assert not any(EXPERT_KEY.match(k) for k in tensors)
    assert all(v.dtype in (torch.bfloat16, torch.float32) for k, v in tensors.items() if "weight_" not in k)

    model = mm_model.load(out, dtype=torch.float32).model
    ids = _ids(source.config)
    with torch.no_grad():
        a, b = model(ids), source.float()(ids)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.99
    capsys.readouterr()
    assert cli(["info", str(out)]) == 0
    assert "routed experts INT4" in capsys.readouterr().out
    assert cli(["convert", str(out), str(tmp_path / "hf"), "--to", "transformers"]) == 2
    assert "has INT4 experts" in capsys.readouterr().err


def test_unsupported_quantization_in_a_checkpoint_is_named(tiny_dir, tmp_path):
    out = tmp_path / "int4"
    assert cli(["convert", str(tiny_dir), str(out), "--to", "released-int4"]) == 0
    config = json.loads((out / "config.json").read_text())
    for where in (config, config["text_config"]):
        where["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 128
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"weights\.group_size is 128"):
        mm_model.load(out)
