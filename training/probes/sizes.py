"""Accuracy by image size in tokens: does a kind hold up on images larger than any trained on?

    python -m training.probes sizes --task image/count_all                 # the bundled model
    python -m training.probes sizes --model DIR --task screenshot/checked --json docs/bench/x.json

For one kind, n held-out questions at the training resolutions and n at the unseen ones (larger
canvases, wider aspect ratios), answered through `Model.chat` and grouped by the image's merged
media-token count: accuracy and, where answers are numbers, the mean signed error. A count read off
the share of tokens that show objects undercounts an image with more background tokens than any in
training (docs/bench/buttons/).
"""

from __future__ import annotations

import argparse
import itertools

from training.evaluate import ask
from training.generators import sample
from training.probes.run import Probe, progress
from vision.preprocess import num_tokens

EDGES = (0, 16, 25, 36, 50, 64, 100, 400)


def bucket(rows: list[dict], edges: tuple[int, ...] = EDGES) -> list[dict]:
    """rows ({"split", "tokens", "correct", "error"}: error None where the answer is not a number) ->
    per split and token range (lo, hi]: n, accuracy and the mean error over the numeric answers."""
    out = []
    for split in dict.fromkeys(r["split"] for r in rows):
        for lo, hi in itertools.pairwise(edges):
            group = [r for r in rows if r["split"] == split and lo < r["tokens"] <= hi]
            if not group:
                continue
            errors = [r["error"] for r in group if r["error"] is not None]
            out.append({
                "split": split, "tokens": [lo, hi], "n": len(group),
                "accuracy": round(sum(r["correct"] for r in group) / len(group), 3),
                "mean_error": round(sum(errors) / len(errors), 3) if errors else None,
            })  # fmt: skip
    return out


def questions(model, family: str, task: str, n: int) -> list[dict]:
    """One row per question: n held out at the training resolutions ("seen"), n at unseen ones."""
    rows = []
    jobs = [
        (group, split, i) for group, split in (("seen", "heldout"), ("unseen", "unseen")) for i in range(n)
    ]
    for group, split, i in progress(jobs, f"{family}/{task}"):
        s = sample(split, i, family=family, task=task)
        correct, reply, _ = ask(model, s)
        said = reply.strip()
        error = int(said) - int(s.answer) if said.isdigit() and s.answer.isdigit() else None
        (w, h) = s.meta["size"]
        rows.append({"split": group, "tokens": num_tokens(h, w, model.config.media),
                     "correct": correct, "error": error})  # fmt: skip
    return rows


def run(args: argparse.Namespace, model) -> dict:
    """`questions` of `--task`, grouped by `bucket`."""
    family, _, task = args.task.partition("/")
    return {"task": args.task, "n": args.n, "by_tokens": bucket(questions(model, family, task, args.n))}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--task", default="image/count_all", help="family/task of an image or screenshot kind")


def table(summary: dict) -> str:
    lines = [
        f"{summary['task']}: accuracy by merged media tokens per image, n = {summary['n']} a split",
        f"{'split':<8}{'tokens':>10}{'n':>6}{'accuracy':>10}{'mean error':>12}",
    ]
    for r in summary["by_tokens"]:
        err = "" if r["mean_error"] is None else f"{r['mean_error']:+.2f}"
        span = f"{r['tokens'][0]}-{r['tokens'][1]}"
        lines.append(f"{r['split']:<8}{span:>10}{r['n']:>6}{r['accuracy']:>10.2f}{err:>12}")
    return "\n".join(lines)


PROBE = Probe(run=run, add_args=add_args, table=table, n=(120, "questions per split"))
