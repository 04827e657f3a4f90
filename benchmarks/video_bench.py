"""Video QA benchmark: a suite's local copy -> per-sample JSONL, a summary table, JSON and plots.

    python -m benchmarks.video_bench --suite synthetic --root /tmp/syn --make-synthetic 24 --model tiny
    python -m benchmarks.video_bench --suite videomme --root ~/data/Video-MME --backend openai \
        --base-url http://127.0.0.1:8000/v1 --workers 8 --max-frames 64
    python -m benchmarks.video_bench --suite synthetic --root /tmp/syn --model http://127.0.0.1:8000/v1
    (a URL in --model is --backend openai --base-url URL; the served model: $OPENAI_MODEL or its first)
    (the same as `mm-model bench video ...`)

Suites and their layouts: `benchmarks.video_suites`. Results go to `--out` (default
benchmarks/results/video/<suite>-<backend>/): results.jsonl (appended per sample; rerun to resume),
summary.json, accuracy_by_bucket.png, seconds_vs_duration.png. The table is printed, then the
summary as the last line of JSON.

`--protocol lmms-eval` (Video-MME, MVBench, LongVideoBench, MLVU) prompts, scores and aggregates as
lmms-eval 0.7.3's task code does and also writes its `<date>_results.json` and
`<date>_samples_<task>.jsonl` under <out>/lmms_eval/<model>/ (`benchmarks.video_suites.lmms_results`).
Frames stay the model's own (2 fps, 4-frame chunks) unless `--frames lmms-eval` sends what lmms-eval's
openai_compatible sends (`--max-frames`, default 10, separate images); the header says which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.video_suites import SUITES, lmms_protocol, load_suite
from benchmarks.video_suites.backends import Backend
from benchmarks.video_suites.lmms_eval import LMMS_EVAL_VERSION
from benchmarks.video_suites.lmms_eval import SUITES as LMMS_SUITES
from benchmarks.video_suites.lmms_frames import MODES
from benchmarks.video_suites.prompts import PROMPT_VERSION
from benchmarks.video_suites.results import FingerprintMismatch, ResultsFile
from benchmarks.video_suites.runner import evaluate, run
from vision.errors import InputError

__all__ = ["add_bench_command", "evaluate", "main", "run"]

RESULTS = Path(__file__).resolve().parent / "results" / "video"


def make_backend(args: argparse.Namespace) -> Backend:
    from benchmarks.video_suites import backends
    from mm_model.remote import RemoteModel, is_url

    if is_url(args.model):  # `--model URL`: that endpoint, through the openai backend
        if args.base_url and args.base_url.rstrip("/") != args.model.rstrip("/"):
            raise InputError(f"--model {args.model} and --base-url {args.base_url} name two endpoints")
        # Checked now (reachable, OpenAI-compatible, serves a model) rather than at the first sample.
        endpoint = RemoteModel(args.model, os.environ.get("OPENAI_MODEL"), probe_timeout=30)
        args.backend, args.base_url, args.model = "openai", endpoint.url, endpoint.name
    if args.backend == "local":
        return backends.LocalBackend(args.model or "tiny", fps=args.fps, max_frames=args.max_frames,
                                     max_patches_per_frame=args.max_patches_per_frame)  # fmt: skip
    return backends.OpenAIBackend(args.base_url, args.model, workers=args.workers, fps=args.fps or 2.0,
                                  max_frames=args.max_frames, max_patches_per_frame=args.max_patches_per_frame)  # fmt: skip


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--suite", choices=SUITES, required=True)
    ap.add_argument(
        "--root", required=True, help="the suite's local folder (for generic: the .jsonl or its folder)"
    )
    ap.add_argument(
        "--make-synthetic",
        type=int,
        metavar="N",
        help="synthetic: write N clips under --root first if absent",
    )
    ap.add_argument(
        "--synthetic-seed", type=int, default=None, help="synthetic: held-out seed (default 100000)"
    )
    ap.add_argument(
        "--synthetic-source",
        choices=("auto", "training", "builtin"),
        default="auto",
        help="synthetic: the training generators' held-out splits (auto: when importable) or the built-in families",
    )
    ap.add_argument("--backend", choices=("local", "openai"), default="local")
    ap.add_argument(
        "--model",
        default=None,
        help="local: bundled name or checkpoint dir (default tiny), or an endpoint URL (then the openai "
        "backend at that URL); openai: served model id (default: $OPENAI_MODEL, else the endpoint's first)",
    )
    ap.add_argument(
        "--base-url",
        default=None,
        help="openai: endpoint (default $OPENAI_BASE_URL); key from $OPENAI_API_KEY",
    )
    ap.add_argument("--workers", type=int, default=4, help="openai: concurrent requests")
    ap.add_argument("--fps", type=float, default=None, help="video sampling rate (default: the model's, 2)")
    ap.add_argument("--max-frames", type=int, default=None, help="cap on sampled frames per video")
    ap.add_argument(
        "--max-patches-per-frame", type=int, default=None, help="per-frame patch budget (K2.5: 4096)"
    )
    ap.add_argument(
        "--protocol",
        choices=("native", "lmms-eval"),
        default="native",
        help="native: our prompts and extractor; lmms-eval: lmms-eval 0.7.3's prompts, scoring and aggregation",
    )
    ap.add_argument(
        "--frames",
        choices=MODES,
        default="native",
        help="with --protocol lmms-eval: native (2 fps, 4-frame chunks) or what lmms-eval's openai_compatible "
        "sends (--max-frames images, default 10; -simple: its --force_simple class)",
    )
    ap.add_argument("--thinking", action="store_true", help="thinking mode")
    ap.add_argument(
        "--budget", default=None, help="Toggle thinking budget: tokens or 'auto' (needs --thinking)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--subtitles", action="store_true", help="Video-MME / LongVideoBench: with subtitles")
    ap.add_argument("--tasks", nargs="*", default=None, help="MVBench: only these tasks")
    ap.add_argument("--limit", type=int, default=None, help="only the first N samples")
    ap.add_argument(
        "--out", default=None, help="results folder (default benchmarks/results/video/<suite>-<backend>)"
    )
    ap.add_argument("--restart", action="store_true", help="discard earlier results in --out")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")


def main_args(args: argparse.Namespace) -> int:
    from benchmarks.video_suites import summary as summ

    if args.budget not in (None, "auto"):
        args.budget = int(args.budget)
    if args.budget is not None and not args.thinking:
        print("video bench: --budget needs --thinking", file=sys.stderr)
        return 2
    lmms = args.protocol == "lmms-eval"
    if lmms and args.suite not in LMMS_SUITES:
        print(
            f"video bench: --protocol lmms-eval covers {', '.join(LMMS_SUITES)}, not {args.suite}",
            file=sys.stderr,
        )
        return 2
    if args.frames != "native" and not lmms:
        print("video bench: --frames lmms-eval needs --protocol lmms-eval", file=sys.stderr)
        return 2
    root = Path(args.root)
    if args.suite == "synthetic" and args.make_synthetic and not (root / "annotations.jsonl").exists():
        from benchmarks.video_suites.synthetic import HELD_OUT_SEED, make_suite

        make_suite(
            root, args.make_synthetic, args.synthetic_seed or HELD_OUT_SEED, source=args.synthetic_source
        )
    try:
        loaded = load_suite(args.suite, root, subtitles=args.subtitles, tasks=args.tasks)
    except (OSError, ValueError, KeyError, ImportError) as exc:  # a wrong --root or a malformed annotation
        print(f"video bench: cannot read {args.suite} under {root}: {exc}", file=sys.stderr)
        return 2
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    if loaded.missing:
        print(
            f"{len(loaded.missing)} samples skipped, video missing (first: {loaded.missing[0][1]})",
            file=sys.stderr,
        )
    samples = loaded.samples[: args.limit] if args.limit else loaded.samples
    backend = make_backend(args)
    settings = {"fps": args.fps or getattr(backend, "fps", 2.0), "max_frames": args.max_frames,
                "subtitles": args.subtitles, "thinking": args.thinking, "budget": args.budget,
                "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "seed": args.seed}  # fmt: skip
    notes = []
    if lmms:  # only then: native fingerprints stay as they were, so old results still resume
        settings.update(protocol=args.protocol, frames=args.frames, lmms_eval=LMMS_EVAL_VERSION)
        notes = lmms_protocol.notes(args.frames, args.max_frames)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    fingerprint = {"suite": args.suite, "root": str(root.resolve()), **backend.describe(), **settings,
                   "prompt_version": PROMPT_VERSION}  # fmt: skip
    out = Path(args.out) if args.out else RESULTS / f"{args.suite}-{args.backend}"
    try:
        results = ResultsFile(out / "results.jsonl", fingerprint, restart=args.restart)
    except FingerprintMismatch as exc:
        print(f"video bench: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        ran = run(samples, backend, results, settings, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(results.done)} finished samples are in {results.path}; rerun to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    wall = time.perf_counter() - start
    wanted = {s.id for s in samples}
    records = [r for r in results.records() if r["id"] in wanted]
    if lmms:  # lmms-eval's doc_id: the position in its task
        doc_ids = lmms_protocol.doc_ids(loaded.samples, args.subtitles)
        for r in records:
            if r.get("lmms_eval"):
                r["lmms_eval"]["doc_id"] = doc_ids[r["id"]]
    chance = sum(1 / len(s.options) for s in samples) / len(samples) if samples else None
    meta = {"suite": args.suite, "model": fingerprint.get("model"), "backend": args.backend, "settings": fingerprint,
            "samples": len(samples), "missing_videos": len(loaded.missing),
            "missing_examples": [f"{i}: {p}" for i, p in loaded.missing[:20]], "ran_now": ran, "wall_s_now": wall,
            "chance": chance, **({"notes": notes} if notes else {})}  # fmt: skip
    summary = summ.summarize(records, meta)
    print(summ.format_table(summary))
    if not args.no_plots:
        summary["plots"] = [str(p) for p in summ.plot(summary, records, out)]
    if lmms:
        from benchmarks.video_suites import lmms_results

        config = {
            "model": fingerprint.get("model") or "mm_model",
            "model_args": fingerprint,
            "protocol": notes,
        }
        summary["lmms_eval_files"] = [str(p) for p in lmms_results.write(out / "lmms_eval", records, config)]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(json.dumps(summary, default=str))
    return 0


def add_bench_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench video ...` to a CLI's subparsers (`mm-model bench video`); returns the `bench` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks")
    sub = bench.add_subparsers(dest="bench_command", required=True)
    video_parser = sub.add_parser("video", help="video QA suites: accuracy and throughput, resumable",
                                  description=__doc__.splitlines()[0])  # fmt: skip
    add_arguments(video_parser)
    video_parser.set_defaults(func=main_args)
    return bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return main_args(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
