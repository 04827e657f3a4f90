"""Toggle curve: accuracy against mean thinking tokens at budgets none, p90, p75, p50, p25 and auto.

python -m benchmarks.toggle_curve --curriculum 24 [--model tiny]   # the bundled model's reasoning tasks
python -m benchmarks.toggle_curve --tasks tasks.jsonl [--model tiny]  # your own (text) tasks
python -m benchmarks.toggle_curve --dry-run                           # plumbing only, random tiny LM

The interface the bundled-model issue fills in:
- `Task(task_id, kind, prompt, answer)`; a JSON-lines file with those fields plus "split":
  "calib" or "eval" (disjoint problems: budgets fitted on the evaluation set overstate savings).
  `prompt` is a string or a chat (a list of messages, media included).
- `--curriculum N`: N tasks per kind from the bundled model's own curriculum, the kinds trained with
  thinking traces (`training.evaluate.TRACE_TASKS`: counting shapes, checked boxes, flashes, colour
  order, colour at a time), calib from the "calib" split and eval from "heldout" -- both seeds disjoint from training.
- `Answerer`: `answer(task, budget, thinking) -> (correct: bool, thinking_tokens: int)` with
  `budget` None (unlimited) or an int, `thinking=False` for the instant anchor. `thinking_tokens`
  must be counted as `mm_model.toggle.split_thinking` counts them; calibration runs (unlimited)
  need a max_new_tokens large enough that thinking is never cut.

Steps: unlimited runs on the calib split -> `build_calibration` (per kind); pXX budgets = the
kind's ceil ρ-th percentile of correct thinking lengths (pooled for kinds without correct runs);
auto = `resolve_budget` at `--lam` with ρ = `--auto-rho`. Every mode then runs the eval split.
Prints a table (accuracy with a 95% Wilson interval, mean thinking tokens, reduction and accuracy
change vs unlimited), saves a PNG of accuracy against tokens and ends with a JSON line. The issue's
target (>= 25% fewer thinking tokens, <= 2 points accuracy lost, at auto) is reported, not asserted.
A dry run's numbers are meaningless: the model is random and "correct" is a coin flip of its output.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import RESULTS, print_table, same_answer, write_json
from mm_model.toggle import (
    ScoredRun,
    ThinkingBudget,
    ThinkTokens,
    build_calibration,
    percentile_budget,
    resolve_budget,
    split_thinking,
)


@dataclass(frozen=True)
class Task:
    task_id: str
    kind: str
    prompt: str | list[dict]  # a user message, or a whole chat (media included)
    answer: str


Answerer = Callable[[Task, "int | None", bool], "tuple[bool, int]"]
RHOS = {"p90": 90, "p75": 75, "p50": 50, "p25": 25}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = k / n
    mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)


def run_curve(answer: Answerer, calib: Sequence[Task], evals: Sequence[Task], *, lam: float, auto_rho: float,
              min_correct: int) -> tuple[list[dict], dict]:  # fmt: skip
    """Calibrate on `calib`, evaluate every mode on `evals`; returns (table rows, budgets used)."""
    from tqdm import tqdm

    n_modes = len(RHOS) + 3  # the percentiles, plus none, auto and instant
    bar = tqdm(total=len(calib) + n_modes * len(evals), desc="toggle curve", mininterval=5)

    def answer_one(t: Task, budget: int | None, thinking: bool) -> tuple[bool, int]:
        bar.update(1)
        return answer(t, budget, thinking)

    runs = [ScoredRun(t.kind, *answer_one(t, None, True)) for t in calib]
    record = build_calibration(runs, auto_rho, lam=lam, min_correct=min_correct)
    correct_by_kind: dict[str, list[int]] = {}
    for r in runs:
        if r.correct:
            correct_by_kind.setdefault(r.task_kind, []).append(r.thinking_tokens)
    pooled = [n for v in correct_by_kind.values() for n in v]

    def fixed(rho: float) -> Callable[[Task], int | None]:
        def pick(t: Task) -> int | None:
            lengths = correct_by_kind.get(t.kind) or pooled
            return percentile_budget(lengths, rho) if lengths else None

        return pick

    modes: dict[str, Callable[[Task], int | None]] = {"none": lambda t: None}
    modes |= {name: fixed(rho) for name, rho in RHOS.items()}
    modes["auto"] = lambda t: resolve_budget(record, t.kind, lam)
    rows, budgets = [], {}
    for name, pick in [*modes.items(), ("instant", lambda t: None)]:
        thinking = name != "instant"
        chosen = [pick(t) for t in evals]
        results = [answer_one(t, b, thinking) for t, b in zip(evals, chosen)]
        k, n = sum(c for c, _ in results), len(results)
        lo, hi = wilson(k, n)
        kinds: dict[str, list[bool]] = {}
        for t, (c, _) in zip(evals, results):
            kinds.setdefault(t.kind, []).append(c)
        rows.append({"mode": name, "accuracy": k / n, "acc_lo": lo, "acc_hi": hi,
                     "mean_thinking": sum(t for _, t in results) / n,
                     "budgeted": sum(b is not None for b in chosen) / n if thinking else 0.0,
                     "per_kind": {kind: sum(v) / len(v) for kind, v in kinds.items()}})  # fmt: skip
        budgets[name] = chosen
    bar.close()
    base = rows[0]
    for r in rows:
        r["token_reduction"] = (
            1 - r["mean_thinking"] / base["mean_thinking"] if base["mean_thinking"] else 0.0
        )
        r["acc_change_pts"] = 100 * (r["accuracy"] - base["accuracy"])
    return rows, {"per_task": budgets, "calibration": record.to_dict()}


def plot(rows: Sequence[dict], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    models = list(dict.fromkeys(r.get("model", "") for r in rows))
    for r in rows:
        err = [[max(0.0, r["accuracy"] - r["acc_lo"])], [max(0.0, r["acc_hi"] - r["accuracy"])]]
        i = models.index(r.get("model", ""))
        ax.errorbar(r["mean_thinking"], r["accuracy"], yerr=err, fmt="os^D"[i % 4], color=f"C{i}", capsize=3)
        label = r["mode"] if len(models) == 1 else f"{i + 1}:{r['mode']}"
        ax.annotate(label, (r["mean_thinking"], r["accuracy"]), textcoords="offset points", xytext=(4, 4))
    if len(models) > 1:
        title += "  (" + ", ".join(f"{i + 1}: {Path(m).name}" for i, m in enumerate(models)) + ")"
    ax.set(xlabel="mean thinking tokens", ylabel="accuracy (95% Wilson)", title=title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- answerers ---------------------------------------------------------------------------------


def chat_answerer(model_name: str, max_new_tokens: int) -> Answerer:
    """The real one: `Model.chat` with thinking and a budget; exact match after whitespace/case folding."""
    import mm_model

    model = mm_model.load(model_name)

    def answer(task: Task, budget: int | None, thinking: bool) -> tuple[bool, int]:
        r = model.chat(task.prompt, thinking=thinking, budget=budget, max_new_tokens=max_new_tokens)
        return same_answer(r.text, task.answer), r.usage["thinking_tokens"]

    return answer


def curriculum_tasks(n: int) -> tuple[list[Task], list[Task]]:
    """`n` calib and `n` eval tasks per reasoning kind of the bundled model's curriculum."""
    from training.evaluate import TRACE_TASKS
    from training.generators import sample

    def tasks(split: str) -> list[Task]:
        out = []
        for family, task in TRACE_TASKS:
            for i in range(n):
                s = sample(split, i, family=family, task=task)
                out.append(Task(f"{split}/{family}/{task}/{i}", f"{family}/{task}", s.messages, s.answer))
        return out

    return tasks("calib"), tasks("heldout")


def dry_answerer(seed: int) -> tuple[Answerer, list[Task], list[Task]]:
    """A random tiny LM that "thinks" for a task-dependent length (a scripted close stands in for a
    trained model's), through the real generate loop and `ThinkingBudget`. Numbers mean nothing."""
    import torch

    from mm_model.generation import generate
    from mm_model.lm import DeepseekV3LM, LMConfig

    torch.set_num_threads(1)  # a tiny model: one thread is faster and immune to OpenMP stalls when shared
    torch.manual_seed(seed)
    model = DeepseekV3LM(LMConfig.tiny()).eval()
    with torch.no_grad():  # random weights at unit activation scale (some LM parameters start uninitialized)
        for p in model.parameters():
            p.copy_(
                1 + 0.2 * torch.randn_like(p) if p.dim() == 1 else torch.randn_like(p) / p.shape[-1] ** 0.5
            )
    tk = ThinkTokens(think_open=250, think_close=251, end=252)
    rng = random.Random(seed)
    tasks = [Task(f"t{i}", rng.choice(["count", "compare"]), " ".join(str(rng.randrange(3, 240)) for _ in range(6)),
                  "") for i in range(16)]  # fmt: skip
    natural = {t.task_id: rng.randrange(4, 30) for t in tasks}

    def answer(task: Task, budget: int | None, thinking: bool) -> tuple[bool, int]:
        stop_at = natural[task.task_id]

        def scripted(step: int, generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            logits[:, [tk.think_close, tk.end]] = float("-inf")
            if thinking and step == stop_at and tk.think_close not in generated[0].tolist():
                logits[:, tk.think_close] = 1e4
            return logits

        policy = ThinkingBudget(tk, thinking=thinking, budget=budget, answer_budget=3, max_new_tokens=36)
        prompt = [int(x) for x in task.prompt.split()]
        out = generate(model, [prompt], max_new_tokens=36, stop_token_ids=[tk.end],
                       logits_processors=[scripted, policy])  # fmt: skip
        split = split_thinking(out.tokens[0, : out.lengths[0]].tolist(), tk, thinking=thinking)
        return bool(split.answer and split.answer[0] % 2 == 0), split.thinking_tokens

    return answer, tasks[:8], tasks[8:]


def load_tasks(path: Path) -> tuple[list[Task], list[Task]]:
    calib, evals = [], []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            (calib if d["split"] == "calib" else evals).append(
                Task(str(d["id"]), d["kind"], d["prompt"], d["answer"])
            )
    return calib, evals


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="random tiny model, plumbing only")
    ap.add_argument("--tasks", type=Path, help="JSON lines: id, kind, prompt, answer, split (calib|eval)")
    ap.add_argument(
        "--curriculum", type=int, metavar="N", help="N tasks per kind from the bundled curriculum"
    )
    ap.add_argument(
        "--model",
        nargs="+",
        default=["tiny"],
        help="one or more models, run side by side (e.g. the weights before and after a Toggle stage)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=2048)
    ap.add_argument("--lam", type=float, default=0.8)
    ap.add_argument("--auto-rho", type=float, default=75.0)
    ap.add_argument("--min-correct", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.dry_run:
        answer, calib, evals = dry_answerer(args.seed)
        answerers = {"dry": answer}
        args.min_correct = 1
    elif args.tasks is None and not args.curriculum:
        ap.error("give --curriculum N (the bundled model's reasoning tasks), --tasks FILE or --dry-run")
    else:
        calib, evals = curriculum_tasks(args.curriculum) if args.curriculum else load_tasks(args.tasks)
        answerers = {m: chat_answerer(m, args.max_new_tokens) for m in args.model}
    rows, budgets = [], {}
    for model, answer in answerers.items():
        mine, budgets[model] = run_curve(
            answer, calib, evals, lam=args.lam, auto_rho=args.auto_rho, min_correct=args.min_correct
        )
        rows += [{"model": model, **r} for r in mine]
    print_table(rows, ["model", "mode", "accuracy", "acc_lo", "acc_hi", "mean_thinking", "token_reduction",
                       "acc_change_pts", "budgeted"])  # fmt: skip
    print()
    print_table(per_kind_rows(rows), ["model", "kind", "instant", "none", "auto", "thinking_minus_instant"])
    name = "toggle_curve" + ("_dry_run" if args.dry_run else "")
    png = plot(rows, RESULTS / f"{name}.png", "Toggle (dry run: meaningless)" if args.dry_run else "Toggle")
    targets = targets_of(rows)
    if args.dry_run:
        print("dry run: plumbing only; accuracy and token figures mean nothing")
    else:
        for line in targets["lines"]:
            print(line)
    write_json(name, {"dry_run": args.dry_run, "rows": rows, "budgets": budgets, "png": str(png),
                      "targets": None if args.dry_run else targets, "args": vars(args) | {"tasks": str(args.tasks)},
                      "per_kind": per_kind_rows(rows), "calib_tasks": len(calib), "eval_tasks": len(evals)})  # fmt: skip


def per_kind_rows(rows: Sequence[dict]) -> list[dict]:
    """Each model's accuracy per task kind: instant, unlimited thinking (none), auto, and thinking - instant."""
    by = {(r["model"], r["mode"]): r["per_kind"] for r in rows}
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for kind in by[model, "none"]:
            acc = {mode: by[model, mode][kind] for mode in ("instant", "none", "auto")}
            out.append(
                {"model": model, "kind": kind, **acc, "thinking_minus_instant": acc["none"] - acc["instant"]}
            )
    return out


def targets_of(rows: Sequence[dict]) -> dict:
    """The Toggle targets, each model's and, with two or more models, the last one's against the first's:
    auto saves >= 25% of thinking tokens for <= 2 points; thinking (none) beats instant by >= 5 points;
    the last model's unlimited thinking uses >= 25% fewer tokens than the first's at <= 2 points below it."""
    by = {(r["model"], r["mode"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    out: dict = {"per_model": {}, "lines": []}
    for m in models:
        auto, none, instant = by[m, "auto"], by[m, "none"], by[m, "instant"]
        met = {"auto": auto["token_reduction"] >= 0.25 and auto["acc_change_pts"] >= -2.0,
               "thinking_beats_instant": none["accuracy"] - instant["accuracy"] >= 0.05}  # fmt: skip
        out["per_model"][m] = met
        out["lines"].append(
            f"{m}: auto {100 * auto['token_reduction']:.0f}% fewer tokens, {auto['acc_change_pts']:+.1f} points "
            f"({'met' if met['auto'] else 'MISSED'}); thinking vs instant "
            f"{100 * (none['accuracy'] - instant['accuracy']):+.1f} points "
            f"({'met' if met['thinking_beats_instant'] else 'MISSED'}: >= +5)"
        )
    if len(models) > 1:
        before, after = by[models[0], "none"], by[models[-1], "none"]
        fewer = 1 - after["mean_thinking"] / before["mean_thinking"] if before["mean_thinking"] else 0.0
        change = 100 * (after["accuracy"] - before["accuracy"])
        met = fewer >= 0.25 and change >= -2.0
        out["after_vs_before"] = {"token_reduction": fewer, "acc_change_pts": change, "met": met}
        out["lines"].append(
            f"{models[-1]} vs {models[0]} (unlimited thinking): {100 * fewer:.0f}% fewer tokens, {change:+.1f} "
            f"points ({'met' if met else 'MISSED'}: >= 25% fewer, >= -2 points)"
        )
    return out


if __name__ == "__main__":
    main()
