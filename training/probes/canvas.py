"""Do a picture's tokens and counts survive a larger canvas? The same scene padded with its background.

    python -m training.probes canvas                                   # the bundled model
    python -m training.probes canvas --model DIR --json docs/bench/canvas/probe.json

Held-out shape scenes (sides 112..168, whole 28-px cells) are padded with their own background, by
whole cells on every side (`--pads`, px a side) and into canvases of one token count but other shapes.
For each canvas: the mean cosine similarity of the tokens over the picture's cells to the unpadded
picture's, and the accuracy and mean signed error of "How many shapes are in the image?", also with the
unpadded picture's tokens put back over its cells (the tower's share of the fall; the rest is the LM's),
and the tower's mean attention from the picture's patches onto the flat canvas. Shifting
a picture within one canvas leaves its tokens nearly unchanged; growing the canvas does not, by token
count rather than by distance (docs/bench/canvas/): the tower's attention spreads over the background.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image

from training.canvas import background_attention, shared_cells
from training.generators import images
from training.generators.common import rng_for
from training.losses import call_inputs
from training.probes.run import Probe, progress

QUESTION = "How many shapes are in the image?"
UNIT = 28  # px of one merged token's cell


def embed(model, image: Image.Image) -> tuple[torch.Tensor, float]:
    """(T, D) LM-input tokens of one image, encoded afresh (the model's dtype), and the tower's mean
    attention from the picture's patches onto the flat canvas (`training.canvas.background_attention`)."""
    model._media_cache.clear()
    blocks = model.model.vision_tower.encoder.blocks
    with call_inputs(dict(enumerate(blocks))) as calls:
        tokens, _ = model.media_embeddings([model.processor.image_item(image)])
    with torch.inference_mode():
        mass = background_attention(blocks, calls)
    return tokens, float("nan") if mass is None else float(mass)


def count(model, image: Image.Image, tokens: torch.Tensor | None = None) -> int | None:
    """The model's answer to QUESTION about `image`, read from `tokens` (T, D) in place of the tower's
    own when given; None when the answer is not a number."""
    model._media_cache.clear()
    if tokens is not None:  # the chat finds them cached under the image's key and encodes nothing
        model._media_cache[model.processor.image_item(image).key] = tokens
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}]}
    ]
    reply = model.chat(messages, max_new_tokens=4).text.strip()
    return int(reply) if reply.isdigit() else None


def layouts(w: int, h: int, pads: tuple[int, ...]) -> dict[str, tuple[int, int, int, int]]:
    """name -> (canvas w, canvas h, x, y): padded on every side, then the +2-cell canvas's token count
    as a wide strip and as a shift within one canvas."""
    out = {f"+{p} px a side": (w + 2 * p, h + 2 * p, p, p) for p in pads}
    big = (w + 4 * UNIT) * (h + 4 * UNIT) // h  # the +56 canvas's area at the picture's height
    out["same tokens, one row of cells high"] = (
        big // UNIT * UNIT,
        h,
        (big // UNIT * UNIT - w) // 2 // UNIT * UNIT,
        0,
    )
    out["+56 a side, picture in the corner"] = (w + 4 * UNIT, h + 4 * UNIT, 0, 0)
    return out


class Row(NamedTuple):
    """One scene on one canvas."""

    token_cos: float  # mean cosine of the picture's cells' tokens to the unpadded picture's
    truth: int  # shapes in the scene
    said: int | None  # the count read from the canvas's own tokens
    said_back: int | None  # ... with the unpadded picture's tokens put back over its cells
    on_canvas: float  # the tower's mean attention from the picture's patches onto the flat canvas


def probe(model, n: int, pads: tuple[int, ...]) -> dict[str, dict]:
    rows: dict[str, list[Row]] = {}
    for i in progress(range(n), "scenes", leave=True):
        rng = rng_for("heldout", i, "canvas_probe")
        w, h = rng.choice((112, 140, 168)), rng.choice((112, 140, 168))
        image, objects = images.scene(rng, w, h, rng.randint(1, images.MAX_SHAPES))
        base, on_base = embed(model, image)
        said = count(model, image, base)
        rows.setdefault("unpadded", []).append(Row(1.0, len(objects), said, said, on_base))
        background = image.getpixel((0, 0))
        for name, (cw, ch, x, y) in layouts(w, h, pads).items():
            canvas = Image.new("RGB", (cw, ch), background)
            canvas.paste(image, (x, y))
            here, there = shared_cells((w, h), (x, y, cw - w - x, ch - h - y))
            tokens, on_canvas = embed(model, canvas)
            cos = F.cosine_similarity(base[here].float(), tokens[there].float()).mean()
            # the picture's own tokens put back over its cells: what is left of the fall is the LM's
            back = tokens.clone()
            back[there] = base[here]
            row = Row(
                float(cos), len(objects), count(model, canvas, tokens), count(model, canvas, back), on_canvas
            )
            rows.setdefault(name, []).append(row)
    return {name: summarise(r) for name, r in rows.items()}


def summarise(rows: list[Row]) -> dict:
    """One canvas's means over its scenes; the mean signed error over the numeric answers."""
    said = [(r.truth, r.said) for r in rows if r.said is not None]
    return {
        "n": len(rows),
        "token_cos": round(sum(r.token_cos for r in rows) / len(rows), 3),
        "count_accuracy": round(sum(r.truth == r.said for r in rows) / len(rows), 3),
        "count_accuracy_picture_tokens_back": round(sum(r.truth == r.said_back for r in rows) / len(rows), 3),
        "attention_on_canvas": round(sum(r.on_canvas for r in rows) / len(rows), 3),
        "mean_error": round(sum(s - k for k, s in said) / len(said), 2) if said else None,
    }


def whole_cells(text: str) -> tuple[int, ...]:
    """--pads "28,56" -> (28, 56): px a side, whole cells."""
    pads = tuple(int(p) for p in text.split(","))
    if any(p % UNIT for p in pads):
        raise argparse.ArgumentTypeError(f"must be whole cells ({UNIT} px): {text}")
    return pads


def run(args: argparse.Namespace, model) -> dict:
    """`probe`'s canvases, by name, over `--n` held-out scenes, at their own sizes (without the model's
    image budget, which would resize the larger canvases and move their cells)."""
    from training.evaluate import uncapped

    return {"n": args.n, "canvases": probe(uncapped(model), args.n, args.pads)}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--pads", type=whole_cells, default="28,56,84", help="px added on every side, whole cells"
    )


def table(summary: dict) -> str:
    lines = [
        f"count and tokens on a larger canvas, n = {summary['n']} scenes",
        f"{'canvas':<38}{'on canvas':>10}{'token cos':>10}{'count acc':>11}{'tokens back':>13}{'mean error':>12}",
    ]
    for name, r in summary["canvases"].items():
        err = "" if r["mean_error"] is None else f"{r['mean_error']:+.2f}"
        back, on = r["count_accuracy_picture_tokens_back"], r["attention_on_canvas"]
        lines.append(
            f"{name:<38}{on:>10.3f}{r['token_cos']:>10.3f}{r['count_accuracy']:>11.2f}{back:>13.2f}{err:>12}"
        )
    return "\n".join(lines)


PROBE = Probe(run=run, add_args=add_args, table=table, n=(40, "scenes"))
