"""Shared pieces of the synthetic curriculum: the `Sample` record, palettes, shapes, fonts, seeding."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
COLOUR_NAMES = tuple(COLOURS)
SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass
class QA:
    """One question about a scene: the answer, an optional thinking trace (enumerate, then answer),
    and `refs`: what the question names, each a dict of the attributes that pick its media tokens
    (shape, colour, word, button, highlighted, chunk), which the trainer's attention targets read;
    a counting question's one ref carries `count`: how many objects (of its colour, if it names one).
    `slots`: what `phrasing.word` fills its templates with ("kind": "family/task", and the shape,
    colour, label ... the question names)."""

    task: str
    question: str
    answer: str
    trace: str | None = None
    refs: tuple[dict, ...] = ()
    slots: dict = field(default_factory=dict)


@dataclass
class Sample:
    """A training/eval example: `messages` (the chat so far, ending with a user turn) and the target.

    thinking: train/eval this sample in thinking mode (target = trace + `</think>` + answer).
    """

    family: str  # "image" | "screenshot" | "video" | "chat"
    task: str
    messages: list[dict[str, Any]]
    answer: str
    trace: str | None = None
    thinking: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def target_text(self) -> str:
        """The assistant tokens after the prompt (which ends with `<think>` or `<think></think>`)."""
        if self.thinking:
            return f"{self.trace}</think>{self.answer}<|im_end|>"
        return f"{self.answer}<|im_end|>"


def numbered(items: list[str]) -> str:
    """A thinking trace that enumerates: '1 red circle, 2 blue square.' ('none.' for no items), so a
    count is read off the last number rather than held in the head."""
    return ", ".join(f"{i} {item}" for i, item in enumerate(items, 1)) + "." if items else "none."


def rng_for(split: str, index: int, salt: str = "") -> random.Random:
    """A `Random` seeded from (split, index, salt) alone, so every sample is reproducible by itself."""
    digest = hashlib.sha256(f"{split}/{index}/{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def background(rng: random.Random) -> tuple[int, int, int]:
    """A light, slightly tinted background, so that colour names stay unambiguous."""
    return tuple(rng.randint(225, 255) for _ in range(3))  # type: ignore[return-value]


def scene_object(shape: str, colour: str, x: float, y: float, r: float) -> dict:
    """One drawn shape as the generators record it (`meta["objects"]`, `["chunk_objects"]`), which the
    trainer's per-token targets read."""
    return dict(shape=shape, colour=colour, x=x, y=y, r=r)


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]
) -> None:
    """A filled shape of 'radius' r centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def place(
    rng: random.Random, width: int, height: int, radii: list[float], margin: int = 4, tries: int = 200
) -> list[tuple[float, float]] | None:
    """Non-overlapping centres for shapes of the given radii, or None if they do not fit."""
    out: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(tries):
            cx = rng.uniform(r + margin, width - r - margin)
            cy = rng.uniform(r + margin, height - r - margin)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (r + rr + margin) ** 2 for (x, y), rr in zip(out, radii)):
                out.append((cx, cy))
                break
        else:
            return None
    return out


def new_canvas(
    width: int, height: int, colour: tuple[int, int, int]
) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (width, height), colour)
    return image, ImageDraw.Draw(image)


def user(content: list[dict[str, Any]] | str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


Wording = Callable[[QA], tuple[str, str]]  # a question -> (its question text, its answer), `phrasing.word`


def words_of(qa: QA, wording: Wording | None) -> tuple[str, str]:
    """(question, answer) of `qa` in `wording`'s words (None: the canonical question and answer)."""
    return wording(qa) if wording else (qa.question, qa.answer)


def worded(
    family: str, qa: QA, media: dict[str, Any], think: bool, wording: Wording | None, meta: dict[str, Any]
) -> Sample:
    """The Sample asking `qa` about one media item (a content part: {"type": "image", ...}) in
    `wording`'s words (None: the canonical question). Where the wording changes the answer's form,
    `meta["canonical_answer"]` keeps the canonical one (the trainer's aux heads read it)."""
    question, answer = words_of(qa, wording)
    meta = {**meta, "refs": qa.refs}
    if answer != qa.answer:
        meta["canonical_answer"] = qa.answer
    msg = user([media, {"type": "text", "text": question}])
    return Sample(family, qa.task, [msg], answer, qa.trace, think, meta)
