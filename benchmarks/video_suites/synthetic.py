"""A small synthetic multiple-choice video suite in the generic JSONL format, fully offline and seeded.

Each task family can only be answered from the temporal order of the frames (research/video.md §5.3):
  direction     a square crosses the frame; which way did it move?
  colour_order  a square changes colour three times; which colour came second?
  flash_count   the frame flashes white k times; how many flashes?
  first_appear  two squares appear at different times; which appeared first?
Clips are 96x64 at 8 fps, 2 / 4 / 8 s long (tagged `duration_bucket` "2s" / "4s" / "8s"), so at
2 fps sampling they are 1, 2 and 4 four-frame chunks; events last >= 1 s so 2 fps sampling sees them.

The generator interface (shared with the training generators, which may pass their own):
    Generator = Callable[[random.Random, float], Clip]   (rng, duration in seconds)
    Clip(frames (T, H, W, 3) uint8 at FPS, question, options, answer index, task_type)
`make_suite(out_dir, n, seed, generators=GENERATORS)` writes `videos/*.mp4` and
`annotations.jsonl`, cycling through families and durations. Training uses seeds below
HELD_OUT_SEED; evaluation seeds start there, so the suite is held out.

`make_training_suite(out_dir, n)` builds the suite from the bundled model's own training generators
(`training.generators`, splits "heldout" and "long": seeds never trained on), turning each open
question into lettered options (the right answer plus same-kind distractors). `make_suite(...,
source="auto")` uses them when they are importable, else the built-in families above.

    python -m benchmarks.video_suites.synthetic OUT_DIR [--n 24] [--seed 100000] [--source auto|training|builtin]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS = 8
SIZE = (96, 64)  # width, height
DURATIONS = (2.0, 4.0, 8.0)
HELD_OUT_SEED = 100_000
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (240, 220, 40),
           "purple": (150, 60, 200)}  # fmt: skip
BACKGROUND = (20, 20, 20)
SQUARE = 16


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 at FPS
    question: str
    options: tuple[str, ...]
    answer: int
    task_type: str


Generator = Callable[[random.Random, float], Clip]


def _canvas(n: int) -> np.ndarray:
    w, h = SIZE
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = BACKGROUND
    return frames


def direction(rng: random.Random, duration: float) -> Clip:
    n = int(duration * FPS)
    w, h = SIZE
    options = ("left to right", "right to left", "top to bottom", "bottom to top")
    answer = rng.randrange(4)
    colour = COLOURS[rng.choice(list(COLOURS))]
    frames = _canvas(n)
    for i in range(n):
        f = i / max(n - 1, 1)
        if answer in (0, 1):
            x = round((f if answer == 0 else 1 - f) * (w - SQUARE))
            y = (h - SQUARE) // 2
        else:
            y = round((f if answer == 2 else 1 - f) * (h - SQUARE))
            x = (w - SQUARE) // 2
        frames[i, y : y + SQUARE, x : x + SQUARE] = colour
    return Clip(frames, "In which direction does the square move?", options, answer, "direction")


def colour_order(rng: random.Random, duration: float) -> Clip:
    n = int(duration * FPS)
    names = rng.sample(list(COLOURS), 3)
    frames = _canvas(n)
    w, h = SIZE
    for i in range(n):
        colour = COLOURS[names[min(3 * i // n, 2)]]
        frames[i, (h - 24) // 2 : (h + 24) // 2, (w - 24) // 2 : (w + 24) // 2] = colour
    options = list(COLOURS)[:4] if names[1] in list(COLOURS)[:4] else [*list(COLOURS)[:3], names[1]]
    rng.shuffle(options)
    return Clip(frames, "The square changes colour over time. Which colour does it show second?",
                tuple(options), options.index(names[1]), "colour_order")  # fmt: skip


def flash_count(rng: random.Random, duration: float) -> Clip:
    n = int(duration * FPS)
    slots = max(1, int(duration) // 2)  # one flash per 2 s slot at most: 1 s on, >= 1 s off
    k = rng.randint(1, slots)
    frames = _canvas(n)
    for slot in sorted(rng.sample(range(slots), k)):
        a = slot * 2 * FPS + rng.randrange(0, FPS // 2 + 1) if duration > 2 else 0
        frames[a : a + FPS] = (250, 250, 250)
    options = ("1", "2", "3", "4", "5")
    return Clip(frames, "How many times does the screen flash white?", options, k - 1, "flash_count")


def first_appear(rng: random.Random, duration: float) -> Clip:
    n = int(duration * FPS)
    names = rng.sample(["red", "green", "blue", "yellow"], 2)
    frames = _canvas(n)
    w, h = SIZE
    t1 = rng.randrange(0, max(1, n // 4))
    t2 = rng.randrange(n // 2, max(n // 2 + 1, n - FPS))
    frames[t1:, 8 : 8 + SQUARE, 10 : 10 + SQUARE] = COLOURS[names[0]]
    frames[t2:, h - 8 - SQUARE : h - 8, w - 10 - SQUARE : w - 10] = COLOURS[names[1]]
    options = [f"the {c} square" for c in ("red", "green", "blue", "yellow")]
    return Clip(frames, "Two squares appear one after the other. Which square appears first?",
                tuple(options), options.index(f"the {names[0]} square"), "first_appear")  # fmt: skip


GENERATORS: dict[str, Generator] = {
    "direction": direction,
    "colour_order": colour_order,
    "flash_count": flash_count,
    "first_appear": first_appear,
}


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> Path:
    """Write uint8 (T, H, W, 3) frames as MPEG-4 Part 2 at high quality (flat colours survive)."""
    import av

    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_training_suite(out_dir: str | Path, n: int = 20, long_every: int = 4) -> Path:
    """`n` held-out questions from `training.generators` (every `long_every`-th from the "long" split)."""
    from training.generators import sample
    from training.generators.videos import FPS as TRAIN_FPS
    from training.generators.videos import TASKS, options_for

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        split = "long" if long_every and i % long_every == long_every - 1 else "heldout"
        task = TASKS[i % len(TASKS)]
        s = sample(split, i, family="video", task=task)
        frames = next(p["video"] for p in s.messages[-1]["content"] if p.get("type") == "video")
        question = next(p["text"] for p in s.messages[-1]["content"] if p.get("type") == "text")
        options = options_for(task, s.answer, question, random.Random(f"options/{split}/{i}"))
        name = f"videos/{i:04d}_{split}_{task}.mp4"
        _write_frames(out / name, frames, TRAIN_FPS)
        seconds = len(frames) / TRAIN_FPS
        bucket = (
            "16-32s (long)"
            if split == "long"
            else ("2-4s" if seconds <= 4 else "6-8s" if seconds <= 8 else "10-12s")
        )
        lines.append({
            "id": f"{split}-{i:04d}", "video": name, "question": question, "options": options,
            "answer": "ABCDEFGHIJ"[options.index(s.answer)], "duration": seconds,
            "tags": {"task_type": task, "duration_bucket": bucket, "split": split, "source": "training.generators"},
        })  # fmt: skip
    path = out / "annotations.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _write_frames(path: Path, frames: list, fps: float) -> Path:
    arr = np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])
    h, w = arr.shape[1] - arr.shape[1] % 2, arr.shape[2] - arr.shape[2] % 2
    return write_mp4(path, np.ascontiguousarray(arr[:, :h, :w]), fps=int(fps))


def make_suite(
    out_dir: str | Path,
    n: int = 24,
    seed: int = HELD_OUT_SEED,
    generators: dict[str, Generator] | None = None,
    durations: tuple[float, ...] = DURATIONS,
    source: str = "builtin",
) -> Path:
    """Write `n` clips and their questions under `out_dir`; returns the annotations.jsonl path.

    source: "builtin" (the families above, from `seed`), "training" (`make_training_suite`), or
    "auto" (training when importable).
    """
    if source in ("training", "auto"):
        try:
            return make_training_suite(out_dir, n)
        except ImportError:
            if source == "training":
                raise
    generators = generators or GENERATORS
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    families = list(generators)
    lines = []
    for i in range(n):
        rng = random.Random(seed * 1_000 + i)
        family = families[i % len(families)]
        duration = durations[(i // len(families)) % len(durations)]
        clip = generators[family](rng, duration)
        name = f"videos/{i:04d}_{family}.mp4"
        write_mp4(out / name, clip.frames)
        lines.append({
            "id": f"syn-{seed}-{i:04d}", "video": name, "question": clip.question, "options": list(clip.options),
            "answer": "ABCDEFGHIJ"[clip.answer], "duration": len(clip.frames) / FPS,
            "tags": {"task_type": clip.task_type, "duration_bucket": f"{duration:g}s", "seed": str(seed)},
        })  # fmt: skip
    path = out / "annotations.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--source", choices=("auto", "training", "builtin"), default="auto")
    args = ap.parse_args(argv)
    print(make_suite(args.out_dir, args.n, args.seed, source=args.source))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
