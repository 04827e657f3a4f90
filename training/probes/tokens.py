"""What do a model's merged media tokens carry? Linear probes on the token under each shape.

    python -m training.probes tokens                          # the bundled model
    python -m training.probes tokens --model /tmp/export --json docs/bench/objects/probe_after.json

For shape scenes (the image generator's, seen resolutions), the LM-input embedding of the token that
holds each object's centre is read by a linear classifier of its colour (6) and shape (4), and by a
least-squares fit of the object's (x, y) as a fraction of the image; trained on `--train` scenes,
scored on `--test` held-out ones. A question that names one object among several ("What shape is the
red object?") needs the named property and the asked one in the same token; "left of" needs where
it is. The trainer's per-token targets (`--object-weight`) exist because these read 98% / 42% / R^2
0.21 on the weights trained through answers alone (docs/bench/objects/). For windows, the tokens under
a title, a grey or highlighted button's label and a coloured button's label are read by a linear
classifier of the word written there ("What colour is the OK button?" needs the label in the token).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from training.batches import encode, object_targets
from training.generators import images, sample, screenshots
from training.generators.common import COLOUR_NAMES, SHAPES, rng_for
from training.probes.run import Probe, progress


def object_tokens(model, split: str, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """n scenes of `split` -> (features (N, D), labels (N, 2) [colour, shape], positions (N, 2))
    of the token holding each object's centre."""
    feats, labels, where = [], [], []
    kernel = model.config.vision.merge_kernel_size[0]
    for i in progress(range(n), f"{split} scenes"):
        rng = rng_for(split, i, "token_probe")
        w, h = images.image_size(rng)
        image, objects = images.scene(rng, w, h, rng.randint(2, 5))
        item = model.processor.image_item(image)
        with torch.no_grad():
            emb = model.model.encode_media(item.patches, torch.tensor([item.grid]))[0].float()
        unit = model.config.vision.patch_size * kernel  # pixels per token side: these sizes are never resized
        cols = item.grid[2] // kernel
        for o in objects:
            feats.append(emb[int(o["y"] // unit) * cols + int(o["x"] // unit)])
            labels.append([COLOUR_NAMES.index(o["colour"]), SHAPES.index(o["shape"])])
            where.append([o["x"] / w, o["y"] / h])
    return torch.stack(feats), torch.tensor(labels), torch.tensor(where)


def classify(x: Tensor, y: Tensor, xt: Tensor, yt: Tensor, classes: int, steps: int = 500) -> float:
    """Held-out accuracy of a linear softmax classifier (standardised inputs, Adam, light L2)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mu) / sd, (xt - mu) / sd
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(head.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(x), y).backward()
        opt.step()
    with torch.no_grad():
        return float((head(xt).argmax(1) == yt).float().mean())


def regress(x: Tensor, y: Tensor, xt: Tensor, yt: Tensor, ridge: float = 0.0) -> list[float]:
    """Held-out R^2 per output column of a least-squares linear fit (with a bias); `ridge` > 0 fits
    standardised inputs with that L2 penalty (few samples for the features' width)."""
    if ridge:
        mu, sd = x.mean(0), x.std(0) + 1e-6
        x, xt = (x - mu) / sd, (xt - mu) / sd
    a = torch.cat([x, torch.ones(len(x), 1)], 1)
    solution = (
        torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1]), a.T @ y)
        if ridge
        else torch.linalg.lstsq(a, y).solution
    )
    pred = torch.cat([xt, torch.ones(len(xt), 1)], 1) @ solution
    return (1 - ((pred - yt) ** 2).sum(0) / ((yt - yt.mean(0)) ** 2).sum(0)).tolist()


# Screenshot words a token may carry: (the question kind whose windows are drawn, which cells count)
# -> probed as the word's class (screenshots.WORDS: a highlighted button's label is its own class).
WORD_GROUPS = {
    "title": ("title", lambda word, coloured: word in screenshots.TITLES),
    "button_label": ("highlighted", lambda word, coloured: word.rstrip("*") in screenshots.BUTTONS),
    "colour_button_label": ("button_colour", lambda word, coloured: coloured and word in screenshots.BUTTONS),
}


def word_tokens(model, split: str, n: int, group: str) -> tuple[Tensor, Tensor]:
    """n windows of `split` -> (features (N, D), word classes (N,)) of the tokens under the group's
    words (the trainer's per-token word targets say which tokens those are)."""
    task, pick = WORD_GROUPS[group]
    feats, labels = [], []
    for i in progress(range(n), f"{split} windows"):
        s = sample(split, i, family="screenshot", task=task)
        e = encode(s, model.processor, model.processor.tokenizer)
        rows = object_targets(s, e, model.config.media)
        with torch.no_grad():
            emb = model.model.encode_media(e.patches, torch.tensor(e.grids))[0].float()
        for t, (_, colour, word) in enumerate(rows[:, :3].tolist()):
            if word >= 0 and pick(screenshots.WORDS[word], colour >= 0):
                feats.append(emb[t])
                labels.append(word)
    return torch.stack(feats), torch.tensor(labels)


def probe(model, train: int = 600, test: int = 200) -> dict:
    x, y, p = object_tokens(model, "train", train)
    xt, yt, pt = object_tokens(model, "heldout", test)
    r2 = regress(x, p, xt, pt)
    out = {
        "objects": {"train": len(x), "test": len(xt)},
        "colour_accuracy": round(classify(x, y[:, 0], xt, yt[:, 0], len(COLOUR_NAMES)), 4),
        "shape_accuracy": round(classify(x, y[:, 1], xt, yt[:, 1], len(SHAPES)), 4),
        "x_r2": round(r2[0], 4),
        "y_r2": round(r2[1], 4),
    }
    for group in WORD_GROUPS:  # half as many windows as scenes: a window has more tokens under words
        x, y = word_tokens(model, "train", train // 2, group)
        xt, yt = word_tokens(model, "heldout", test // 2, group)
        out[f"{group}_accuracy"] = round(classify(x, y, xt, yt, len(screenshots.WORDS)), 4)
    return out


def run(args: argparse.Namespace, model) -> dict:
    """`probe` on `--train` scenes (half as many windows), scored on `--test` held-out ones."""
    return probe(model, args.train, args.test)


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--train", type=int, default=600, help="scenes to fit the probes on")
    ap.add_argument("--test", type=int, default=200, help="held-out scenes to score them on")


KEYS = ("colour_accuracy", "shape_accuracy", "x_r2", "y_r2", *(f"{g}_accuracy" for g in WORD_GROUPS))


def table(summary: dict) -> str:
    return "\n".join(f"{key:28} {summary[key]:.3f}" for key in KEYS)


# fp32 on the CPU, torch's own thread count
PROBE = Probe(run=run, add_args=add_args, table=table, load={"dtype": torch.float32, "device": "cpu"},
              model="tiny", threads=None)  # fmt: skip
