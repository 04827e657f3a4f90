"""Accuracy and throughput of a run, from its per-sample records: a table, a JSON dict, PNG plots.

Accuracy counts every scored sample (an unparsed reply is wrong, as lmms-eval counts it);
`accuracy_answered` divides by the parsed ones only (the Video-MME scorer's way). Samples that
failed with an error are counted apart and excluded. `macro_task_accuracy` is the mean of per-task
accuracies (MLVU's M-Avg). Under `--protocol lmms-eval`, samples lmms-eval leaves out of the
denominator (`correct` None) are counted as `excluded`, seeded guesses as `guessed`, and an
`lmms_eval` block holds each task's score as its aggregate_results computes it (`lmms_results`).

Throughput, summed over samples then divided (so long samples weigh more, as they do in wall time):
  decode_frames_per_s   sampled frames / seconds decoding+resizing them (local backend only)
  vision_tokens_per_s   vision tokens / seconds to first token (video in -> first answer token)
  ttft_s                mean time to first token
  answer_tokens_per_s   generated tokens / seconds after the first token
  seconds_per_sample    mean wall seconds per sample
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any


def _acc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r.get("correct") is not None]
    n = len(scored)
    correct = sum(1 for r in scored if r.get("correct"))
    answered = sum(1 for r in scored if r.get("prediction") not in (None, "") and not r.get("guessed"))
    out = {"n": n, "correct": correct, "accuracy": correct / n if n else None, "answered": answered,
           "accuracy_answered": correct / answered if answered else None}  # fmt: skip
    if len(scored) < len(rows) or any(r.get("guessed") for r in rows):
        out.update(excluded=len(rows) - n, guessed=sum(1 for r in scored if r.get("guessed")))
    return out


def _group(rows: list[dict[str, Any]], key: str, by_duration: bool = True) -> dict[str, dict[str, Any]]:
    """Accuracy per value of `key`; buckets ordered by their mean duration, other keys by name."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(key) or "unknown")].append(r)

    def order(item: tuple[str, list[dict[str, Any]]]) -> tuple[float, str]:
        ds = [r["duration_s"] for r in item[1] if r.get("duration_s") is not None]
        return (sum(ds) / len(ds) if ds and by_duration else math.inf, item[0])

    out = {}
    for name, members in sorted(groups.items(), key=order):
        stats = _acc(members)
        ds = [r["duration_s"] for r in members if r.get("duration_s") is not None]
        stats["mean_duration_s"] = sum(ds) / len(ds) if ds else None
        out[name] = stats
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def summarize(records: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary dict of a run (records as `video_bench` writes them)."""
    failed = [r for r in records if r.get("error")]
    rows = [r for r in records if not r.get("error")]
    overall = _acc(rows)
    by_task = _group(rows, "task_type", by_duration=False)
    task_accs = [v["accuracy"] for v in by_task.values() if v["accuracy"] is not None]
    t = [r.get("timings") or {} for r in rows]
    u = [r.get("usage") or {} for r in rows]
    frames = sum(x.get("frames") or 0 for x in t)
    decode = sum(x.get("decode_s") or 0.0 for x in t)
    ttfts = [x["ttft_s"] for x in t if x.get("ttft_s") is not None]
    totals = [x["total_s"] for x in t if x.get("total_s") is not None]
    vision = sum(y.get("vision_tokens", 0) for y, x in zip(u, t) if x.get("ttft_s") is not None)
    after_first = sum(
        max(x["total_s"] - x["ttft_s"], 0.0)
        for x in t
        if x.get("ttft_s") is not None and x.get("total_s") is not None
    )
    gen_after_first = sum(max(y.get("completion_tokens", y.get("answer_tokens", 0)) - 1, 0) for y, x in zip(u, t)
                          if x.get("ttft_s") is not None)  # fmt: skip
    throughput = {
        "decode_frames_per_s": _ratio(frames, decode) if frames else None,
        "vision_tokens_per_s": _ratio(vision, sum(ttfts)) if ttfts else None,
        "ttft_s": sum(ttfts) / len(ttfts) if ttfts else None,
        "answer_tokens_per_s": _ratio(gen_after_first, after_first) if ttfts else None,
        "seconds_per_sample": sum(totals) / len(totals) if totals else None,
        "mean_vision_tokens": sum(y.get("vision_tokens", 0) for y in u) / len(u) if u else None,
        "mean_frames": frames / len(rows) if rows and frames else None,
    }
    extra = {}
    if any(r.get("lmms_eval") for r in rows):
        from benchmarks.video_suites.lmms_results import summarize as lmms_summarize

        extra["lmms_eval"] = lmms_summarize(rows)
    return {
        **(meta or {}),
        **extra,
        "overall": overall,
        "unparsed": overall["n"] - overall["answered"],
        "errors": len(failed),
        "by_duration_bucket": _group(rows, "duration_bucket"),
        "by_task_type": by_task,
        "macro_task_accuracy": sum(task_accs) / len(task_accs) if task_accs else None,
        "throughput": throughput,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def format_table(summary: dict[str, Any]) -> str:
    """The human table: overall, per bucket, per task, throughput."""
    lines = [f"note: {note}" for note in summary.get("notes", [])]
    o = summary["overall"]
    lines.append(f"overall: {_pct(o['accuracy'])} ({o['correct']}/{o['n']}), answered {o['answered']}, "
                 f"unparsed {summary['unparsed']}, errors {summary['errors']}, "
                 f"macro over tasks {_pct(summary['macro_task_accuracy'])}")  # fmt: skip
    if "excluded" in o:
        lines.append(f"lmms-eval: {o['excluded']} left out of the denominator, {o['guessed']} seeded guesses")
    lm = summary.get("lmms_eval")
    if lm:
        lines.append(f"lmms-eval {lm['version']} score: {lm['score']:.5g} ({lm['scored_as']})")
        lines += [
            f"  {t}: {v['value']:.5g} (n={v['n']})" for t, v in lm["tasks"].items() if len(lm["tasks"]) > 1
        ]
    for title, key in (("duration bucket", "by_duration_bucket"), ("task type", "by_task_type")):
        groups = summary[key]
        width = max([len(title), *(len(k) for k in groups)])
        lines.append("")
        lines.append(f"{title:<{width}}  {'n':>5}  {'accuracy':>8}  {'mean dur s':>10}")
        lines.append(f"{'-' * width}  {'-' * 5}  {'-' * 8}  {'-' * 10}")
        for name, g in groups.items():
            lines.append(
                f"{name:<{width}}  {g['n']:>5}  {_pct(g['accuracy']):>8}  {_num(g['mean_duration_s'], '.1f'):>10}"
            )
    tp = summary["throughput"]
    lines.append("")
    lines.append("throughput: " + ", ".join([
        f"decode {_num(tp['decode_frames_per_s'], '.1f')} frames/s",
        f"vision {_num(tp['vision_tokens_per_s'], '.1f')} tokens/s",
        f"TTFT {_num(tp['ttft_s'], '.3f')} s",
        f"answer {_num(tp['answer_tokens_per_s'], '.1f')} tokens/s",
        f"{_num(tp['seconds_per_sample'], '.3f')} s/sample",
    ]))  # fmt: skip
    return "\n".join(lines)


def plot(
    summary: dict[str, Any], records: list[dict[str, Any]], out_dir: str | Path, prefix: str = ""
) -> list[Path]:
    """accuracy_by_bucket.png and seconds_vs_duration.png under `out_dir`; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{summary.get('suite', '')} · {summary.get('model', '')} ({summary.get('backend', '')})"
    paths = []

    buckets = summary["by_duration_bucket"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(buckets)
    accs = [100 * (buckets[b]["accuracy"] or 0.0) for b in names]
    ax.bar(names, accs, color="#4c72b0")
    for i, b in enumerate(names):
        ax.text(i, accs[i] + 1, f"{accs[i]:.0f}% (n={buckets[b]['n']})", ha="center", fontsize=8)
    chance = summary.get("chance")
    if chance:
        ax.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance {100 * chance:.0f}%")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel("duration bucket")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}accuracy_by_bucket.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    pts = [(r["duration_s"], r["timings"]["total_s"]) for r in records
           if not r.get("error") and r.get("duration_s") is not None and (r.get("timings") or {}).get("total_s") is not None]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color="#dd8452")
    ax.set_xlabel("video duration (s)")
    ax.set_ylabel("seconds per sample")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}seconds_vs_duration.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
