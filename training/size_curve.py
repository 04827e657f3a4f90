"""Accuracy by image size in tokens: does a kind hold up on images larger than any trained on?

    python -m training.size_curve --task image/count_all                 # the bundled model
    python -m training.size_curve --model DIR --task screenshot/checked --json docs/bench/x.json

For one kind, n held-out questions at the training resolutions and n at the unseen ones (larger
canvases, wider aspect ratios), answered through `Model.chat` and grouped by the image's merged
media-token count: accuracy and, where answers are numbers, the mean signed error. A count read off
the share of tokens that show objects undercounts an image with more background tokens than any in
training (docs/bench/buttons/).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

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


def run(model, family: str, task: str, n: int) -> list[dict]:
    """One row per question: n held out at the training resolutions ("seen"), n at unseen ones."""
    from tqdm import tqdm

    from training.evaluate import ask
    from training.generators import sample
    from vision.preprocess import num_tokens

    rows = []
    jobs = [
        (group, split, i) for group, split in (("seen", "heldout"), ("unseen", "unseen")) for i in range(n)
    ]
    for group, split, i in tqdm(jobs, desc=f"{family}/{task}", leave=False):
        s = sample(split, i, family=family, task=task)
        correct, reply, _ = ask(model, s)
        said = reply.strip()
        error = int(said) - int(s.answer) if said.isdigit() and s.answer.isdigit() else None
        (w, h) = s.meta["size"]
        rows.append({"split": group, "tokens": num_tokens(h, w, model.config.media),
                     "correct": correct, "error": error})  # fmt: skip
    return rows


def main() -> None:
    import mm_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundled model name or checkpoint directory")
    ap.add_argument("--task", default="image/count_all", help="family/task of an image or screenshot kind")
    ap.add_argument("--n", type=int, default=120, help="questions per split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    family, _, task = args.task.partition("/")
    model = mm_model.load(args.model) if args.model else mm_model.load()
    table = bucket(run(model, family, task, args.n))
    print(f"{args.task}: accuracy by merged media tokens per image, n = {args.n} a split")
    print(f"{'split':<8}{'tokens':>10}{'n':>6}{'accuracy':>10}{'mean error':>12}")
    for r in table:
        err = "" if r["mean_error"] is None else f"{r['mean_error']:+.2f}"
        span = f"{r['tokens'][0]}-{r['tokens'][1]}"
        print(f"{r['split']:<8}{span:>10}{r['n']:>6}{r['accuracy']:>10.2f}{err:>12}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        summary = {"model": args.model or "bundled", "task": args.task, "n": args.n, "by_tokens": table}
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
