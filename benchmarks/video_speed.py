"""Video path speed and memory: ours (streamed) vs the transformers reference (all frames loaded).

    python -m benchmarks.video_speed            # 1, 5 and 20 minute videos
    python -m benchmarks.video_speed --quick    # 0.5, 1 and 2 minutes

For synthetic 640x360 25 fps H.264 videos (generated once into a cache dir, cheap content, x264
ultrafast) it measures, each run in a fresh subprocess so peak RSS belongs to that run alone:
- sampled decode: `video.open_video` at 2 fps, kept and decoded frames per second;
- ours: decode -> chunks -> a few-layer MoonViT-3D (`--layers`, default 2; the K2.5 widths would
  take hours on 2 cores, and the point here is the pipeline's shape) streamed chunk batch by chunk
  batch: time to the first chunk's embeddings, total time, peak RSS;
- reference: `transformers.video_utils.load_video` (PyAV, its default 2 fps sampler) loading all
  sampled frames, `Kimi_K25VideoProcessor` on all of them, then its vision tower + projector on the
  first chunk (time to first embeddings, peak RSS); longer videos than `--reference-max-minutes`
  are skipped (their peak would be several GB of float32 pixels: estimated in the table instead).
Then it checks that our peak RSS is flat (within 20%) from the shortest to the longest video, and
prints LM tokens per minute of video for our defaults next to other models' published defaults.
Human table first, one JSON line last; the JSON is also saved under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, SOURCE_FPS = 640, 360, 25
FLAT_TOLERANCE = 0.20


# --- synthetic videos ----------------------------------------------------------------------------------


def make_video(path: Path, minutes: float) -> Path:
    """Write a 640x360 25 fps H.264 clip of `minutes`: a square moving over a gradient, cheap to encode."""
    import av
    from tqdm import tqdm

    if path.exists():
        return path
    frames = round(minutes * 60 * SOURCE_FPS)
    background = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    background[..., 0] = np.linspace(20, 120, WIDTH, dtype=np.uint8)[None, :]
    background[..., 2] = np.linspace(120, 20, HEIGHT, dtype=np.uint8)[:, None]
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}  # keyint stays x264's default 250
        for i in tqdm(range(frames), desc=f"writing {path.name}", unit="frame", mininterval=5):
            img = background.copy()
            x, y = (i * 7) % (WIDTH - 48), (i * 3) % (HEIGHT - 48)
            img[y : y + 48, x : x + 48] = 255
            img[:8, : (i // SOURCE_FPS) % WIDTH] = 200  # seconds bar
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


# --- workers (each runs in its own process) --------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _available_gb() -> float:
    from benchmarks.common import mem_available  # torch with it: kept out of the workers' imports

    return mem_available() / 2**30


def _model(layers: int):
    import torch

    from vision.config import VisionConfig
    from vision.model import MoonViT3d

    torch.manual_seed(0)
    cfg = VisionConfig.k25(
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        num_hidden_layers=layers,
        text_hidden_size=64,
    )
    return MoonViT3d.build(cfg).eval()


def worker_decode(path: str, fps: float) -> dict:
    from video import open_video

    start = time.perf_counter()
    reader = open_video(path, fps)
    with reader:
        kept = sum(1 for _ in reader)
    seconds = time.perf_counter() - start
    return {
        "kept": kept,
        "decoded": reader.stats.decoded,
        "seconds": seconds,
        "kept_fps": kept / seconds,
        "decoded_fps": reader.stats.decoded / seconds,
        "peak_rss_mb": _peak_mb(),
    }


def worker_ours(path: str, fps: float, layers: int, batch_chunks: int) -> dict:
    import torch

    from video.encode import iter_video_embeddings

    torch.set_num_threads(2)
    model = _model(layers)
    base = _rss_mb()
    start = time.perf_counter()
    first, chunks, tokens = None, 0, 0
    for emb in iter_video_embeddings(model, path, fps, batch_chunks=batch_chunks, progress=False):
        if first is None:
            first = time.perf_counter() - start
        chunks += 1
        tokens += emb.embeddings.shape[0]  # consumed as it comes: the output is the caller's to keep
    seconds = time.perf_counter() - start
    return {
        "chunks": chunks,
        "tokens": tokens,
        "first_embeddings_s": first,
        "seconds": seconds,
        "chunks_per_s": chunks / seconds,
        "baseline_rss_mb": base,
        "peak_rss_mb": _peak_mb(),
    }


def worker_reference(path: str, fps: float, layers: int) -> dict:
    import torch
    from transformers import Kimi_K25VideoProcessor
    from transformers.video_utils import load_video

    from vision.hf_layout import to_transformers

    torch.set_num_threads(2)
    tower, projector = to_transformers(_model(layers))
    base = _rss_mb()
    start = time.perf_counter()
    frames, _meta = load_video(path, fps=fps, backend="pyav")  # all sampled frames, uint8 (T, H, W, 3)
    loaded = time.perf_counter() - start
    out = Kimi_K25VideoProcessor()(videos=[frames], do_sample_frames=False, return_tensors="pt")
    processed = time.perf_counter() - start
    grid = out["video_grid_thw"][:1]
    first_patches = out["pixel_values_videos"][: int(grid.prod())]
    with torch.no_grad():
        projector(tower(first_patches, grid_thw=grid).pooler_output)
    first = time.perf_counter() - start
    return {
        "frames": int(frames.shape[0]),
        "load_s": loaded,
        "load_fps": frames.shape[0] / loaded,
        "preprocess_s": processed - loaded,
        "first_embeddings_s": first,
        "baseline_rss_mb": base,
        "peak_rss_mb": _peak_mb(),
    }


def run_worker(kind: str, path: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.video_speed",
        "--worker",
        kind,
        "--video",
        str(path),
        "--fps",
        str(args.fps),
        "--layers",
        str(args.layers),
        "--batch-chunks",
        str(args.batch_chunks),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1]
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- LM tokens per minute ------------------------------------------------------------------------------


def _round_by(x: float, f: int) -> int:
    return max(f, round(x / f) * f)


def tokens_per_minute(minutes: float) -> dict[str, dict]:
    """LM tokens that a `minutes`-long 640x360 video costs under each model's published defaults."""
    from video.sample import moonshot_indices
    from vision.preprocess import num_tokens

    n_src = round(minutes * 60 * SOURCE_FPS)
    ours_frames = len(moonshot_indices(n_src, SOURCE_FPS, 2.0))
    ours = -(-ours_frames // 4) * num_tokens(HEIGHT, WIDTH, video=True)

    def qwen(factor: int, frame_cap: int, total_pixels: float, min_pixels: float, max_pixels: float) -> int:
        # qwen-vl-utils smart_nframes (2 fps, even count, at most 768 frames) + smart_resize with the
        # per-frame budget max(min(max_pixels, total / nframes * 2), min_pixels * 1.05).
        nframes = min(max(round(minutes * 60 * 2 / 2) * 2, 4), frame_cap)
        budget = max(min(max_pixels, total_pixels / nframes * 2), min_pixels * 1.05)
        h, w = _round_by(HEIGHT, factor), _round_by(WIDTH, factor)
        if h * w > budget:
            beta = (HEIGHT * WIDTH / budget) ** 0.5
            h, w = int(HEIGHT / beta // factor * factor), int(WIDTH / beta // factor * factor)
        return nframes // 2 * (h // factor) * (w // factor)

    rows = {
        "ours (K2.5 defaults: 2 fps, 4-frame chunks, 4096 patches/frame)": (
            ours,
            "MediaConfig defaults = released media_proc_cfg (research/moonvit3d.md §1.3)",
        ),
        "Qwen2.5-VL (qwen-vl-utils defaults)": (
            qwen(28, 768, 128000 * 28 * 28 * 0.9, 128 * 28 * 28, 768 * 28 * 28),
            "QwenLM/Qwen2.5-VL qwen-vl-utils vision_process.py: FPS 2, FRAME_FACTOR 2, FPS_MAX_FRAMES 768, "
            "VIDEO_MAX_PIXELS 768*28*28, VIDEO_TOTAL_PIXELS 128000*28*28*0.9",
        ),
        "Qwen3-VL (qwen-vl-utils defaults)": (
            qwen(32, 768, 128000 * 32 * 32 * 0.9, 128 * 32 * 32, 768 * 32 * 32),
            "QwenLM/Qwen3-VL qwen-vl-utils vision_process.py: patch 16 x merge 2, FPS 2, VIDEO_MAX_TOKEN_NUM 768, "
            "MODEL_SEQ_LEN 128000 (text timestamps not counted)",
        ),
        "Gemini API (default media resolution)": (
            round(minutes * 60 * 258),
            "ai.google.dev/gemini-api/docs/video-understanding: 1 fps, 258 tokens/frame (66 at low), "
            "audio 32 tokens/s not counted",
        ),
        "LLaVA-Video-7B-Qwen2": (
            64 * 196,
            "huggingface.co/lmms-lab/LLaVA-Video-7B-Qwen2: at most 64 frames; 196 tokens/frame = SigLIP 27x27 "
            "pooled with stride 2 (derived)",
        ),
        "LLaVA-OneVision (lmms-eval)": (
            32 * 196,
            "lmms-eval llava_onevision.py: max_frames_num 32, mm_spatial_pool_stride 2 -> 196 tokens/frame",
        ),
    }
    return {name: {"tokens": t, "per_minute": t / minutes, "source": src} for name, (t, src) in rows.items()}


# --- driver ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="0.5, 1, 2 minute videos instead of 1, 5, 20")
    p.add_argument("--minutes", type=float, nargs="+")
    p.add_argument("--cache", type=Path, default=RESULTS / "videos")
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-chunks", type=int, default=4)
    p.add_argument("--reference-max-minutes", type=float, default=5.0)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--worker", choices=["decode", "ours", "reference"])
    p.add_argument("--video")
    args = p.parse_args(argv)

    if args.worker:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        if args.worker == "decode":
            out = worker_decode(args.video, args.fps)
        elif args.worker == "ours":
            out = worker_ours(args.video, args.fps, args.layers, args.batch_chunks)
        else:
            out = worker_reference(args.video, args.fps, args.layers)
        print(json.dumps(out))
        return

    from tqdm import tqdm

    minutes = args.minutes or ([0.5, 1.0, 2.0] if args.quick else [1.0, 5.0, 20.0])
    args.cache.mkdir(parents=True, exist_ok=True)
    videos = {m: make_video(args.cache / f"synthetic_{WIDTH}x{HEIGHT}_{m:g}min.mp4", m) for m in minutes}
    runs: dict[float, dict] = {m: {} for m in minutes}
    jobs = [(m, kind) for m in minutes for kind in ("decode", "ours", "reference")]
    for m, kind in tqdm(jobs, desc="runs", unit="run"):
        if kind == "reference":
            # Measured: the reference holds ~12.5 MB per sampled 640x360 frame (uint8 frames, padded,
            # normalized and patchified float32 copies) on top of ~0.8 GB of imports and weights.
            est_gb = (round(m * 60 * args.fps) * 12.5 + 800) / 1024
            if args.no_reference or m > args.reference_max_minutes or est_gb > 0.6 * _available_gb():
                runs[m][kind] = {"skipped": True, "est_peak_gb": est_gb}
                continue
        runs[m][kind] = run_worker(kind, videos[m], args)

    print(
        f"\nvideo path, {WIDTH}x{HEIGHT} {SOURCE_FPS} fps H.264, sampled at {args.fps:g} fps; "
        f"MoonViT-3D with {args.layers} layers of width 64 (not K2.5 size); CPU threads 2"
    )
    head = (
        f"{'min':>5} {'kept':>6} {'dec f/s':>8} {'kept f/s':>8} | {'ours 1st':>8} {'ours tot':>8} {'ours MB':>8} | "
        f"{'ref load f/s':>12} {'ref 1st':>8} {'ref MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for m in minutes:
        d, o, r = runs[m]["decode"], runs[m]["ours"], runs[m]["reference"]
        ref = (
            f"{r['load_fps']:12.1f} {r['first_embeddings_s']:8.1f} {r['peak_rss_mb']:8.0f}"
            if "load_fps" in r
            else f"{'skipped':>12} {'-':>8} {'~' + format(r.get('est_peak_gb', 0), '.1f') + 'GB':>8}"
            if r.get("skipped")
            else f"{'error':>12} {r.get('error', '')[:30]}"
        )
        print(
            f"{m:5g} {d.get('kept', 0):6d} {d.get('decoded_fps', 0):8.1f} {d.get('kept_fps', 0):8.1f} | "
            f"{o.get('first_embeddings_s', 0):8.2f} {o.get('seconds', 0):8.1f} {o.get('peak_rss_mb', 0):8.0f} | {ref}"
        )

    peaks = [runs[m]["ours"].get("peak_rss_mb") for m in minutes]
    flat = None
    if all(peaks):
        flat = peaks[-1] / peaks[0] - 1
        verdict = "OK" if abs(flat) <= FLAT_TOLERANCE else "NOT FLAT"
        print(
            f"\nours peak RSS {peaks[0]:.0f} MB at {minutes[0]:g} min -> {peaks[-1]:.0f} MB at {minutes[-1]:g} min: "
            f"{flat:+.1%} ({verdict}, tolerance {FLAT_TOLERANCE:.0%})"
        )

    tokens = {m: tokens_per_minute(m) for m in minutes}
    print(f"\nLM tokens per minute of {WIDTH}x{HEIGHT} video (video tokens only)")
    names = list(tokens[minutes[0]])
    print(f"{'model':58} " + " ".join(f"{m:>9g}m" for m in minutes))
    for name in names:
        print(f"{name[:58]:58} " + " ".join(f"{tokens[m][name]['per_minute']:10.0f}" for m in minutes))

    result = {
        "benchmark": "video_speed",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "minutes": minutes,
            "fps": args.fps,
            "layers": args.layers,
            "batch_chunks": args.batch_chunks,
            "size": [WIDTH, HEIGHT],
            "source_fps": SOURCE_FPS,
        },
        "runs": {f"{m:g}": runs[m] for m in minutes},
        "ours_peak_rss_growth": flat,
        "memory_flat": None if flat is None else abs(flat) <= FLAT_TOLERANCE,
        "tokens": {
            f"{m:g}": {k: {"tokens": v["tokens"], "per_minute": v["per_minute"]} for k, v in t.items()}
            for m, t in tokens.items()
        },
        "token_sources": {k: v["source"] for k, v in tokens[minutes[0]].items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"video_speed-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
