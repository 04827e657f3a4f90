"""Training batches: each sample's prompt (rendered as at inference) and assistant target, collated,
with the targets the losses read (`training.losses`).

A batch is `training_batch(samples, processor, tok)`: right-padded ids and labels (IGNORE outside the
assistant's tokens), all samples' media packed in order, and per sample its aux target (`AUX_KINDS`),
the shape, colour or word under each media token and its place (`object_targets`, `token_positions`),
the tokens of each object its question names (`attention_targets`) and, with `--canvas-weight`, its
picture's canvas twin (`canvas_twins`). `Batches` is the run's batch of a step, a pure function of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from mm_model.processor import Processor
from mm_model.tokenizer import Tokenizer
from training import canvas
from training.generators import Sample, sample
from training.generators.common import COLOUR_NAMES, SHAPES
from training.generators.screenshots import WORDS
from vision.config import MediaConfig
from vision.packing import merged_tokens
from vision.preprocess import plan_for

IGNORE = -100


@dataclass
class Encoded:
    ids: Tensor  # (L,) prompt + target
    labels: Tensor  # (L,) target ids at target positions, IGNORE elsewhere (unshifted)
    patches: Tensor | None
    grids: list[tuple[int, int, int]]


def encode(s: Sample, processor: Processor, tok: Tokenizer) -> Encoded:
    """Prompt (rendered exactly as at inference) + assistant target, with the loss mask."""
    prompt = processor(s.messages, thinking=s.thinking)
    target = torch.tensor(tok.encode(s.target_text()), dtype=torch.int64)
    ids = torch.cat([prompt.input_ids, target])
    labels = torch.full_like(ids, IGNORE)
    labels[len(prompt.input_ids) :] = target
    return Encoded(ids, labels, prompt.pixel_values, [m.grid for m in prompt.media])


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Tensor | None]:
    """Right-padded (B, S) ids and labels; all samples' media packed in order."""
    n = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.int64)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.int64)
    for i, e in enumerate(batch):
        ids[i, : len(e.ids)] = e.ids
        labels[i, : len(e.labels)] = e.labels
    patches = [e.patches for e in batch if e.patches is not None]
    grids = [g for e in batch for g in e.grids]
    return {
        "input_ids": ids,
        "labels": labels,
        "pixel_values": torch.cat(patches) if patches else None,
        "grid_thws": torch.tensor(grids, dtype=torch.int64) if grids else None,
    }


class Batches(torch.utils.data.Dataset):
    """Batch `step` of the run, encoded and collated: a pure function of the step, so a DataLoader
    worker can build the next batches (PIL drawing, resizing) while the model trains on this one."""

    def __init__(
        self,
        processor: Processor,
        tok: Tokenizer,
        batch: int,
        mix: tuple,
        steps: int,
        twins: bool = False,
        largest_twins: bool = False,
        thinking: float | None = None,
    ) -> None:
        self.processor, self.tok, self.batch, self.mix, self.steps = processor, tok, batch, mix, steps
        self.twins, self.largest_twins, self.thinking = twins, largest_twins, thinking

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        index = range(step * self.batch, (step + 1) * self.batch)
        samples = [sample("train", i, mix=self.mix, thinking=self.thinking) for i in index]
        # the twins' own random streams: the samples stay those of a run without them
        rngs = [random.Random(f"canvas/{i}") for i in index] if self.twins else None
        return training_batch(samples, self.processor, self.tok, rngs, self.largest_twins)


def training_batch(
    samples: list[Sample],
    processor: Processor,
    tok: Tokenizer,
    twin_rngs: list[random.Random] | None = None,
    largest_twins: bool = False,
) -> dict:
    """`samples` encoded and collated, with their aux, per-token and attention targets, and with
    `twin_rngs` their canvas twins (each on the largest seen canvas if `largest_twins`): what `loss_fn`
    takes (the trainer's batches, the probes' and the tests')."""
    encoded = [encode(s, processor, tok) for s in samples]
    return {
        **collate(encoded, tok.special_tokens["[PAD]"]),
        **aux_targets(samples, encoded, processor),
        **token_targets(samples, encoded, processor),
        **(canvas_twins(samples, encoded, processor, twin_rngs, largest_twins) if twin_rngs else {}),
    }


def canvas_twins(
    samples: list[Sample],
    encoded: list[Encoded],
    processor: Processor,
    rngs: list[random.Random],
    largest: bool = False,
) -> dict[str, Tensor | None]:
    """Each single-image question's picture on a larger seen-size canvas (`training.canvas`): the twins'
    packed pixels and grids, and the merged-token indices of the cells a picture and its twin share,
    in the batch's media tokens ("twin_here", (n,)) and in the twins' ("twin_there", (n,))."""
    kernel = processor.config.vision.merge_kernel_size
    unit = processor.config.media.patch_size * kernel[0]
    patches, grids, here, there = [], [], [], []
    start = twin_start = 0
    for s, e, rng in zip(samples, encoded, rngs):
        image = canvas.picture(s.messages)
        box = canvas.twin_box(rng, image.size, s.family, unit, largest=largest) if image is not None else None
        if box is not None:
            item = processor.image_item(canvas.pad_edges(image, box))
            a, b = canvas.shared_cells(image.size, box, unit)
            patches.append(item.patches)
            grids.append(item.grid)
            here.append(a + start)
            there.append(b + twin_start)
            twin_start += item.tokens
        start += sum(merged_tokens(e.grids, kernel))
    if not grids:
        return {"twin_pixels": None, "twin_grids": None, "twin_here": None, "twin_there": None}
    return {
        "twin_pixels": torch.cat(patches),
        "twin_grids": torch.tensor(grids, dtype=torch.int64),
        "twin_here": torch.cat(here),
        "twin_there": torch.cat(there),
    }


# Question kinds whose answer depends on the media alone (not on which object the question names):
# for these an auxiliary head reads the answer's first token straight from the pooled media embeddings.
# Training only, never exported. Why: through the LM the vision tower gets a weak, late signal -- one
# answer token after the LM has learned where to look -- and a 4-layer ViT from scratch needs ~8k
# images of direct supervision to tell a circle from a square (chance for 400+ steps through the LM).
AUX_KINDS = (
    "basics/colour_single", "basics/shape_single", "image/count_all", "screenshot/title",
    "screenshot/highlighted", "screenshot/checked", "screenshot/field", "video/direction",
    "video/flashes", "video/colour_order", "video/first_appear",
)  # fmt: skip


def aux_targets(samples: list[Sample], encoded: list[Encoded], processor: Processor) -> dict[str, list]:
    """Per sample: its kind, its media's merged-token count per grid, and the aux target (the
    answer's first token id) where the kind is in AUX_KINDS, else None."""
    kinds = [f"{s.family}/{s.task}" for s in samples]
    answers = [s.meta.get("canonical_answer", s.answer) for s in samples]  # "the ball moves left": "left"
    targets = [processor.tokenizer.encode(a)[0] if k in AUX_KINDS and e.grids else None
               for k, a, e in zip(kinds, answers, encoded)]  # fmt: skip
    kernel = processor.config.vision.merge_kernel_size
    return {
        "kinds": kinds,
        "aux_targets": targets,
        "media_tokens": [merged_tokens(e.grids, kernel) for e in encoded],
    }


def object_targets(s: Sample, e: Encoded, media: MediaConfig) -> Tensor:
    """(T, 4) int64 per merged media token of the sample: the index of the shape (SHAPES), the colour
    (COLOUR_NAMES) and the word (screenshots.WORDS) under it, each -1 where there is none; and in an
    image, the index (in `meta["objects"]`) of the object whose centre its cell holds, -1 for none
    (-2: not an image's token; two centres in one cell: the later object's).

    A shape is under a token when the token's 28x28-pixel cell holds the shape's centre or the cell's
    centre lies within its radius; a video chunk's tokens get the shapes shown throughout the chunk.
    A word (a button: its label, highlighted or not, and its colour) is under every cell its box's
    middle line crosses. Why: through the answers alone the tower learned colour per token (a linear
    probe reads it at 97% held out) but not the shape of a small object (42%, chance 25%), so no
    question that names one object among several could be answered; these targets supervise every
    token directly. The centres are what a count attends to (`attention_targets`): one token per object,
    however many tokens it covers.
    """
    kernel = media.merge_kernel_size
    counts = merged_tokens(e.grids, (kernel, kernel))
    out = torch.full((sum(counts), 4), -1, dtype=torch.int64)
    out[:, 3] = -2
    video = "chunk_objects" in s.meta
    per_grid = s.meta.get("chunk_objects") if video else [s.meta.get("objects")] * (len(e.grids) == 1)
    texts = s.meta.get("texts") or ()
    if (not per_grid or len(per_grid) != len(e.grids)) and not texts:
        return out
    w, h = s.meta["size"]
    (new_h, new_w), _ = plan_for(h, w, media, video=video)
    sx, sy = new_w / w, new_h / h
    unit = media.patch_size * kernel
    (_, gh, gw), start = e.grids[0], 0
    for t in sorted(texts, key=lambda t: "button" in t):  # a screenshot: one grid; buttons win a shared cell
        x0, y0, x1, y1 = t["box"]
        row = min(gh // kernel - 1, int((y0 + y1) / 2 * sy // unit))
        colour = COLOUR_NAMES.index(t["colour"]) if t["colour"] else -1
        label = torch.tensor([-1, colour, WORDS.index(t["word"])])
        for col in range(int(x0 * sx // unit), min(gw // kernel - 1, int((x1 * sx - 1) // unit)) + 1):
            out[row * (gw // kernel) + col, :3] = label
    for (_, gh, gw), objects, n in zip(e.grids, per_grid or (), counts):
        cols, rows = gw // kernel, gh // kernel
        if not video and objects is not None:  # an image whose objects are known
            out[start : start + n, 3] = -1
        for i, o in enumerate(objects or ()):
            x, y, r = o["x"] * sx, o["y"] * sy, o["r"] * sx
            label = torch.tensor([SHAPES.index(o["shape"]), COLOUR_NAMES.index(o["colour"]), -1])
            for row in range(rows):
                for col in range(cols):
                    holds = int(x // unit) == col and int(y // unit) == row
                    near = ((col + 0.5) * unit - x) ** 2 + ((row + 0.5) * unit - y) ** 2 < r * r
                    if holds or near:
                        out[start + row * cols + col, :3] = label
                    if holds and not video:
                        out[start + row * cols + col, 3] = i
        start += n
    return out


def token_positions(grids: list[tuple[int, int, int]], kernel: int) -> Tensor:
    """(T, 2) float (x, y) of each merged token's cell centre as a fraction of its grid's width and
    height, for items (or video chunks: one token per cell, frames pooled) of (t, h, w) patch grids.

    Why: the LM reads media tokens in raster order with 1-D positions, so "left of" is not linear
    in its input unless the tokens carry where they are (a linear probe read the bundled model's
    object tokens' x at R^2 0.21, `training.probes.tokens`)."""
    out = [torch.zeros(0, 2)]
    for _, h, w in grids:
        rows, cols = h // kernel, w // kernel
        y, x = torch.meshgrid(
            (torch.arange(rows) + 0.5) / rows, (torch.arange(cols) + 0.5) / cols, indexing="ij"
        )
        out.append(torch.stack([x.flatten(), y.flatten()], 1))
    return torch.cat(out)


HIGHLIGHTED = torch.tensor([i for i, w in enumerate(WORDS) if w.endswith("*")])


def attention_targets(
    s: Sample, rows: Tensor, where: Tensor, counts: list[int]
) -> list[tuple[Tensor, Tensor, int]]:
    """Per object the question names (`meta["refs"]`, in order): the indices of the sample's media
    tokens that show it, read off its `object_targets` rows (T, 4), its place (2,): the mean of
    those tokens' `token_positions` (`where`, (T, 2)), and -1. [] for a thinking sample or when a
    named object shows under no token. `counts`: merged tokens per grid (a video: per chunk).

    A ref picks tokens by shape, colour, word (a button in a screenshot is a word with a colour:
    `button`), `highlighted` (a highlighted button's label) and `chunk` (a video chunk's tokens).
    A counting question's ref (`count`: k) gives, last, the k objects' centre tokens (one each, none
    for k = 0), their mean place (the middle if none) and k; none where two centres share a cell. "How
    many red shapes?" with k > 0 also names its colour's tokens, as any ref with a colour does."""
    if s.thinking:
        return []
    out = []
    for ref in s.meta.get("refs", ()):
        if "count" in ref and not ("colour" in ref and ref["count"]):
            continue  # nothing to look at: only counted
        keep = torch.ones(len(rows), dtype=torch.bool)
        if "shape" in ref:
            keep &= rows[:, 0] == SHAPES.index(ref["shape"])
        if "colour" in ref:
            keep &= rows[:, 1] == COLOUR_NAMES.index(ref["colour"])
        if "word" in ref:
            keep &= rows[:, 2] == WORDS.index(ref["word"])
        if ref.get("button"):
            keep &= rows[:, 1] >= 0
        if ref.get("highlighted"):
            keep &= torch.isin(rows[:, 2], HIGHLIGHTED)
        if "chunk" in ref:
            index, first = torch.arange(len(rows)), sum(counts[: ref["chunk"]])
            keep &= (index >= first) & (index < first + counts[ref["chunk"]])
        if not keep.any():
            return []
        out.append((keep.nonzero().squeeze(1), where[keep].mean(0), -1))
    for ref in s.meta.get("refs", ()):
        if "count" in ref:  # last, so the named objects keep heads 0, 1, ...
            picked = [
                i for i, o in enumerate(s.meta["objects"]) if ref.get("colour", o["colour"]) == o["colour"]
            ]
            centres = [(rows[:, 3] == i).nonzero().squeeze(1) for i in picked]
            if len(picked) == ref["count"] and all(len(c) == 1 for c in centres):  # else two share a cell
                tokens = torch.cat(centres) if centres else torch.zeros(0, dtype=torch.int64)
                place = where[tokens].mean(0) if len(tokens) else torch.full((2,), 0.5)
                out.append((tokens, place, ref["count"]))
    return out


def token_targets(samples: list[Sample], encoded: list[Encoded], processor: Processor) -> dict:
    """The batch's per-token targets: `object_targets` and `token_positions` (media tokens in packing
    order) and, per sample, its `attention_targets`."""
    media = processor.config.media
    kernel = media.merge_kernel_size
    rows = [object_targets(s, e, media) for s, e in zip(samples, encoded)]
    where = [token_positions(e.grids, kernel) for e in encoded]
    return {
        "object_targets": torch.cat(rows),
        "token_positions": torch.cat(where),
        "attend": [
            attention_targets(s, r, w, merged_tokens(e.grids, (kernel, kernel)))
            for s, r, w, e in zip(samples, rows, where, encoded)
        ],
    }
