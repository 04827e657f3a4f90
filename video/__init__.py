"""Videos as first-class inputs: decode (PyAV), sample, 4-frame chunks, streamed with bounded memory.

video.load_video(source, fps=2.0, max_frames=None) -> DecodedVideo(frames (T, H, W, 3) uint8,
    timestamps (T,) seconds, indices, info, stats)
video.iter_chunks(source, fps=2.0, chunk_frames=4, ...) -> ChunkStream of VideoChunk(pixels
    (t, 3, H, W), grid (t, h, w), timestamps, timestamp_text "HH:MM:SS.mmm")
"""

from video.chunks import ChunkStream, VideoChunk, chunk_video, iter_chunks, stack_chunks, video_plan
from video.decode import DecodedVideo, DecodeLimits, ImageSequence, VideoInfo, load_video, open_video
from video.encode import ChunkEmbedding, EncodedVideo, embed_chunks, encode_video, iter_video_embeddings
from video.errors import (
    EmptyVideoError,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedCodecError,
    VideoDecodeError,
    VideoError,
    VideoOpenError,
    VideoTooLargeError,
)
from video.sample import format_timestamp, moonshot_indices, sample_indices, transformers_indices

__all__ = [
    "ChunkEmbedding",
    "ChunkStream",
    "DecodeLimits",
    "DecodedVideo",
    "EmptyVideoError",
    "EncodedVideo",
    "ImageSequence",
    "NoVideoStreamError",
    "TruncatedVideoWarning",
    "UnsupportedCodecError",
    "VideoChunk",
    "VideoDecodeError",
    "VideoError",
    "VideoInfo",
    "VideoOpenError",
    "VideoTooLargeError",
    "chunk_video",
    "embed_chunks",
    "encode_video",
    "format_timestamp",
    "iter_chunks",
    "iter_video_embeddings",
    "load_video",
    "moonshot_indices",
    "open_video",
    "sample_indices",
    "stack_chunks",
    "transformers_indices",
    "video_plan",
]
