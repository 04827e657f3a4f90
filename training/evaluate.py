"""Held-out accuracy of a model on the synthetic curriculum, end to end through `Model.chat`.

    python -m training.evaluate                      # the bundled model, writes its eval_results.json
    python -m training.evaluate --model training/runs/export --n 20 --out /tmp/eval.json

Splits (seeded apart from training): "heldout" (training distributions, canonical wordings),
"phrasing" (the same distributions asked only in wordings held out of training: other templates,
synonyms, case and punctuation, `generators/phrasing.py`), "unseen" (image and screenshot resolutions /
aspect ratios never trained on; with the model's own image budget, which resizes larger pictures into
the trained one, and as "unseen_uncapped" without it), "long" (videos of 32..64 frames, longer
than any training video, whose prompts exceed the longest training sequence; evaluated with the
model's YaRN scaling on and off). Videos go in as frame lists (an image sequence at 2 fps, which
`Model.chat` accepts); a subset also goes through H.264 mp4 files. Thinking mode is evaluated on
the tasks trained with traces. "letters": the video questions with lettered options, answered with the
letter (the video benchmarks' form; 30% of training video questions). Scoring: exact match of the
whole answer string, after folding case, white space and final punctuation (`same_answer`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.common import same_answer
from training.generators import FAMILY_TASKS, Sample, sample
from training.generators.videos import write_mp4

# the kinds trained with enumeration traces (numbered objects, boxes or flashes; each chunk's colour at its time)
TRACE_TASKS = (
    ("image", "count_all"),
    ("image", "count_colour"),
    ("screenshot", "checked"),
    ("video", "flashes"),
    ("video", "colour_order"),
    ("video", "at_time"),
)
THINKING_TOKENS = (
    160  # new tokens in thinking mode: the longest training trace (a rechecked colour order) fits
)


def ask(
    model, s: Sample, *, thinking: bool = False, mp4_dir: Path | None = None
) -> tuple[bool, str, dict[str, int]]:
    """(correct, reply, usage) for one sample."""
    messages = s.messages
    if mp4_dir is not None:
        content = list(messages[0]["content"])
        path = write_mp4(content[0]["video"], mp4_dir / "clip.mp4")
        content[0] = {"type": "video", "video": str(path)}
        messages = [{"role": "user", "content": content}, *messages[1:]]
    r = model.chat(messages, max_new_tokens=THINKING_TOKENS if thinking else 32, thinking=thinking)
    return same_answer(r.text, s.answer), r.text, r.usage


def yarn_off(model):
    """The same weights with plain RoPE (no YaRN scaling) in the language model."""
    from mm_model.api import Model
    from mm_model.checkpoint import load_model

    cfg = model.config.replace(text=model.config.text.replace(rope_scaling=None))
    return Model(load_model(model.path, config=cfg, dtype=torch.float32), model.tokenizer, path=model.path)


def uncapped(model):
    """The same weights without the model's image budget (`in_patch_limit`): pictures at their own size."""
    from dataclasses import replace

    from mm_model.api import Model
    from mm_model.processor import Processor
    from vision.config import MediaConfig

    cfg = model.config.replace(media=replace(model.config.media, in_patch_limit=MediaConfig().in_patch_limit))
    return Model(model.model, model.tokenizer, path=model.path, processor=Processor(cfg, model.tokenizer))


def run(model, n: int, n_mp4: int, log_every: int = 50) -> dict:
    from tqdm import tqdm

    jobs: list[tuple[str, str, str, str, int]] = []  # (group, family, task, split, index)
    for family, tasks in FAMILY_TASKS.items():
        for task in tasks:
            jobs += [("seen", family, task, "heldout", i) for i in range(n)]
            jobs += [("phrasing", family, task, "phrasing", i) for i in range(n)]
            if family == "video":
                jobs += [("long", family, task, "long", i) for i in range(n // 2)]
                jobs += [("long_yarn_off", family, task, "long", i) for i in range(n // 2)]
                jobs += [("mp4", family, task, "heldout", i) for i in range(n_mp4)]
                jobs += [("letters", family, task, "letters", i) for i in range(n)]
            else:
                jobs += [("unseen", family, task, "unseen", i) for i in range(n)]
                jobs += [("unseen_uncapped", family, task, "unseen", i) for i in range(n)]
    jobs += [("seen", "chat", "multi_turn", "heldout", i) for i in range(n)]
    jobs += [("phrasing", "chat", "multi_turn", "phrasing", i) for i in range(n)]
    jobs += [("unseen", "chat", "multi_turn", "unseen", i) for i in range(n)]
    jobs += [("thinking", f, t, "heldout", i) for f, t in TRACE_TASKS for i in range(n // 2)]

    plain = free = None
    hits: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    examples: dict[str, list] = defaultdict(list)
    calib_runs = []
    prompt_tokens: dict[str, list[int]] = defaultdict(list)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for group, family, task, split, i in tqdm(jobs, desc="eval", mininterval=10):
            s = sample(split, i, family=family, task=None if family == "chat" else task)
            m = model
            if group == "long_yarn_off":
                plain = plain or yarn_off(model)
                m = plain
            elif group == "unseen_uncapped":
                free = free or uncapped(model)
                m = free
            ok, reply, usage = ask(m, s, thinking=group == "thinking",
                                          mp4_dir=Path(tmp) if group == "mp4" else None)  # fmt: skip
            hits[(group, family, task)].append(int(ok))
            prompt_tokens[group].append(usage["prompt_tokens"])
            if group == "thinking":
                calib_runs.append(
                    {
                        "task_kind": f"{family}/{task}",
                        "correct": ok,
                        "thinking_tokens": usage["thinking_tokens"],
                    }
                )
            key = f"{group}/{family}/{task}"
            if len(examples[key]) < 3:
                question = s.messages[-1]["content"]
                question = question if isinstance(question, str) else question[-1]["text"]
                examples[key].append({"split": split, "index": i, "question": question, "answer": s.answer,
                                      "reply": reply, "correct": ok})  # fmt: skip
    table: dict = defaultdict(dict)
    for (group, family, task), v in sorted(hits.items()):
        table[group][f"{family}/{task}"] = {"accuracy": round(sum(v) / len(v), 4), "n": len(v)}
    summary: dict = defaultdict(dict)
    for (group, family, _), v in hits.items():
        summary[group].setdefault(family, []).extend(v)
    summary = {
        g: {f: round(sum(v) / len(v), 4) for f, v in sorted(fam.items())} for g, fam in summary.items()
    }
    lengths = {g: {"mean": round(sum(v) / len(v), 1), "max": max(v)} for g, v in prompt_tokens.items()}
    return {"summary": summary, "tasks": dict(table), "prompt_tokens": lengths, "examples": dict(examples), "thinking_runs": calib_runs,
            "eval_seconds": round(time.time() - t0, 1)}  # fmt: skip


def print_table(result: dict) -> None:
    groups = list(result["summary"])
    families = sorted({f for g in groups for f in result["summary"][g]})
    print("family".ljust(12) + "".join(g.rjust(15) for g in groups))
    for f in families:
        cells = [result["summary"][g].get(f) for g in groups]
        print(f.ljust(12) + "".join(("-" if c is None else f"{100 * c:.1f}").rjust(15) for c in cells))
    for g, rows in result["tasks"].items():
        print(f"\n[{g}] " + ", ".join(f"{k} {100 * v['accuracy']:.0f}%" for k, v in rows.items()))


def main() -> None:
    import mm_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="bundled model name or checkpoint directory")
    ap.add_argument("--n", type=int, default=40, help="held-out samples per task and split")
    ap.add_argument("--mp4", type=int, default=10, help="video samples per task also run through mp4 files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--out", default=None, help="JSON output (default: eval_results.json next to the weights)"
    )
    ap.add_argument(
        "--calibration", action="store_true", help="also write toggle_calibration.json from thinking runs"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = mm_model.load(args.model, dtype=torch.float32, device="cpu")
    result = run(model, args.n, args.mp4)
    result["model"] = str(args.model)
    result["n_per_task"] = args.n
    train_info = Path(model.path) / "training.json"
    if train_info.exists():  # the longest training sequence, to show that "long" prompts exceed it
        result["training"] = json.loads(train_info.read_text())
    out = Path(args.out) if args.out else Path(model.path) / "eval_results.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"\nwrote {out}")
    if args.calibration:
        from mm_model.toggle import CALIBRATION_FILE, build_calibration

        cal = build_calibration(result["thinking_runs"], rho=90, model_id="tiny")
        cal.save(Path(model.path) / CALIBRATION_FILE)
        print(f"wrote {Path(model.path) / CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
