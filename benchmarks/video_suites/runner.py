"""The evaluation loop: ask a backend about each sample not yet finished, record it as it completes.

`evaluate(sample, backend, settings)` builds the prompt (with subtitles at the sampled times when on),
cuts segments, asks, extracts the letter and returns the per-sample record; it never raises (a bad
video or a failed request becomes the record's `error`, retried on the next run). With
`settings["protocol"] == "lmms-eval"` the prompt, the frames sent and the scoring are lmms-eval's
(`lmms_protocol`); `correct` is then None where lmms-eval leaves a sample out of the denominator. `run(...)` keeps
`backend.workers` requests in flight and appends each record to the `ResultsFile` as it finishes;
an interrupt writes everything already finished before it propagates.
"""

from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from benchmarks.video_suites import lmms_protocol
from benchmarks.video_suites.backends import Backend, Request, video_input
from benchmarks.video_suites.extract import extract_answer
from benchmarks.video_suites.prompts import build_prompt
from benchmarks.video_suites.results import ResultsFile
from benchmarks.video_suites.schema import Sample, duration_bucket
from benchmarks.video_suites.subtitles import subtitle_text


def measured_duration(sample: Sample) -> float | None:
    """Seconds of video the question is about: annotation, segment bounds, frame count, or the container."""
    if sample.start is not None and sample.end is not None:
        return float(sample.end - sample.start)
    if sample.duration is not None:
        return float(sample.duration)
    try:
        import video

        if sample.frame_fps:
            from video.sequence import as_sequence

            return len(as_sequence(sample.video, sample.frame_fps).frames) / sample.frame_fps
        with video.open_video(sample.video) as reader:
            return float(reader.info.duration)
    except Exception:  # a broken file shows up as the sample's error later
        return None


def sampled_times(sample: Sample, fps: float, max_frames: int | None) -> list[float] | None:
    try:
        import video

        with video.open_video(sample.video, fps, max_frames) as reader:
            return [float(t) for t in reader.targets]
    except Exception:
        return None


def evaluate(sample: Sample, backend: Backend, settings: dict[str, Any]) -> dict[str, Any]:
    """Ask `backend` about `sample`; the result record (never raises: failures go into `error`)."""
    duration = measured_duration(sample)
    record: dict[str, Any] = {
        "id": sample.id, "suite": sample.suite, "video": sample.video, "question": sample.question,
        "options": list(sample.options), "answer": sample.answer, "tags": sample.tags, "duration_s": duration,
        "duration_bucket": sample.tags.get("duration_bucket") or duration_bucket(duration),
        "task_type": sample.tags.get("task_type", "unknown"),
    }  # fmt: skip
    lmms = settings.get("protocol") == "lmms-eval"
    try:
        images = ""
        if lmms:
            prompt = lmms_protocol.prompt(sample, settings["subtitles"])
            video, images = lmms_protocol.request_video(sample, settings)
        else:
            subs = None
            if settings["subtitles"] and sample.subtitle:
                subs = subtitle_text(
                    sample.subtitle, sampled_times(sample, settings["fps"], settings["max_frames"])
                )
            prompt, video = build_prompt(sample, subs), video_input(sample, settings["fps"])
        request = Request(
            sample.id, video, prompt, settings["max_new_tokens"], settings["thinking"],
            settings["budget"], settings["temperature"], settings["top_p"], settings["seed"], images,
        )  # fmt: skip
        reply = backend.answer(request)
    except Exception as exc:  # a bad video or a failed request: recorded, retried on resume
        record.update(prediction=None, correct=False, error=f"{type(exc).__name__}: {exc}")
        return record
    if lmms:
        try:
            record.update(lmms_protocol.score(sample, reply.text, settings["subtitles"], prompt))
        except (
            Exception
        ) as exc:  # an annotation lmms-eval's task code cannot score (e.g. answer not an option)
            record.update(
                prediction=None, correct=False, raw_output=reply.text, error=f"{type(exc).__name__}: {exc}"
            )
            return record
    else:
        found = extract_answer(reply.text, sample.options)
        record.update(prediction=found.letter, rule=found.rule, correct=found.letter == sample.answer)
    record.update(
        raw_output=reply.text,
        thinking=reply.thinking, finish_reason=reply.finish_reason, usage=reply.usage,
        timings={"ttft_s": reply.ttft_s, "total_s": reply.total_s, "decode_s": reply.decode_s, "frames": reply.frames},
        error=None,
    )  # fmt: skip
    return record


def run(
    samples: list[Sample],
    backend: Backend,
    results: ResultsFile,
    settings: dict[str, Any],
    progress: bool = True,
) -> int:
    """Evaluate the samples not finished in `results`, `backend.workers` at a time; returns how many ran."""
    todo = [s for s in samples if s.id not in results.done]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(samples), initial=len(samples) - len(todo), desc="video QA", unit="q", file=sys.stderr
        )
    correct = sum(1 for r in results.records() if r.get("correct"))
    scored = len(results.done)
    with ThreadPoolExecutor(max_workers=max(1, backend.workers)) as pool:
        queue = iter(todo)
        # at most 2 x workers in flight, so an interrupt loses little
        pending = {
            pool.submit(evaluate, s, backend, settings) for _, s in zip(range(2 * backend.workers), queue)
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                stop: BaseException | None = None
                for fut in done:  # write every finished sample before re-raising an interrupt
                    try:
                        rec = fut.result()
                    except BaseException as exc:  # KeyboardInterrupt in a worker, or a bug
                        stop = stop or exc
                        continue
                    results.append(rec)
                    if not rec["error"]:
                        scored, correct = scored + 1, correct + bool(rec["correct"])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(acc=f"{correct / max(scored, 1):.1%}")
                    nxt = None if stop else next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(evaluate, nxt, backend, settings))
                if stop is not None:
                    raise stop
        finally:
            for fut in pending:
                fut.cancel()
    if bar is not None:
        bar.close()
    return len(todo)
