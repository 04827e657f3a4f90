"""Shape images: count, colour, shape and relative position questions at many resolutions.

Seen resolutions (train and held-out): each side 84..168 px, aspect ratio at most 2. Unseen
resolutions (eval only): larger canvases (sides 182..252) or stretched ones (aspect 2.2..3). Small
media keep the patch count (and CPU training cost) low: 36..144 patches per image.
"""

from __future__ import annotations

import random

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
    new_canvas,
    numbered,
    place,
    scene_object,
    worded,
)

TASKS = ("count_all", "count_colour", "colour_of", "shape_of", "position", "describe")
DESCRIBE_MAX = 3  # a describe question's image holds 1..DESCRIBE_MAX shapes
MAX_SHAPES = 6  # a counting question's image holds 1..MAX_SHAPES shapes
SEEN_SIDE = (84, 168)  # px, each side of a seen image
SEEN_ASPECT = 2.0  # a seen image's longer side over its shorter one, at most


def image_size(rng: random.Random, unseen: bool = False) -> tuple[int, int]:
    """(width, height) from the seen or the unseen resolution distribution."""
    if not unseen:
        while True:
            w, h = rng.randint(*SEEN_SIDE), rng.randint(*SEEN_SIDE)
            if max(w, h) <= SEEN_ASPECT * min(w, h):
                return w, h
    if rng.random() < 0.5:
        return rng.randint(182, 252), rng.randint(182, 252)
    short = rng.randint(84, 100)
    long = int(short * rng.uniform(2.2, 3.0))
    return (long, short) if rng.random() < 0.5 else (short, long)


def scene(rng: random.Random, width: int, height: int, n: int) -> tuple[Image.Image, list[dict]]:
    """An image with n non-overlapping shapes; returns it and the objects (shape, colour, x, y, r)."""
    while True:
        radii = [rng.uniform(8, 13) for _ in range(n)]
        centres = place(rng, width, height, radii)
        if centres is not None:
            break
        n = max(1, n - 1)
    image, draw = new_canvas(width, height, background(rng))
    objects = []
    for (cx, cy), r in zip(centres, radii):
        obj = scene_object(rng.choice(SHAPES), rng.choice(COLOUR_NAMES), cx, cy, r)
        draw_shape(draw, obj["shape"], cx, cy, r, COLOURS[obj["colour"]])
        objects.append(obj)
    return image, objects


def enumerate_trace(objects: list[dict]) -> str:
    """Objects left to right, numbered: '1 red circle, 2 blue square.' (the count is the last number)."""
    ordered = sorted(objects, key=lambda o: o["x"])
    return numbered([f"{o['colour']} {o['shape']}" for o in ordered])


def questions(rng: random.Random, objects: list[dict]) -> dict[str, QA]:
    """Every question this scene supports, by task."""
    out: dict[str, QA] = {}
    n = len(objects)
    out["count_all"] = QA(
        "count_all",
        "How many shapes are in the image?",
        str(n),
        enumerate_trace(objects),
        ({"count": n},),
        slots={"kind": "image/count_all"},
    )
    colour = rng.choice(COLOUR_NAMES)
    k = sum(o["colour"] == colour for o in objects)
    picked = [o for o in objects if o["colour"] == colour]
    out["count_colour"] = QA(
        "count_colour",
        f"How many {colour} shapes are there?",
        str(k),
        enumerate_trace(picked),
        ({"colour": colour, "count": k},),
        slots={"kind": "image/count_colour", "colour": colour},
    )
    unique_shapes = [s for s in SHAPES if sum(o["shape"] == s for o in objects) == 1]
    if unique_shapes:
        s = rng.choice(unique_shapes)
        o = next(o for o in objects if o["shape"] == s)
        out["colour_of"] = QA("colour_of", f"What colour is the {s}?", o["colour"], refs=({"shape": s},),
                              slots={"kind": "image/colour_of", "shape": s})  # fmt: skip
    unique_colours = [c for c in COLOUR_NAMES if sum(o["colour"] == c for o in objects) == 1]
    if unique_colours:
        c = rng.choice(unique_colours)
        o = next(o for o in objects if o["colour"] == c)
        out["shape_of"] = QA("shape_of", f"What shape is the {c} object?", o["shape"], refs=({"colour": c},),
                             slots={"kind": "image/shape_of", "colour": c})  # fmt: skip
    names = [(o["colour"], o["shape"]) for o in objects]
    distinct = [o for o in objects if names.count((o["colour"], o["shape"])) == 1]
    pairs = [(a, b) for a in distinct for b in distinct if a is not b]
    rng.shuffle(pairs)
    for a, b in pairs:
        dx, dy = a["x"] - b["x"], a["y"] - b["y"]
        axes = []
        if abs(dx) > a["r"] + b["r"]:
            axes.append("h")
        if abs(dy) > a["r"] + b["r"]:
            axes.append("v")
        if not axes:
            continue
        da, db = f"{a['colour']} {a['shape']}", f"{b['colour']} {b['shape']}"
        axis = rng.choice(axes)
        if axis == "h":
            q = f"Is the {da} left or right of the {db}?"
            ans = "left" if dx < 0 else "right"
        else:
            q = f"Is the {da} above or below the {db}?"
            ans = "above" if dy < 0 else "below"
        refs = tuple({"shape": o["shape"], "colour": o["colour"]} for o in (a, b))
        slots = {"kind": "image/position", "axis": axis, "a_colour": a["colour"], "a_shape": a["shape"],
                 "b_colour": b["colour"], "b_shape": b["shape"]}  # fmt: skip
        out["position"] = QA("position", q, ans, refs=refs, slots=slots)
        break
    return out


def describe(objects: list[dict]) -> QA:
    """Every shape with its colour, left to right: "a red square and an orange circle"."""
    names = [f"{'an' if o['colour'] == 'orange' else 'a'} {o['colour']} {o['shape']}"
             for o in sorted(objects, key=lambda o: o["x"])]  # fmt: skip
    answer = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    question = "What shapes do you see, and what colours are they?"
    return QA("describe", question, answer, slots={"kind": "image/describe"})


BASICS = ("colour_single", "shape_single")


def make_basic(
    rng: random.Random, *, unseen: bool = False, task: str | None = None, wording: Wording | None = None
) -> Sample:
    """Bootstrap tasks (the curriculum's first phases): one large shape; its colour or its shape.
    Grounding needs no binding."""
    w, h = image_size(rng, unseen)
    want = task or rng.choice(BASICS)
    image, draw = new_canvas(w, h, background(rng))
    r = min(w, h) * rng.uniform(0.2, 0.4)
    shape, colour = rng.choice(SHAPES), rng.choice(COLOUR_NAMES)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    qa = (QA(want, "What colour is the shape?", colour) if want == "colour_single"
          else QA(want, "What shape is it?", shape))  # fmt: skip
    qa.slots = {"kind": f"basics/{want}"}
    meta = {"size": (w, h), "unseen": unseen, "objects": [scene_object(shape, colour, cx, cy, r)]}
    return worded("basics", qa, {"type": "image", "image": image}, False, wording, meta)


def make(
    rng: random.Random, *, unseen: bool = False, task: str | None = None, thinking: float = 0.0,
    wording: Wording | None = None,
) -> Sample:  # fmt: skip
    """One image question; `task` forces a task family member, `thinking` is P(thinking mode) when a
    trace exists, `wording` words it (default: the canonical question)."""
    while True:
        w, h = image_size(rng, unseen)
        want = task or rng.choice(TASKS)
        if want == "describe":
            image, objects = scene(rng, w, h, rng.randint(1, DESCRIBE_MAX))
            qs = {"describe": describe(objects)}
        else:
            n = rng.randint(1, MAX_SHAPES) if want.startswith("count") else rng.randint(2, 5)
            image, objects = scene(rng, w, h, n)
            qs = questions(rng, objects)
        if want in qs:
            break
    qa = qs[want]
    think = qa.trace is not None and rng.random() < thinking
    meta = {"size": (w, h), "unseen": unseen, "objects": objects}
    return worded("image", qa, {"type": "image", "image": image}, think, wording, meta)
