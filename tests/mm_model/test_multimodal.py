"""The whole model against `transformers`' Kimi_K25ForConditionalGeneration, and checkpoint round trips."""

from __future__ import annotations

import json

import pytest
import torch

from mm_model.checkpoint import load_model, save_model
from mm_model.config import ModelConfig
from mm_model.lm.loading import CheckpointError
from mm_model.multimodal import KimiK25Model, PlaceholderMismatch
from mm_model.processor import Processor
from tests.conftest import randomize_


def hf_config(cfg: ModelConfig):
    from transformers import Kimi_K25Config

    d = cfg.to_dict()
    d["text_config"]["model_type"] = "deepseek_v3"
    return Kimi_K25Config(
        text_config=d["text_config"], vision_config=d["vision_config"], image_token_id=cfg.media_placeholder_token_id,
        video_token_id=cfg.text.vocab_size, projection_hidden_size=cfg.vision.hidden_size,
        projection_layer_norm_eps=cfg.vision.projector_ln_eps, tie_word_embeddings=False,
    )  # fmt: skip


def reference_vision(hf, items, cfg: ModelConfig) -> list[torch.Tensor]:
    """Reference per-item features: the tower can't mix t=1 and t>1 items in one call and splits
    pooled rows wrongly for t>1 (research/moonvit3d.md §3.4), so: one call per t-group, split by h*w/4."""
    from vision.packing import pack

    out: list[torch.Tensor | None] = [None] * len(items)
    for t in sorted({g[0] for _, g in items}):
        group = [i for i, (_, g) in enumerate(items) if g[0] == t]
        packed = pack([items[i] for i in group], cfg.vision)
        pooled = hf.model.vision_tower(packed.patches, grid_thw=packed.grid_thws).pooler_output
        for i, feats in zip(group, hf.model.mm_projector(pooled).squeeze(1).split(packed.tokens)):
            out[i] = feats
    return out


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory, tiny_cfg):
    """A random transformers model saved by `save_pretrained`, and ours loaded from that directory."""
    pytest.importorskip("transformers")
    from transformers import Kimi_K25ForConditionalGeneration

    torch.manual_seed(99)
    hf = randomize_(Kimi_K25ForConditionalGeneration(hf_config(tiny_cfg))).eval()
    path = tmp_path_factory.mktemp("hf_saved")
    hf.save_pretrained(path)
    import mm_model

    return hf, mm_model.load(path, dtype=torch.float32).model, path


@pytest.mark.parity
def test_two_images_and_a_video_match_transformers(hf_pair, tiny_cfg, tokenizer, images, sample_video):
    """Same prompt, same weights (saved by transformers, loaded by us): logits within 1e-4 (fp32)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    hf, ours, _ = hf_pair
    processor = Processor(tiny_cfg, tokenizer)
    messages = [{"role": "user", "content": [
        {"type": "image", "image": images[0]}, {"type": "video", "video": str(sample_video)},
        {"type": "image", "image": images[1]}, {"type": "text", "text": "what is in the picture?"},
    ]}]  # fmt: skip
    prompt = processor(messages)
    assert {m.grid[0] for m in prompt.media} >= {1, 4}  # images and a full 4-frame chunk
    items = [(m.patches, m.grid) for m in prompt.media]
    ids = prompt.input_ids[None]
    with torch.no_grad():
        ref_feats = reference_vision(hf, items, tiny_cfg)
        ref = hf(
            input_ids=ids,
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=tuple(ref_feats))},
        ).logits
        got = ours(ids, prompt.pixel_values, prompt.grid_thws)
        ours_feats = ours.encode_media(prompt.pixel_values, prompt.grid_thws)
    for a, b in zip(ours_feats, ref_feats):
        assert (a - b).abs().max() < 1e-4
    diff = (got - ref).abs().max().item()
    assert diff < 1e-4, f"max logit diff {diff}"
    assert ref.std() > 1e-2


@pytest.mark.parity
def test_our_released_layout_loads_in_transformers(hf_pair, tmp_path):
    """Save in the released layout; both we and transformers' from_pretrained read it back identically."""
    from transformers import Kimi_K25ForConditionalGeneration

    _hf, ours, _ = hf_pair
    save_model(ours, tmp_path, max_shard_bytes=100_000)
    assert (tmp_path / "model.safetensors.index.json").exists()
    keys = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    assert "language_model.model.layers.1.mlp.experts.0.gate_proj.weight" in keys
    assert "vision_tower.encoder.blocks.0.wqkv.weight" in keys and "mm_projector.proj.2.weight" in keys
    again = load_model(tmp_path)
    back = Kimi_K25ForConditionalGeneration.from_pretrained(tmp_path).eval()
    pad = ours.config.media_placeholder_token_id
    ids = torch.tensor([[5, 6, pad, pad, pad, pad, 7, 8, 9]])
    pixels, grid = torch.randn(16, 3, 14, 14), torch.tensor([[1, 4, 4]])
    with torch.no_grad():
        a = ours(ids, pixels, grid)
        b = again(ids, pixels, grid)
        c = back(input_ids=ids, pixel_values=pixels, image_grid_thw=grid).logits
    assert torch.equal(a, b)
    assert (a - c).abs().max() < 1e-4


def test_placeholder_mismatch_is_a_clear_error(tiny_cfg):
    model = KimiK25Model.build(tiny_cfg)
    pad = tiny_cfg.media_placeholder_token_id
    with pytest.raises(PlaceholderMismatch, match="3 media placeholder tokens .* 4 vision features"):
        model(torch.tensor([[1, pad, pad, pad, 2]]), torch.randn(16, 3, 14, 14), torch.tensor([[1, 4, 4]]))
    with pytest.raises(PlaceholderMismatch, match="0 vision features"):
        model(torch.tensor([[1, pad, 2]]))


def test_checkpoint_errors_name_the_keys(tmp_path, tiny_cfg):
    from safetensors.torch import load_file, save_file

    model = KimiK25Model.build(tiny_cfg)
    save_model(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["vision_tower.encoder.blocks.9.wqkv.weight"] = torch.zeros(1)
    del state["mm_projector.proj.0.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    assert "vision_tower.encoder.blocks.9.wqkv.weight" in str(info.value)
    assert "mm_projector.proj.0.bias" in str(info.value)


def test_pickled_weights_are_refused(tmp_path, tiny_cfg):
    tiny_cfg.save(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="never pickles"):
        load_model(tmp_path)


def test_k25_sizes_on_meta():
    model = KimiK25Model.build(ModelConfig.k25(), device="meta")
    vision = sum(p.numel() for p in model.vision_tower.parameters()) + sum(
        p.numel() for p in model.mm_projector.parameters()
    )
    assert vision == 416_866_032 + 54_277_888
