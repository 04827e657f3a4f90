"""Shared fixtures: deterministic seeds, a tiny random multimodal model on disk, small media."""

from __future__ import annotations

import random
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mm_model.checkpoint import save_model
from mm_model.config import ModelConfig
from mm_model.multimodal import KimiK25Model
from mm_model.tokenizer import JsonTokenizer, train_tokenizer


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # CI has 2 cores; keep intra-op threads bounded so parallel work does not oversubscribe.
    torch.set_num_threads(min(2, torch.get_num_threads()))


CORPUS = [
    "hello world, the cat sat on the mat. what is in the picture? a red square and a blue circle.",
    "the video shows a ball moving left to right; then it turns green. answer with one word.",
    "Settings dialog: Name, Email, City, Save, Cancel. How many boxes are checked? Two.",
]


def randomize_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Random weights far from the init (norm scales near 1, random biases) so mismatches show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "layernorm" in name):
                p.copy_(1 + std * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    return model


@pytest.fixture(scope="session")
def tokenizer() -> JsonTokenizer:
    return train_tokenizer(CORPUS * 10, 360)


@pytest.fixture(scope="session")
def tiny_cfg(tokenizer) -> ModelConfig:
    return ModelConfig.tiny(
        vocab_size=tokenizer.vocab_size, media_placeholder_token_id=tokenizer.special_tokens["<|media_pad|>"]
    )


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_cfg, tokenizer) -> Path:
    torch.manual_seed(1234)
    model = randomize_(KimiK25Model.build(tiny_cfg))
    path = tmp_path_factory.mktemp("tiny_model")
    save_model(model, path)
    tokenizer.save(path / "tokenizer.json")
    return path


def write_video(path: Path, frames: int = 25, fps: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            arr = np.zeros((h, w, 3), np.uint8)
            arr[:, : (i * w) // frames + 4] = (255, 80, 0)  # a bar that grows: frames differ
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture
def images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (90, 50, 3), dtype=np.uint8)),
    ]
