"""`--protocol lmms-eval` for one sample: the prompt lmms-eval writes, what goes to the model, the score.

The runner (`runner.evaluate`) asks `prompt`, `request_video` and `score` in turn. Frames:
  native            our model's own video protocol (2 fps, 4-frame chunks, timestamps), as with
                    `--protocol native`: a comparison of prompts and scoring, not of frames
  lmms-eval         what `--model openai_compatible` sends (`lmms_frames`, chat class)
  lmms-eval-simple  the same with `--force_simple`
LongVideoBench with subtitles is lmms-eval's `longvideobench_val_i`, whose visuals are 16 frames
(`load_video`: `int(int(duration * fps) / n) * i` for i < n = min(16, int(duration))) sent as images
in both lmms-eval modes, never resized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.video_suites import lmms_prompts
from benchmarks.video_suites.lmms_eval import LMMS_EVAL_VERSION, SUITES, judge
from benchmarks.video_suites.lmms_frames import DEFAULT_FRAMES, lmms_frames
from benchmarks.video_suites.lmms_results import TARGET, process_results, task_name
from benchmarks.video_suites.schema import Sample
from vision.errors import InputError


def check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise InputError(f"--protocol lmms-eval covers {', '.join(SUITES)}, not {suite!r}")


def doc_of(sample: Sample) -> dict[str, Any]:
    if sample.doc is None:
        raise InputError(f"sample {sample.id}: no annotation row to build lmms-eval's prompt from")
    return sample.doc


def _header(path: str) -> tuple[float, int]:
    import video

    with video.open_video(path) as reader:
        return reader.info.fps, reader.info.num_frames


def prompt(sample: Sample, subtitles: bool) -> str:
    """The text lmms-eval's doc_to_text gives for this sample's task."""
    doc = doc_of(sample)
    if sample.suite == "videomme":
        if not subtitles:
            return lmms_prompts.videomme(doc)
        fps, frames = _header(sample.video)
        return lmms_prompts.videomme_subtitled(
            doc, Path(sample.subtitle) if sample.subtitle else None, fps, frames
        )
    if sample.suite == "mvbench":
        return lmms_prompts.mvbench(doc)
    if sample.suite == "longvideobench":
        if not subtitles:
            return lmms_prompts.longvideobench(doc)
        if not sample.subtitle or not Path(sample.subtitle).exists():  # lmms-eval stops on it too
            raise InputError(f"sample {sample.id}: subtitle file {sample.subtitle} is missing")
        return lmms_prompts.longvideobench_interleaved(doc, Path(sample.subtitle))
    return lmms_prompts.mlvu(doc)


def _lvb_interleaved_frames(sample: Sample) -> list[Any]:
    from PIL import Image

    import video

    duration = float(doc_of(sample)["duration"])
    reader = video.open_video(sample.video, fps=1e9)  # every frame; keep the ones load_video keeps
    n = min(lmms_prompts.LVB_INTERLEAVE_FRAMES, int(duration))
    step = int(int(duration * reader.info.fps) / n) if n else 0
    wanted = [step * i for i in range(n)]
    with reader:
        kept = {int(reader.indices[f.position]): Image.fromarray(f.pixels) for f in reader
                if int(reader.indices[f.position]) in wanted}  # fmt: skip
    return [kept[i] for i in wanted if i in kept]


def request_video(sample: Sample, settings: dict[str, Any]) -> tuple[Any, str]:
    """(video or frame list, how frames go: "" as a video, "before"/"after" the text as images)."""
    from benchmarks.video_suites.backends import video_input

    mode = settings.get("frames", "native")
    if mode == "native":
        return video_input(sample, settings["fps"]), ""
    order = "before" if mode == "lmms-eval" else "after"
    if sample.suite == "longvideobench" and settings["subtitles"]:
        return _lvb_interleaved_frames(sample), order
    return lmms_frames(sample, mode, settings.get("max_frames")), order


def score(sample: Sample, reply: str, subtitles: bool, text: str) -> dict[str, Any]:
    """Record fields for `reply`: lmms-eval's prediction and verdict, and its per-sample results."""
    doc = doc_of(sample)
    if sample.suite == "longvideobench":  # all five slots: its choices stop at the first "N/A"
        options, gold = [str(o) for o in lmms_prompts.lvb_options(doc)], chr(65 + int(doc["correct_choice"]))
    else:
        options, gold = list(sample.options), sample.answer
    verdict = judge(sample.suite, reply, gold, options, guess_key=sample.id)
    lm = {"task": task_name(sample, subtitles), "metrics": process_results(sample, verdict), "filtered": verdict.filtered,
          "target": doc[TARGET[sample.suite]], "prompt": text, "doc": doc}  # fmt: skip
    return {"prediction": verdict.prediction, "rule": "lmms-eval", "correct": verdict.correct,
            "guessed": verdict.guessed, "lmms_eval": lm}  # fmt: skip


def notes(frames: str, max_frames: int | None) -> list[str]:
    """What `--protocol lmms-eval` reproduces and how its frames differ: the run's header."""
    head = f"protocol lmms-eval {LMMS_EVAL_VERSION}: its prompts (doc_to_text), scoring (process_results) and aggregation"
    if frames == "native":
        how = ("frames: this model's own video protocol (2 fps, 4-frame chunks with timestamps), NOT lmms-eval's: "
               "its openai_compatible sends max_frames_num (default 10) evenly spaced frames as separate images; "
               "--frames lmms-eval sends those")  # fmt: skip
    else:
        cls = (
            "chat class, images before the text"
            if frames == "lmms-eval"
            else "--force_simple class, images after the text"
        )
        how = f"frames: as lmms-eval's openai_compatible ({cls}): {max_frames or DEFAULT_FRAMES} frames spread over each video"
    return [head, how]


def doc_ids(samples: list[Sample], subtitles: bool) -> dict[str, int]:
    """lmms-eval's doc_id: a sample's position in its task (among the samples read)."""
    seen: dict[str, int] = {}
    ids = {}
    for s in samples:
        task = task_name(s, subtitles)
        ids[s.id] = seen.get(task, 0)
        seen[task] = ids[s.id] + 1
    return ids
