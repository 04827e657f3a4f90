"""Stream a video through MoonViT-3D: chunk batches in, per-chunk LM embeddings + timestamps out.

A few chunks at a time are packed (`vision.packing.pack`) and encoded; the next batch is decoded on
a background thread meanwhile (`prefetch` batches ahead, bounded), so the working set is
`batch_chunks * (prefetch + 2)` chunks whatever the video's length. The embeddings themselves are
the output and grow with the video, (h/2)*(w/2) rows per chunk: keep them or consume them as they
come (`iter_video_embeddings`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from video.chunks import MEDIA_BEGIN, MEDIA_END, VideoChunk, iter_chunks
from video.decode import DecodeLimits, DecodeStats, VideoInfo, VideoSource
from vision.config import MediaConfig, VisionConfig
from vision.packing import pack

# Show a progress bar by default from this many chunks (one minute of video at 2 fps).
PROGRESS_MIN_CHUNKS = 30


@dataclass(frozen=True)
class ChunkEmbedding:
    """One chunk's LM embeddings, (tokens, text_hidden_size) with tokens = (h/2)*(w/2), and its place in time."""

    index: int
    embeddings: Tensor
    grid: tuple[int, int, int]
    timestamps: tuple[float, ...]
    timestamp_text: str

    def prompt(self, pad_token: str = "<|media_pad|>") -> str:
        """The chunk's prompt text, one `pad_token` per embedding row."""
        return f"{self.timestamp_text}{MEDIA_BEGIN}{pad_token * self.embeddings.shape[0]}{MEDIA_END}"


@dataclass
class EncodedVideo:
    """All chunks of a video encoded: `chunks` in temporal order, plus the container `info`."""

    chunks: list[ChunkEmbedding]
    info: VideoInfo
    stats: DecodeStats | None = field(default=None, repr=False)

    @property
    def embeddings(self) -> Tensor:
        """(sum of tokens, text_hidden_size): every chunk's rows, in order (what the LM splices in)."""
        return torch.cat([c.embeddings for c in self.chunks])

    def prompt(self, pad_token: str = "<|media_pad|>") -> str:
        """Chunk prompts concatenated with no separator, as the reference processor expands a video."""
        return "".join(c.prompt(pad_token) for c in self.chunks)


def embed_chunks(
    model: nn.Module,
    chunks: Iterable[VideoChunk],
    *,
    batch_chunks: int = 8,
    backend: str = "auto",
    total: int | None = None,
    progress: bool | None = None,
) -> Iterator[ChunkEmbedding]:
    """Encode chunks `batch_chunks` at a time with a `MoonViT3d`, yielding each chunk's embeddings in order.

    Chunks of different t (a video's t=1..3 tail) pack together with the t=4 ones: the encoder keeps
    items apart by `cu_seqlens`. Pixels move to the model's device and dtype. The first batch holds
    one chunk, so the first embeddings come out as early as possible (a consumer can start on them).
    """
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    vcfg: VisionConfig = model.cfg
    param = next(model.parameters())
    show = progress if progress is not None else (total or 0) >= PROGRESS_MIN_CHUNKS
    bar = tqdm(total=total, unit="chunk", desc="video chunks", disable=not show, leave=False)
    try:
        for batch in _batched(chunks, batch_chunks, first=1):
            packed = pack([(c.patches(), c.grid) for c in batch], vcfg).to(param.device, param.dtype)
            with torch.inference_mode():
                outputs = model(packed, backend)
            for chunk, out in zip(batch, outputs):
                yield ChunkEmbedding(chunk.index, out, chunk.grid, chunk.timestamps, chunk.timestamp_text)
            bar.update(len(batch))
    finally:
        bar.close()


def iter_video_embeddings(
    model: nn.Module,
    source: VideoSource,
    fps: float = 2.0,
    max_frames: int | None = None,
    *,
    batch_chunks: int = 8,
    prefetch: int = 1,
    cfg: MediaConfig | None = None,
    rule: str = "moonshot",
    limits: DecodeLimits | None = None,
    backend: str = "auto",
    progress: bool | None = None,
) -> Iterator[ChunkEmbedding]:
    """Decode, chunk and encode `source` as a stream; memory stays flat as the video grows.

    A generator: the video is opened (and bad input raised) on the first `next()`. `prefetch` batches
    of chunks are decoded ahead on a background thread (0 = decode inline).
    """
    cfg = cfg or MediaConfig()
    stream = iter_chunks(
        source, fps, cfg.temporal_merge_kernel_size, max_frames=max_frames, cfg=cfg, rule=rule, limits=limits
    )
    chunks = _prefetched(stream, prefetch * batch_chunks)
    yield from embed_chunks(
        model, chunks, batch_chunks=batch_chunks, backend=backend, total=stream.num_chunks, progress=progress
    )


def encode_video(
    model: nn.Module,
    source: VideoSource,
    fps: float = 2.0,
    max_frames: int | None = None,
    *,
    batch_chunks: int = 8,
    prefetch: int = 1,
    cfg: MediaConfig | None = None,
    rule: str = "moonshot",
    limits: DecodeLimits | None = None,
    backend: str = "auto",
    progress: bool | None = None,
) -> EncodedVideo:
    """All chunk embeddings of a video, in order, with its metadata (the stream of
    `iter_video_embeddings`, collected; bad input raises here)."""
    cfg = cfg or MediaConfig()
    stream = iter_chunks(
        source, fps, cfg.temporal_merge_kernel_size, max_frames=max_frames, cfg=cfg, rule=rule, limits=limits
    )
    chunks = _prefetched(stream, prefetch * batch_chunks)
    embedded = embed_chunks(
        model, chunks, batch_chunks=batch_chunks, backend=backend, total=stream.num_chunks, progress=progress
    )
    return EncodedVideo(list(embedded), stream.info, stream.stats)


def _batched(items: Iterable[VideoChunk], size: int, first: int | None = None) -> Iterator[list[VideoChunk]]:
    batch: list[VideoChunk] = []
    want = first or size
    for item in items:
        batch.append(item)
        if len(batch) == want:
            yield batch
            batch, want = [], size
    if batch:
        yield batch


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def _prefetched(items: Iterable[VideoChunk], depth: int) -> Iterator[VideoChunk]:
    """Iterate `items` on a worker thread, at most `depth` ahead; errors re-raise here, in order.

    PyAV, PIL's resize and torch release the GIL, so decoding the next chunks overlaps the encoder.
    """
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="video-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()


__all__ = ["ChunkEmbedding", "EncodedVideo", "embed_chunks", "encode_video", "iter_video_embeddings"]
