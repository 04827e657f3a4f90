"""lmms-eval 0.7.3's per-sample results, aggregate scores and output files, from our records.

    task_name(sample, subtitles)       the lmms-eval task a sample belongs to (mvbench: one per sub-task)
    process_results(sample, verdict)   the dict that task's process_results returns, key for key
    aggregate(task, items)             its aggregate_results over those dicts, quirks included:
        videomme        100 * right / all (a reply with no A-D letter is wrong)
        mvbench_*       100 * right / replies that are not empty (empty ones leave the denominator)
        longvideobench  right / all, as a fraction rounded to 5 places; guesses stay in
        mlvu_dev        the mean of the seven task types' accuracies; a type with no sample counts 0
    write(...)                         `<date>_results.json` and `<date>_samples_<task>.jsonl` shaped as
                                       lmms-eval's EvaluationTracker writes them (no input_media, no
                                       clustered stderr)
lmms-eval 0.7.3 reports no group score for mvbench (its group has no aggregate_metric_list); our
summary adds the same aggregate over all sub-tasks' samples pooled, named as such.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.video_suites.lmms_eval import LETTERS, LMMS_EVAL_VERSION, Verdict
from benchmarks.video_suites.schema import Sample

METRIC = {
    "videomme": "videomme_perception_score",
    "mvbench": "mvbench_accuracy",
    "longvideobench": "lvb_acc",
    "mlvu": "mlvu_percetion_score",
}  # fmt: skip  (sic: "percetion" is lmms-eval's key)
TARGET = {"videomme": "answer", "mvbench": "answer", "longvideobench": "correct_choice", "mlvu": "answer"}
MLVU_TYPES = ("anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning")


def task_name(sample: Sample, subtitles: bool = False) -> str:
    if sample.suite == "videomme":
        return "videomme_w_subtitle" if subtitles else "videomme"
    if sample.suite == "mvbench":
        return "mvbench_" + sample.id.split("/", 1)[0]
    if sample.suite == "longvideobench":
        return "longvideobench_val_i" if subtitles else "longvideobench_val_v"
    return "mlvu_dev"


def suite_of(task: str) -> str:
    return next(s for s in METRIC if task.startswith(s if s != "mlvu" else "mlvu_"))


def process_results(sample: Sample, verdict: Verdict) -> dict[str, Any]:
    """What lmms-eval's process_results returns for `sample` (its `doc`) and this reply."""
    doc = sample.doc or {}
    if sample.suite == "videomme":
        return {METRIC["videomme"]: {
            "question_id": doc["question_id"], "duration": doc["duration"], "category": doc["domain"],
            "sub_category": doc["sub_category"], "task_category": doc["task_type"], "pred_answer": verdict.prediction,
            "answer": doc["answer"], "score": 1.0 if verdict.correct else 0.0, "videoID": doc["videoID"]}}  # fmt: skip
    if sample.suite == "mvbench":
        gold = LETTERS[
            list(doc["candidates"]).index(doc["answer"])
        ]  # the first candidate equal to the answer
        return {
            METRIC["mvbench"]: {
                "pred_answer": verdict.filtered,
                "gt_answer": gold,
                "score": int(bool(verdict.correct)),
            }
        }
    if sample.suite == "longvideobench":
        lvb = {"id": doc["id"], "duration_group": doc["duration_group"], "question_category": doc["question_category"],
               "answer": chr(65 + int(doc["correct_choice"])), "parsed_pred": verdict.prediction}  # fmt: skip
        return {METRIC["longvideobench"]: lvb, "submission": {doc["id"]: verdict.filtered}}
    return {METRIC["mlvu"]: {"question_id": doc["question"], "task_type": doc["task_type"],
                             "pred_answer": verdict.prediction, "answer": doc["answer"]}}  # fmt: skip


def aggregate(task: str, items: list[dict[str, Any]]) -> float:
    """lmms-eval's aggregate_results for `task` over per-sample metric dicts (see the module docstring)."""
    suite = suite_of(task)
    if suite == "videomme":
        right = sum(r["pred_answer"] == r["answer"] for r in items)
        return 100 * right / len(items) if items else 0
    if suite == "mvbench":
        answered = [r for r in items if r["pred_answer"] != ""]
        return 100 * sum(r["score"] for r in answered) / len(answered) if answered else 0
    if suite == "longvideobench":
        subsets: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for r in items:  # each sample counts in its duration group and in its category
            subsets[r["duration_group"]].append(r)
            subsets[r["question_category"]].append(r)
        # the same float steps as its calculate_ins_level_acc, so the 5-place rounding agrees
        accs = [
            (sum(r["parsed_pred"] == r["answer"] for r in rs) / len(rs), len(rs)) for rs in subsets.values()
        ]
        total = sum(n for _, n in accs)
        return round(sum(a * n for a, n in accs) / total, 5) if total else 0
    per_type = {t: [r for r in items if r["task_type"] == t] for t in MLVU_TYPES}
    accs = [
        100 * sum(r["pred_answer"] == r["answer"] for r in rs) / len(rs) if rs else 0
        for rs in per_type.values()
    ]
    # lmms-eval sums over a set (hash order), so its last bits may differ from this sorted sum
    return sum(accs) / len(MLVU_TYPES)


def _clt_stderr(items: list[dict[str, Any]]) -> float | str:
    scores = [r["score"] for r in items if "score" in r]
    n = len(scores)
    if n < 2:
        return "N/A"
    mean = sum(scores) / n
    return math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) / math.sqrt(n)


def _doc_hash(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, indent=2, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_line(record: dict[str, Any], doc_id: int) -> dict[str, Any]:
    """One `samples_<task>.jsonl` line, as lmms-eval's EvaluationTracker leaves it."""
    lm = record["lmms_eval"]
    line: dict[str, Any] = {"doc_id": doc_id, "target": str(lm["target"])}
    if record["raw_output"] != lm["filtered"]:  # lmms-eval drops `resps` when nothing was cut
        line["resps"] = record["raw_output"]
    usage = record.get("usage") or {}
    counts = {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens", usage.get("answer_tokens")),
              "reasoning_tokens": usage.get("thinking_tokens")}  # fmt: skip
    line.update(filtered_resps=lm["filtered"], token_counts=[{k: v for k, v in counts.items() if v is not None}],
                doc_hash=_doc_hash(lm["doc"]), **lm["metrics"], input=lm["prompt"])  # fmt: skip
    return line


def _task_result(task: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    metric = METRIC[suite_of(task)]
    out: dict[str, Any] = {
        "alias": task,
        f"{metric},none": aggregate(task, items),
        f"{metric}_stderr,none": "N/A",
    }
    if any("score" in r for r in items):
        out[f"{metric}_stderr_clt,none"] = _clt_stderr(items)
    return out


def by_task(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Scored records (no error) grouped by lmms-eval task, in doc order."""
    tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if not r.get("error") and r.get("lmms_eval"):
            tasks[r["lmms_eval"]["task"]].append(r)
    return {t: sorted(rs, key=lambda r: r["lmms_eval"]["doc_id"]) for t, rs in sorted(tasks.items())}


def write(out_dir: str | Path, records: list[dict[str, Any]], config: dict[str, Any]) -> list[Path]:
    """lmms-eval's two files under `out_dir/<model>/`; earlier ones there are replaced (ours is the source)."""
    tasks = by_task(records)
    model = re.sub(
        r"[\"<>:/|\\?*\[\]]+", "__", "/".join(str(config.get("model", "mm_model")).split("/")[-2:])
    )
    folder = Path(out_dir) / model
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*_results.json"), *folder.glob("*_samples_*.jsonl")]:
        old.unlink()
    date = time.strftime("%Y%m%d_%H%M%S")
    paths = []
    for task, rs in tasks.items():
        path = folder / f"{date}_samples_{task}.jsonl"
        path.write_text("".join(json.dumps(sample_line(r, r["lmms_eval"]["doc_id"]), ensure_ascii=False, default=str) + "\n"
                                for r in rs), encoding="utf-8")  # fmt: skip
        paths.append(path)
    metric_items = {
        t: [r["lmms_eval"]["metrics"][METRIC[suite_of(t)]] for r in rs] for t, rs in tasks.items()
    }
    groups = (
        {"mvbench": [t for t in tasks if t.startswith("mvbench_")]}
        if any(t.startswith("mvbench_") for t in tasks)
        else {}
    )
    results = {
        "results": {**{t: _task_result(t, items) for t, items in metric_items.items()},
                    **{g: {" ": " ", "alias": g} for g in groups}},
        "group_subtasks": {**groups, **{t: [] for t in tasks}},
        "configs": {t: {"task": t, "output_type": "generate_until", "doc_to_target": TARGET[suite_of(t)],
                        "metric_list": [{"metric": METRIC[suite_of(t)], "higher_is_better": True}]} for t in tasks},
        "versions": {t: 0.0 for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": {t: {METRIC[suite_of(t)]: True} for t in tasks},
        "n-samples": {t: {"original": len(rs), "effective": len(rs)} for t, rs in tasks.items()},
        "config": config,
        "lmms_eval_version": f"{LMMS_EVAL_VERSION} (task code reproduced by mm-model bench video --protocol lmms-eval)",
        "date": date,
    }  # fmt: skip
    path = folder / f"{date}_results.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return [path, *paths]


def _lvb_choices(doc: dict[str, Any]) -> int:
    """How many options a LongVideoBench guess picks from (they stop at the first "N/A")."""
    slots = [doc.get(f"option{i}") for i in range(5)]
    return slots.index("N/A") if "N/A" in slots else len(slots)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each task's lmms-eval score and the headline (mvbench: the aggregate over all sub-tasks pooled)."""
    tasks = by_task(records)
    items = {t: [r["lmms_eval"]["metrics"][METRIC[suite_of(t)]] for r in rs] for t, rs in tasks.items()}
    per_task = {
        t: {"metric": METRIC[suite_of(t)], "value": aggregate(t, its), "n": len(its)}
        for t, its in items.items()
    }
    if len(per_task) == 1:
        ((task, first),) = per_task.items()
        score, scored_as = first["value"], f"{task} {first['metric']}"
    else:  # only MVBench spreads over several tasks
        score = aggregate("mvbench", [i for its in items.values() for i in its])
        scored_as = "mvbench_accuracy over all sub-tasks pooled (lmms-eval 0.7.3 prints no group score)"
    guesses = [r for rs in tasks.values() for r in rs if r.get("guessed")]
    out = {"version": LMMS_EVAL_VERSION, "score": score, "scored_as": scored_as, "tasks": per_task,
           "scale": "fraction" if any(t.startswith("longvideobench") for t in tasks) else "percent"}  # fmt: skip
    if guesses:  # lmms-eval's number moves with its random guesses; their expected value does not
        n = sum(len(rs) for rs in tasks.values())
        sure = sum(1 for rs in tasks.values() for r in rs if r.get("correct") and not r.get("guessed"))
        chance = sum(1 / _lvb_choices(r["lmms_eval"]["doc"]) for r in guesses)
        out["guessed"] = len(guesses)
        out["expected_accuracy"] = (sure + chance) / n
    return out
