"""Does thinking follow its trace? Held-out questions of the traced kinds, answered in thinking mode.

    python -m training.probes traces --model DIR --n 30 --json docs/bench/x.json

Per kind: how often the model's trace is the generator's own (the enumeration written exactly), how
often the answer is right, and the answer's accuracy split by whether the trace was right. An answer
right after a wrong trace was not read off the trace (a count right though an object was misnamed,
or the instant answer given regardless); a wrong answer after a right trace did not follow it.
"""

from __future__ import annotations

import argparse

from benchmarks.common import same_answer
from training.evaluate import THINKING_TOKENS, TRACE_TASKS
from training.generators import sample
from training.probes.run import Probe, progress


def tally(rows: list[dict]) -> dict[str, dict]:
    """rows ({"kind", "trace_right", "answer_right"}) -> per kind: n, trace right, answer right, and
    answers right after a right trace and after a wrong one."""
    out: dict[str, dict] = {}
    for r in rows:
        k = out.setdefault(r["kind"], {"n": 0, "trace_right": 0, "answer_right": 0,
                                       "answer_right_given_trace_right": 0, "answer_right_given_trace_wrong": 0})  # fmt: skip
        k["n"] += 1
        k["trace_right"] += r["trace_right"]
        k["answer_right"] += r["answer_right"]
        key = "answer_right_given_trace_right" if r["trace_right"] else "answer_right_given_trace_wrong"
        k[key] += r["answer_right"]
    return out


def run(args: argparse.Namespace, model) -> dict:
    rows = []
    jobs = [(family, task, i) for family, task in TRACE_TASKS for i in range(args.n)]
    for family, task, i in progress(jobs, "traces"):
        s = sample("heldout", i, family=family, task=task)
        r = model.chat(s.messages, thinking=True, max_new_tokens=THINKING_TOKENS)
        rows.append({"kind": f"{family}/{task}", "trace_right": r.thinking.strip() == s.trace.strip(),
                     "answer_right": same_answer(r.text, s.answer)})  # fmt: skip
    return {"n": args.n, "kinds": tally(rows)}


def table(summary: dict) -> str:
    lines = [f"thinking on held-out questions, n = {summary['n']} a kind",
             f"{'kind':<22}{'trace right':>12}{'answer right':>13}{'| trace right':>14}{'| trace wrong':>14}"]  # fmt: skip
    for kind, k in summary["kinds"].items():
        after_right = f"{k['answer_right_given_trace_right']}/{k['trace_right']}"
        after_wrong = f"{k['answer_right_given_trace_wrong']}/{k['n'] - k['trace_right']}"
        lines.append(
            f"{kind:<22}{k['trace_right']:>12}{k['answer_right']:>13}{after_right:>14}{after_wrong:>14}"
        )
    return "\n".join(lines)


PROBE = Probe(run=run, add_args=lambda ap: None, table=table, n=(30, "questions per traced kind"))
