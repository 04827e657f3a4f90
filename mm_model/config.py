"""`ModelConfig`: the whole multimodal model (vision tower + projector + LM + media preprocessing).

Reads the released K2.5 `config.json` (model_type "kimi_k25", `vision_config` with `vt_*` names,
`text_config` of model_type "kimi_k2", `media_placeholder_token_id`) and what `transformers`'
`Kimi_K25Config` writes (`hidden_size`-style vision names, `image_token_id`). Writes the released
layout with the `transformers` names alongside, so both loaders read our files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mm_model.jsonfile import read_json
from mm_model.lm.config import ConfigError, LMConfig
from vision.config import MediaConfig, VisionConfig

MEDIA_PAD = "<|media_pad|>"


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig
    text: LMConfig
    media: MediaConfig = field(default_factory=MediaConfig)
    media_placeholder_token_id: int = 163605
    # transformers' id for video pads (one past the vocabulary); we use <|media_pad|> for both.
    video_token_id: int = 163840
    # `thinking` when a chat names none: the release's template opens a thinking block unless told
    # not to (vLLM and SGLang serve it so); a checkpoint may say otherwise ("thinking_default": false).
    thinking_default: bool = True

    def __post_init__(self) -> None:
        if self.vision.text_hidden_size != self.text.hidden_size:
            raise ConfigError(
                f"vision projector output {self.vision.text_hidden_size} != text hidden_size {self.text.hidden_size}"
            )
        if not 0 <= self.media_placeholder_token_id < self.text.vocab_size:
            raise ConfigError(
                f"media_placeholder_token_id {self.media_placeholder_token_id} is outside the vocabulary "
                f"(vocab_size {self.text.vocab_size})"
            )
        if self.media.patch_size != self.vision.patch_size:
            raise ConfigError(
                f"media patch_size {self.media.patch_size} != vision patch_size {self.vision.patch_size}"
            )

    @classmethod
    def k25(cls) -> ModelConfig:
        """The released Kimi K2.5 (MoonViT-3D 417M + projector + 1T-parameter MoE LM)."""
        return cls(vision=VisionConfig.k25(), text=LMConfig.k25())

    @classmethod
    def tiny(cls, vocab_size: int = 320, media_placeholder_token_id: int = 300, **text: Any) -> ModelConfig:
        """Tiny random-model sizes for tests."""
        lm = LMConfig.tiny(vocab_size=vocab_size, max_position_embeddings=2048, **text)
        return cls(
            vision=VisionConfig.tiny(text_hidden_size=lm.hidden_size),
            text=lm,
            media_placeholder_token_id=media_placeholder_token_id,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    # ---- config.json ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], media: dict[str, Any] | None = None) -> ModelConfig:
        """From a released or `transformers` K2.5 config.json dict (and `media_proc_cfg`, if given)."""
        if not isinstance(d, dict) or "text_config" not in d or "vision_config" not in d:
            raise ConfigError(
                "config.json needs 'text_config' and 'vision_config' (a Kimi K2.5 multimodal config)"
            )
        text = LMConfig.from_hf_dict(d["text_config"])
        # The head is tied by the top-level flag: transformers' Kimi_K25Config (default true in 5.23,
        # while text_config says false) writes it and, when true, saves no lm_head.weight. The release,
        # transformers and we all write the flag; where it is absent the text config's value stands.
        tie = d.get("tie_word_embeddings", text.tie_word_embeddings)
        if not isinstance(tie, bool):
            raise ConfigError(f"tie_word_embeddings must be true or false, got {tie!r}")
        if tie != text.tie_word_embeddings:
            text = text.replace(tie_word_embeddings=tie)
        vision_d = dict(d["vision_config"])
        vision_d.setdefault("text_hidden_size", text.hidden_size)
        try:
            vision = VisionConfig.from_dict(vision_d)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad vision_config: {exc}") from exc
        pad = d.get("media_placeholder_token_id", d.get("image_token_id", 163605))
        media_d = media if media is not None else d.get("media_proc_cfg") or {}
        return cls(
            vision=vision,
            text=text,
            media=MediaConfig.from_dict(media_d),
            media_placeholder_token_id=int(pad),
            video_token_id=int(d.get("video_token_id", text.vocab_size)),
            thinking_default=bool(d.get("thinking_default", True)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The released layout, with `transformers`' key names alongside (both loaders read it)."""
        v = self.vision
        text = self.text.to_hf_dict()
        text["model_type"] = "kimi_k2"  # as released; transformers maps it to deepseek_v3
        vision = {
            # released (Moonshot remote code) names
            "vt_hidden_size": v.hidden_size,
            "vt_num_hidden_layers": v.num_hidden_layers,
            "vt_num_attention_heads": v.num_attention_heads,
            "vt_intermediate_size": v.intermediate_size,
            "init_pos_emb_height": v.pos_emb_height,
            "init_pos_emb_width": v.pos_emb_width,
            "init_pos_emb_time": v.pos_emb_time,
            "pos_emb_type": "divided_fixed",
            "merge_type": "sd2_tpool",
            "video_attn_type": "spatial_temporal",
            "mm_projector_type": "patchmerger",
            "mm_hidden_size": v.hidden_size,
            "projector_hidden_act": "gelu",
            "projector_ln_eps": v.projector_ln_eps,
            "text_hidden_size": v.text_hidden_size,
            # transformers names
            "hidden_size": v.hidden_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "intermediate_size": v.intermediate_size,
            "pos_emb_height": v.pos_emb_height,
            "pos_emb_width": v.pos_emb_width,
            "pos_emb_time": v.pos_emb_time,
            "hidden_act": v.hidden_act,
            "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta},
            # shared
            "patch_size": v.patch_size,
            "merge_kernel_size": list(v.merge_kernel_size),
            "model_type": "kimi_k25_vision",
        }
        return {
            "architectures": ["KimiK25ForConditionalGeneration"],
            "model_type": "kimi_k25",
            "text_config": text,
            "vision_config": vision,
            "media_placeholder_token_id": self.media_placeholder_token_id,
            "image_token_id": self.media_placeholder_token_id,
            "video_token_id": self.video_token_id,
            "projection_hidden_size": v.hidden_size,
            "projection_layer_norm_eps": v.projector_ln_eps,
            "tie_word_embeddings": self.text.tie_word_embeddings,
            "bos_token_id": self.text.bos_token_id,
            "eos_token_id": self.text.eos_token_id,
            "pad_token_id": self.text.pad_token_id,
            "media_proc_cfg": self.media.to_dict(),
            # only where it differs from the release's template, so the released layout stays as shipped
            **({} if self.thinking_default else {"thinking_default": False}),
        }

    @classmethod
    def from_dir(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        d = read_json(path / "config.json", ConfigError)
        media = None
        pre = path / "preprocessor_config.json"
        if pre.exists():  # the released checkpoint keeps media_proc_cfg here
            media = read_json(pre, ConfigError).get("media_proc_cfg")
        return cls.from_dict(d, media)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        (path / "preprocessor_config.json").write_text(
            json.dumps({"media_proc_cfg": self.media.to_dict()}, indent=2) + "\n"
        )
