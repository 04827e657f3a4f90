"""lmms-eval's own task functions, run on `lmms_cases`, give the oracle fixture our lmms-eval protocol is tested against.

The fixture (tests/benchmarks/data/lmms_eval_oracle.json) is committed because CI has no lmms-eval: its
task files import cv2, decord, datasets, torch and transformers at module top. Regenerate it from the
real source (nothing of lmms-eval is vendored here):

    pip download --no-deps lmms-eval==0.7.3 -d /tmp/lmms && unzip -q -o /tmp/lmms/lmms_eval-0.7.3-py3-none-any.whl -d /tmp/lmms/src
    PYTHONPATH=. python -m tests.benchmarks.lmms_oracle /tmp/lmms/src

`load(src)` imports the four tasks' utils.py, `mcq_extract.py` and `api/reasoning.py` straight from
`src` without lmms-eval's task registry (`lmms_eval.tasks` is stubbed so its __init__ never runs).
cv2, decord and datasets get stub modules: the functions called never use decord or datasets, and cv2
only reports a video's fps and frame count (the stub returns the case's `VIDEOMME_HEADER`). The
default `--reasoning_tags` and each task's default `lmms_eval_specific_kwargs` are read from the
source too (`__main__.py`, the task YAMLs). LongVideoBench guesses at random when it finds no letter:
the oracle swaps its `random` for one whose `choice` returns "?" so a guess is visible as such.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.benchmarks import lmms_cases as cases

VERSION = "0.7.3"
FIXTURE = Path(__file__).parent / "data" / "lmms_eval_oracle.json"
COMMAND = "PYTHONPATH=. python -m tests.benchmarks.lmms_oracle /tmp/lmms/src  (see the module docstring)"
TASKS = ("videomme", "mvbench", "longvideobench", "mlvu")


def find_source() -> Path | None:
    """lmms-eval's source: $LMMS_EVAL_SRC, or an installed `lmms_eval` package (found, not imported)."""
    if os.environ.get("LMMS_EVAL_SRC"):
        return Path(os.environ["LMMS_EVAL_SRC"])
    spec = importlib.util.find_spec("lmms_eval")
    if spec and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).parent
    return None


def source_version(src: Path) -> str | None:
    for meta in src.glob("lmms_eval-*.dist-info/METADATA"):
        m = re.search(r"^Version: (\S+)", meta.read_text(), re.M)
        if m:
            return m.group(1)
    return None


class _Capture:
    """cv2.VideoCapture stand-in: the case's fps and frame count."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get(self, prop: int) -> float:
        return cases.VIDEOMME_HEADER[0] if prop == 5 else cases.VIDEOMME_HEADER[1]


class _Choice:
    """LongVideoBench's `random`, made visible: a guess comes back as "?"."""

    @staticmethod
    def choice(options: list[str]) -> str:
        return "?"


@contextlib.contextmanager
def stubbed(src: Path, hf_home: Path) -> Iterator[None]:
    """lmms-eval importable from `src` (no task registry; cv2/decord/datasets stubbed); undone on exit."""
    from loguru import logger

    src = Path(src)
    before = set(sys.modules)
    saved_env, saved_path = os.environ.get("HF_HOME"), list(sys.path)
    os.environ["HF_HOME"] = str(hf_home)
    stubs = {
        "cv2": {"VideoCapture": _Capture, "CAP_PROP_FPS": 5, "CAP_PROP_FRAME_COUNT": 7},
        "decord": {"VideoReader": None, "cpu": None},
        "datasets": {"Dataset": object},
        "lmms_eval.tasks": {"__path__": [str(src / "lmms_eval" / "tasks")]},
    }
    logger.disable("lmms_eval")  # its aggregations log every category
    try:
        sys.path.insert(0, str(src))
        for name, attrs in stubs.items():
            if name in sys.modules and name != "lmms_eval.tasks":
                continue  # the real package is there: use it
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
        yield
    finally:
        for name in set(sys.modules) - before:  # lmms-eval, the stubs, and what was built on them
            if name.startswith(("lmms_eval", "benchmarks.video_suites.lmms_model")) or name in stubs:
                del sys.modules[name]
        sys.path[:] = saved_path
        logger.enable("lmms_eval")
        if saved_env is None:
            os.environ.pop("HF_HOME", None)
        else:
            os.environ["HF_HOME"] = saved_env


@contextlib.contextmanager
def load(src: Path, hf_home: Path) -> Iterator[dict[str, types.ModuleType]]:
    """The task modules (and `reasoning`, `mcq`), imported from `src` with stubs; sys.modules restored after."""
    with stubbed(src, hf_home):
        mods = {}
        for task in TASKS:
            path = Path(src) / "lmms_eval" / "tasks" / task / "utils.py"
            spec = importlib.util.spec_from_file_location(f"lmms_eval.tasks.{task}.utils", path)
            mods[task] = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mods[task]
            spec.loader.exec_module(mods[task])
        mods["longvideobench"].random = _Choice
        mods["reasoning"] = importlib.import_module("lmms_eval.api.reasoning")
        mods["mcq"] = importlib.import_module("lmms_eval.tasks._task_utils.mcq_extract")
        yield mods


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    # lmms-eval reads its YAMLs the same way: lines with !function dropped
    return yaml.safe_load(
        "".join(line for line in path.read_text().splitlines(True) if "!function" not in line)
    )


def default_kwargs(src: Path, task_yaml: str) -> dict[str, Any]:
    return _yaml(src / "lmms_eval" / "tasks" / task_yaml)["lmms_eval_specific_kwargs"]["default"]


def reasoning_tags(src: Path) -> list[list[str]]:
    text = (src / "lmms_eval" / "__main__.py").read_text()
    m = re.search(r'"--reasoning_tags",.*?default=\'([^\']*)\'', text, re.S)
    return json.loads(m.group(1))


def _strip(mods: dict[str, types.ModuleType], tags: list[list[str]], reply: str) -> str:
    return mods["reasoning"].strip_reasoning_tags(reply, tags)


def verdicts(mods: dict, tags: list) -> dict[str, list[list[Any]]]:
    """[reply index, gold, prediction, correct (None: out of the denominator), guessed] per suite."""
    out: dict[str, list[list[Any]]] = {t: [] for t in TASKS}
    vm_doc = {k: v for k, v in cases.VIDEOMME_DOCS[0].items() if k != "answer"}
    for i, reply in enumerate(cases.REPLIES):
        pred = _strip(mods, tags, reply)
        for gold in cases.GOLDS:
            g = "ABCD".index(gold)
            r = mods["videomme"].videomme_process_results({**vm_doc, "answer": gold}, [pred])[
                "videomme_perception_score"
            ]
            out["videomme"].append([i, gold, r["pred_answer"], r["score"] == 1.0, False])
            r = mods["mlvu"].mlvu_process_results(
                {"question": "q", "task_type": "count", "answer": gold}, [pred]
            )
            r = r["mlvu_percetion_score"]
            out["mlvu"].append([i, gold, r["pred_answer"], r["pred_answer"] == r["answer"], False])
            r = mods["mvbench"].mvbench_process_results(
                {"candidates": cases.OPTIONS, "answer": cases.OPTIONS[g]}, [pred]
            )
            r = r["mvbench_accuracy"]
            out["mvbench"].append(
                [i, gold, r["pred_answer"], None if r["pred_answer"] == "" else r["score"] == 1, False]
            )
            doc = {**{f"option{k}": o for k, o in enumerate([*cases.OPTIONS, "N/A"])}, "id": "x", "correct_choice": g,
                   "duration_group": 15, "question_category": "T2E"}  # fmt: skip
            r = mods["longvideobench"].longvideobench_process_results(doc, [pred])["lvb_acc"]
            guessed = r["parsed_pred"] == "?"
            out["longvideobench"].append(
                [i, gold, r["parsed_pred"], None if guessed else r["parsed_pred"] == r["answer"], guessed]
            )
    return out


def prompts(mods: dict, src: Path, hf_home: Path) -> dict[str, str]:
    """doc_to_text on the case rows, with each task's default kwargs (subtitle files written under hf_home)."""
    out = {}
    vm, mv, lvb, ml = mods["videomme"], mods["mvbench"], mods["longvideobench"], mods["mlvu"]
    for k, doc in enumerate(cases.VIDEOMME_DOCS):
        out[f"videomme/{k}"] = vm.videomme_doc_to_text(doc, default_kwargs(src, "videomme/videomme.yaml"))
        sub = hf_home / "videomme" / "subtitle" / f"{doc['videoID']}.srt"
        sub.parent.mkdir(parents=True, exist_ok=True)
        if k == 0:
            sub.write_text(cases.VIDEOMME_SRT)
        sub_kwargs = default_kwargs(src, "videomme/videomme_w_subtitle.yaml")
        out[f"videomme_w_subtitle/{k}"] = vm.videomme_doc_to_text_subtitle(doc, sub_kwargs)
    for task, doc in cases.MVBENCH_DOCS:
        out[f"mvbench_{task}"] = mv.mvbench_doc_to_text(
            doc, default_kwargs(src, f"mvbench/mvbench_{task}.yaml")
        )
    subs = hf_home / "datasets" / "longvideobench" / "subtitles"
    subs.mkdir(parents=True, exist_ok=True)
    for name, cues in cases.LVB_CUES.items():
        (subs / name).write_text(json.dumps(cues))
    for k, doc in enumerate(cases.LVB_DOCS):
        out[f"longvideobench_val_v/{k}"] = lvb.longvideobench_doc_to_text(
            doc, default_kwargs(src, "longvideobench/longvideobench_val_v.yaml"))  # fmt: skip
        out[f"longvideobench_val_i/{k}"] = lvb.longvideobench_doc_to_text(
            doc, default_kwargs(src, "longvideobench/longvideobench_val_i.yaml"))  # fmt: skip
    for k, doc in enumerate(cases.MLVU_DOCS):
        out[f"mlvu_dev/{k}"] = ml.mlvu_doc_to_text(doc, default_kwargs(src, "mlvu/mlvu_dev.yaml"))
    return out


def _doc_to_text(mods: dict, src: Path, suite: str, task: str, doc: dict) -> str:
    yaml_name = {"videomme": "videomme/videomme.yaml", "longvideobench": "longvideobench/longvideobench_val_v.yaml",
                 "mlvu": "mlvu/mlvu_dev.yaml"}.get(suite, f"mvbench/{task}.yaml")  # fmt: skip
    fn = {"videomme": "videomme_doc_to_text", "mvbench": "mvbench_doc_to_text",
          "longvideobench": "longvideobench_doc_to_text", "mlvu": "mlvu_doc_to_text"}[suite]  # fmt: skip
    return getattr(mods[suite], fn)(doc, default_kwargs(src, yaml_name))


def bench(mods: dict, src: Path, tags: list) -> dict[str, Any]:
    """process_results and doc_to_text per row, aggregate_results per task (and MVBench's sub-tasks pooled)."""
    fns = {"videomme": ("videomme_process_results", "videomme_aggregate_results", "videomme_perception_score"),
           "mvbench": ("mvbench_process_results", "mvbench_aggregate_results", "mvbench_accuracy"),
           "longvideobench": ("longvideobench_process_results", "longvideobench_aggregate_results", "lvb_acc"),
           "mlvu": ("mlvu_process_results", "mlvu_aggregate_results_dev", "mlvu_percetion_score")}  # fmt: skip
    out: dict[str, Any] = {}
    for suite, rows in cases.BENCH.items():
        process, agg, metric = fns[suite]
        per_row, texts, by_task = [], [], {}
        for row, reply in rows:
            doc = {k: v for k, v in row.items() if k != "_task"}
            task = {"videomme": "videomme", "longvideobench": "longvideobench_val_v", "mlvu": "mlvu_dev"}.get(
                suite
            )
            task = task or f"mvbench_{row['_task']}"
            result = getattr(mods[suite], process)(doc, [_strip(mods, tags, reply)])
            per_row.append(result)
            texts.append(_doc_to_text(mods, src, suite, task, doc))
            by_task.setdefault(task, []).append(result[metric])
        scores = {t: getattr(mods[suite], agg)(items) for t, items in by_task.items()}
        if suite == "mvbench":
            scores["mvbench"] = getattr(mods[suite], agg)([i for items in by_task.values() for i in items])
        out[suite] = {"process_results": per_row, "aggregate": scores, "prompts": texts}
    return out


def build(src: Path) -> dict[str, Any]:
    """The whole fixture, from lmms-eval's code at `src`."""
    with tempfile.TemporaryDirectory() as tmp, load(src, Path(tmp)) as mods:
        tags = reasoning_tags(src)
        return {
            "lmms_eval_version": source_version(src) or "unknown",
            "regenerate": COMMAND,
            "reasoning_tags": tags,
            "verdicts": verdicts(mods, tags),
            "prompts": prompts(mods, src, Path(tmp)),
            "bench": bench(mods, src, tags),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", help="lmms-eval source root (holds lmms_eval/); default $LMMS_EVAL_SRC")
    ap.add_argument("--out", default=str(FIXTURE))
    args = ap.parse_args(argv)
    src = Path(args.src) if args.src else find_source()
    if src is None:
        ap.error("no lmms-eval source: pass its path or set LMMS_EVAL_SRC")
    fixture = build(src)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{args.out}: lmms-eval {fixture['lmms_eval_version']}, {sum(map(len, fixture['verdicts'].values()))} verdicts"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
