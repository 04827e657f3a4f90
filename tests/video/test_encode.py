"""Streaming a video through MoonViT-3D: per-chunk embeddings, batching twins, order, and parity with
the transformers vision tower + projector on the same weights."""

from __future__ import annotations

import time

import pytest
import torch
from videogen import write_audio_only

from video import chunk_video, load_video
from video.encode import embed_chunks, encode_video, iter_video_embeddings
from video.errors import NoVideoStreamError
from vision.config import VisionConfig
from vision.model import MoonViT3d


@pytest.fixture
def model() -> MoonViT3d:
    return MoonViT3d.build(VisionConfig.tiny()).eval()


@pytest.fixture
def clip(make_video):
    # 10 frames at 10 fps sampled at 10 fps: chunks of t = 4, 4, 2; 64x48 -> grid 4x6 -> 6 tokens.
    return make_video("clip.mp4", frames=10)


@pytest.mark.parametrize("batch_chunks, prefetch", [(1, 0), (2, 1), (3, 2), (8, 1)])
def test_batching_and_prefetch_do_not_change_embeddings(model, clip, batch_chunks, prefetch):
    chunks = chunk_video(load_video(clip, fps=10.0))
    # Slow twin: each chunk alone through the model.
    with torch.inference_mode():
        alone = [_one(model, c) for c in chunks]
    got = list(iter_video_embeddings(model, clip, fps=10.0, batch_chunks=batch_chunks, prefetch=prefetch))
    assert [g.index for g in got] == [0, 1, 2]
    assert [g.grid for g in got] == [(4, 4, 6), (4, 4, 6), (2, 4, 6)]
    for g, want in zip(got, alone):
        assert g.embeddings.shape == (6, model.cfg.text_hidden_size)
        torch.testing.assert_close(g.embeddings, want, rtol=0, atol=1e-5)


def _one(model: MoonViT3d, chunk) -> torch.Tensor:
    from vision.packing import pack

    return model(pack([(chunk.patches(), chunk.grid)], model.cfg))[0]


def test_chunk_order_is_kept(model, make_video):
    # Reversing the video must reverse the per-chunk embeddings (equal-length chunks: 8 frames -> 2 x 4).
    path = make_video("order.mp4", frames=8)
    forward = encode_video(model, path, fps=10.0)
    chunks = chunk_video(load_video(path, fps=10.0))
    assert [c.timestamp_text for c in forward.chunks] == [c.timestamp_text for c in chunks]
    swapped = list(embed_chunks(model, [chunks[1], chunks[0]]))
    torch.testing.assert_close(swapped[0].embeddings, forward.chunks[1].embeddings, rtol=0, atol=1e-5)
    assert not torch.allclose(forward.chunks[0].embeddings, forward.chunks[1].embeddings)


def test_encoded_video_prompt_and_rows(model, clip):
    encoded = encode_video(model, clip, fps=10.0)
    assert encoded.embeddings.shape == (18, model.cfg.text_hidden_size)
    prompt = encoded.prompt("<P>")
    assert prompt.count("<P>") == 18 and prompt.count("<|media_begin|>video<|media_content|>") == 3
    assert prompt.startswith("00:00:00.000<|media_begin|>") and "00:00:00.400<|media_begin|>" in prompt


def test_bad_input_raises_before_any_encoding(model, tmp_path):
    with pytest.raises(NoVideoStreamError):
        encode_video(model, _wav(tmp_path / "a.wav"))
    with pytest.raises(NoVideoStreamError):
        next(iter_video_embeddings(model, _wav(tmp_path / "b.wav")))


def _wav(path):
    return write_audio_only(path)


def test_progress_bar_shows_for_long_videos(model, make_video, capsys):
    path = make_video("long.mp4", frames=40)
    list(iter_video_embeddings(model, path, fps=10.0, progress=True))
    assert "video chunks" in capsys.readouterr().err


@pytest.mark.parity
@pytest.mark.parametrize("frames", [pytest.param(10, id="t4_t4_t2"), pytest.param(9, id="t4_t4_t1")])
def test_embeddings_match_reference_tower_and_projector(model, make_video, frames):
    pytest.importorskip("transformers")
    from vision.hf_layout import to_transformers

    path = make_video("p.mp4", size=(48, 64), frames=frames)
    ours = encode_video(model, path, fps=10.0, batch_chunks=8)  # one pack mixing t=4 and the tail
    tower, projector = to_transformers(model)
    chunks = chunk_video(load_video(path, fps=10.0))
    # The reference cannot pack items of different t in one call (research/moonvit3d.md §3.4): one
    # call per t-group, and the pooled rows split by h*w/4 per chunk (not t*h*w/4 as its
    # get_video_features does).
    want: dict[int, torch.Tensor] = {}
    for t in sorted({c.num_frames for c in chunks}):
        group = [c for c in chunks if c.num_frames == t]
        pixels = torch.cat([c.patches() for c in group])
        grids = torch.tensor([c.grid for c in group])
        with torch.no_grad():
            pooled = tower(pixels, grid_thw=grids).pooler_output
            rows = projector(pooled).squeeze(1)
        for c, emb in zip(group, rows.split([c.grid[1] * c.grid[2] // 4 for c in group])):
            want[c.index] = emb
    assert sorted(want) == [c.index for c in ours.chunks]
    for c in ours.chunks:
        diff = (c.embeddings - want[c.index]).abs().max().item()
        assert diff <= 1e-4, f"chunk {c.index} (grid {c.grid}): max |diff| {diff:.3g}"


def _counting(chunks, pulled: list[int], fail_at: int | None = None):
    for i, chunk in enumerate(chunks):
        if i == fail_at:
            raise RuntimeError("decoder broke")
        pulled[0] += 1
        yield chunk


def test_encoding_pulls_only_one_batch_ahead(model, make_video):
    # Bounded memory: the encoder holds at most one batch of chunks, never the whole video.
    chunks = chunk_video(load_video(make_video("c.mp4", frames=40), fps=10.0))  # 10 chunks
    pulled = [0]
    it = embed_chunks(model, _counting(chunks, pulled), batch_chunks=4)
    next(it)
    assert pulled[0] == 1  # the first batch is a single chunk: first embeddings as early as possible
    next(it)
    assert pulled[0] == 5
    assert len(list(it)) == 8


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetch_is_bounded_ordered_and_propagates_errors(make_video, depth):
    from video.encode import _prefetched

    chunks = chunk_video(load_video(make_video("c.mp4", frames=40), fps=10.0))
    pulled = [0]
    it = _prefetched(_counting(chunks, pulled), depth)
    first = next(it)
    time.sleep(0.3)  # let the worker run ahead as far as it may
    assert first.index == 0 and pulled[0] <= depth + 2
    assert [c.index for c in it] == list(range(1, 10))
    with pytest.raises(RuntimeError, match="decoder broke"):
        list(_prefetched(_counting(chunks, [0], fail_at=3), depth))
    early = _prefetched(_counting(chunks, [0]), depth)
    next(early)
    early.close()  # the worker stops instead of decoding on
