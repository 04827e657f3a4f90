"""Short synthetic videos (frames at 2 fps, so chunk k of 4 frames starts at 2k s).

Tasks: direction of a moving shape, order of colour changes, number of flashes, which shape
appears first, the colour at a given timestamp. Events are aligned to 4-frame chunks (the unit
MoonViT-3D pools over time). Seen lengths: 4..24 frames (mostly <= 16); long (eval only): 32..64
frames, longer than any training video.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from pathlib import Path

from PIL import Image

from training.generators.common import (
    COLOUR_NAMES,
    COLOURS,
    QA,
    SHAPES,
    Sample,
    Wording,
    background,
    draw_shape,
    numbered,
    scene_object,
    worded,
)

TASKS = ("direction", "colour_order", "flashes", "first_appear", "at_time")
FPS = 2.0
CHUNK = 4


def stamp(chunk: int) -> str:
    """The prompt's timestamp text of chunk `chunk` (`HH:MM:SS.mmm`)."""
    ms = round(chunk * CHUNK / FPS * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def second(chunk: int) -> str:
    """A chunk's time in a thinking trace, in whole seconds: '04s'. The tiny LM lost its place writing
    the prompt's `00:00:04.000` (seven tokens, four of them alike at every chunk: its traces ran on as
    `00:00:00:00...`), while '04' is the one token of the prompt's stamp that tells the chunks apart."""
    return f"{round(chunk * CHUNK / FPS):02d}s"


def timed(colours: list[str]) -> str:
    """A trace of chunk colours from the first chunk on, each at its time: '00s red, 02s blue.'."""
    return ", ".join(f"{second(c)} {col}" for c, col in enumerate(colours)) + "."


def frame_size(rng: random.Random) -> tuple[int, int]:
    return rng.randint(56, 98), rng.randint(56, 98)


def num_chunks(rng: random.Random, long: bool, low: int = 1) -> int:
    if long:
        return rng.randint(8, 16)
    return max(low, rng.choice((1, 2, 2, 3, 3, 4, 4, 5, 6)))


def frames_of(per_chunk: list, draw_fn, size: tuple[int, int], bg: tuple[int, int, int]) -> list[Image.Image]:
    w, h = size
    out = []
    for c, state in enumerate(per_chunk):
        for f in range(CHUNK):
            image = Image.new("RGB", (w, h), bg)
            draw_fn(image, state, c * CHUNK + f)
            out.append(image)
    return out


def _draw(image: Image.Image, items: list[tuple[str, str, float, float, float]]) -> None:
    from PIL import ImageDraw

    d = ImageDraw.Draw(image)
    for shape, colour, x, y, r in items:
        draw_shape(d, shape, x, y, r, COLOURS[colour])


Made = tuple[list[Image.Image], QA, list[list[dict]] | None]  # frames, question, objects per chunk


def direction(rng: random.Random, size: tuple[int, int], long: bool) -> Made:
    w, h = size
    n = num_chunks(rng, long) * CHUNK
    shape, colour = rng.choice(SHAPES), rng.choice(COLOUR_NAMES)
    r = rng.uniform(7, 10)
    way = rng.choice(("left", "right", "up", "down"))
    span_x, span_y = (r + 2, w - r - 2), (r + 2, h - r - 2)
    other = rng.uniform(*span_y) if way in ("left", "right") else rng.uniform(*span_x)
    start, end = span_x if way in ("left", "right") else span_y
    if way in ("left", "up"):
        start, end = end, start
    frames = []
    bg = background(rng)
    for i in range(n):
        t = i / max(1, n - 1)
        pos = start + (end - start) * t
        x, y = (pos, other) if way in ("left", "right") else (other, pos)
        image = Image.new("RGB", (w, h), bg)
        _draw(image, [(shape, colour, x, y, r)])
        frames.append(image)
    # no per-chunk objects: the shape moves within a chunk
    qa = QA("direction", f"Which way does the {colour} {shape} move?", way,
            slots={"kind": "video/direction", "colour": colour, "shape": shape})  # fmt: skip
    return frames, qa, None


def colour_order(rng: random.Random, size: tuple[int, int], long: bool) -> Made:
    w, h = size
    k = rng.randint(2, 3)
    colours = rng.sample(COLOUR_NAMES, k)
    total = num_chunks(rng, long, low=k)
    cuts = sorted(rng.sample(range(1, total), k - 1))
    per_chunk = []
    for c in range(total):
        per_chunk.append(colours[sum(c >= cut for cut in cuts)])
    shape = rng.choice(SHAPES)
    r = min(w, h) * rng.uniform(0.2, 0.3)
    x, y = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
    frames = frames_of(
        per_chunk, lambda im, col, f: _draw(im, [(shape, col, x, y, r)]), size, background(rng)
    )
    # the trace: each chunk's colour at its time, then the answer drops the repeats
    qa = QA("colour_order", f"In what order does the {shape} change colour?", ", ".join(colours), timed(per_chunk),
            slots={"kind": "video/colour_order", "shape": shape})  # fmt: skip
    return frames, qa, [[scene_object(shape, col, x, y, r)] for col in per_chunk]


def flashes(rng: random.Random, size: tuple[int, int], long: bool) -> Made:
    w, h = size
    n = rng.randint(1, 3)
    total = max(num_chunks(rng, long), 2 * n - 1)
    while True:
        on = sorted(rng.sample(range(total), n))
        if all(b - a >= 2 for a, b in itertools.pairwise(on)):
            break
    shape, colour = rng.choice(SHAPES), rng.choice(COLOUR_NAMES)
    r = 8.0
    x, y = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
    grey = tuple(rng.randint(70, 110) for _ in range(3))

    def draw(image: Image.Image, lit: bool, f: int) -> None:
        if lit:
            image.paste((250, 250, 250), (0, 0, w, h))
        _draw(image, [(shape, colour, x, y, r)])

    frames = frames_of([c in on for c in range(total)], draw, size, grey)
    trace = numbered([second(c) for c in on])
    qa = QA(
        "flashes", "How many times does the screen flash?", str(n), trace, slots={"kind": "video/flashes"}
    )
    return frames, qa, [[scene_object(shape, colour, x, y, r)] for _ in range(total)]


def first_appear(rng: random.Random, size: tuple[int, int], long: bool) -> Made:
    w, h = size
    total = num_chunks(rng, long, low=2)
    s1, s2 = rng.sample(SHAPES, 2)
    c1, c2 = rng.sample(COLOUR_NAMES, 2)
    t1, t2 = sorted(rng.sample(range(total), 2))
    r = 8.0
    while True:
        x1, y1, x2, y2 = (rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2),
                          rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2))  # fmt: skip
        if (x1 - x2) ** 2 + (y1 - y2) ** 2 > (2 * r + 4) ** 2:
            break

    def draw(image: Image.Image, c: int, f: int) -> None:
        items = []
        if c >= t1:
            items.append((s1, c1, x1, y1, r))
        if c >= t2:
            items.append((s2, c2, x2, y2, r))
        _draw(image, items)

    frames = frames_of(list(range(total)), draw, size, background(rng))
    a, b = (s1, s2) if rng.random() < 0.5 else (s2, s1)
    chunks = [
        [scene_object(s1, c1, x1, y1, r)] * (c >= t1) + [scene_object(s2, c2, x2, y2, r)] * (c >= t2)
        for c in range(total)
    ]
    qa = QA("first_appear", f"Which appears first, the {a} or the {b}?", s1,
            slots={"kind": "video/first_appear", "a_shape": a, "b_shape": b})  # fmt: skip
    return frames, qa, chunks


def at_time(rng: random.Random, size: tuple[int, int], long: bool) -> Made:
    w, h = size
    total = num_chunks(rng, long, low=2)
    per_chunk = [rng.choice(COLOUR_NAMES)]
    for _ in range(total - 1):
        per_chunk.append(rng.choice([c for c in COLOUR_NAMES if c != per_chunk[-1]]))
    shape = rng.choice(SHAPES)
    r = min(w, h) * rng.uniform(0.2, 0.3)
    x, y = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
    frames = frames_of(
        per_chunk, lambda im, col, f: _draw(im, [(shape, col, x, y, r)]), size, background(rng)
    )
    c = rng.randrange(total)
    # the trace: the chunks' colours at their times up to the one asked, whose colour is the answer
    qa = QA("at_time", f"What colour is the {shape} at {stamp(c)}?", per_chunk[c], timed(per_chunk[: c + 1]),
            refs=({"chunk": c},),
            slots={"kind": "video/at_time", "shape": shape, "time": stamp(c)})  # fmt: skip
    return frames, qa, [[scene_object(shape, col, x, y, r)] for col in per_chunk]


MAKERS = {
    "direction": direction,
    "colour_order": colour_order,
    "flashes": flashes,
    "first_appear": first_appear,
    "at_time": at_time,
}


def options_for(task: str, answer: str, question: str, rng: random.Random) -> list[str]:
    """Lettered-option texts for an open question: the answer and same-kind distractors, shuffled."""
    if task == "direction":
        return ["left", "right", "up", "down"]
    if task == "flashes":
        return ["1", "2", "3", "4"]
    if task == "first_appear":  # "Which appears first, the {a} or the {b}?"
        a, b = question.rstrip("?").split("the ", 1)[1].split(" or the ")
        return [a, b]
    if task == "colour_order":
        colours = answer.split(", ")
        options = [", ".join(p) for p in itertools.permutations(colours)]
        for c in COLOUR_NAMES:  # two-colour orders have 2 permutations: add orders with a stranger
            if c not in colours:
                options.append(
                    ", ".join([colours[0], c]) if len(colours) == 2 else ", ".join([c, *colours[1:]])
                )
        options = [answer, *rng.sample([o for o in dict.fromkeys(options) if o != answer], 3)]
    else:  # at_time: a colour
        options = [answer, *rng.sample([c for c in COLOUR_NAMES if c != answer], 3)]
    rng.shuffle(options)
    return options


def choice_prompt(question: str, options: list[str]) -> str:
    """The question as the video benchmarks ask it (lettered options, answer with the letter)."""
    from benchmarks.video_suites.prompts import build_prompt
    from benchmarks.video_suites.schema import Sample as SuiteSample

    item = SuiteSample(
        id="", suite="generic", video="", question=question, options=tuple(options), answer="A"
    )
    return build_prompt(item)


def make(
    rng: random.Random, *, long: bool = False, task: str | None = None, thinking: float = 0.0,
    choice: float = 0.0, wording: Wording | None = None,
) -> Sample:  # fmt: skip
    """One video question; the video is a list of PIL frames (an image sequence at 2 fps).

    choice: probability of asking it as a lettered multiple-choice question (answer: the letter; in
    the canonical wording, whose words the options repeat); `wording` words an open question."""
    want = task or rng.choice(TASKS)
    size = frame_size(rng)
    frames, qa, chunks = MAKERS[want](rng, size, long)
    think = qa.trace is not None and rng.random() < thinking
    meta = {"size": size, "frames": len(frames), "long": long, "chunk_objects": chunks}
    if choice and rng.random() < choice:
        options = options_for(want, qa.answer, qa.question, rng)
        letter = "ABCDEFGHIJ"[options.index(qa.answer)]
        qa = replace(qa, question=choice_prompt(qa.question, options), answer=letter)
        meta["options"], wording = options, None
    return worded("video", qa, {"type": "video", "video": frames}, think, wording, meta)


def write_mp4(frames: list[Image.Image], path: str | Path, fps: float = FPS) -> Path:
    """Encode frames as an H.264 mp4 at `fps` (near-lossless; sides cropped to even sizes for yuv420p)."""
    import av
    import numpy as np

    path = Path(path)
    w, h = frames[0].size
    w2, h2 = w - w % 2, h - h % 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.options = {"crf": "8", "preset": "veryfast"}
        for image in frames:
            arr = np.asarray(image.convert("RGB"), dtype=np.uint8)[:h2, :w2]
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
