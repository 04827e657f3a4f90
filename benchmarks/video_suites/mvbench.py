"""MVBench (OpenGVLab/MVBench), in its release layout or in the pre-cut one lmms-eval reads:

    root/json/<task>.json            entries {video, question, candidates[], answer (text), [start, end]}
    root/video/<source folder>/...   release (main revision), as in the official evaluation (VideoChat2
                                     mvbench.ipynb); files added later live under video/data0613/<folder>/
    root/<segment folder>/...        the `video` revision lmms-eval downloads (no video/ folder): every
                                     clip already cut to its segment, TVQA as MP4s (`SEGMENTS`)

Task -> (annotation file, source folder, input type, bounded): the official table below. "frame"
inputs are folders of JPEG frames at 3 fps (TVQA); bounded tasks ask about the [start, end] segment.
In the pre-cut layout bounds are ignored (the clip is the segment) and there is no data0613 fallback
(lmms-eval 0.7.3's never applies). Duration bucket: measured at run time; task type = the task.
`Sample.doc` is the annotation entry, which is what lmms-eval's task reads.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.video_suites.schema import Sample, SuiteLoad, answer_letter, json_safe, read_json_or_jsonl

TASKS: dict[str, tuple[str, str, str, bool]] = {
    "Action Sequence": ("action_sequence.json", "star/Charades_v1_480", "video", True),
    "Action Prediction": ("action_prediction.json", "star/Charades_v1_480", "video", True),
    "Action Antonym": ("action_antonym.json", "ssv2_video", "video", False),
    "Fine-grained Action": ("fine_grained_action.json", "Moments_in_Time_Raw/videos", "video", False),
    "Unexpected Action": ("unexpected_action.json", "FunQA_test/test", "video", False),
    "Object Existence": ("object_existence.json", "clevrer/video_validation", "video", False),
    "Object Interaction": ("object_interaction.json", "star/Charades_v1_480", "video", True),
    "Object Shuffle": ("object_shuffle.json", "perception/videos", "video", False),
    "Moving Direction": ("moving_direction.json", "clevrer/video_validation", "video", False),
    "Action Localization": ("action_localization.json", "sta/sta_video", "video", True),
    "Scene Transition": ("scene_transition.json", "scene_qa/video", "video", False),
    "Action Count": ("action_count.json", "perception/videos", "video", False),
    "Moving Count": ("moving_count.json", "clevrer/video_validation", "video", False),
    "Moving Attribute": ("moving_attribute.json", "clevrer/video_validation", "video", False),
    "State Change": ("state_change.json", "perception/videos", "video", False),
    "Fine-grained Pose": ("fine_grained_pose.json", "nturgbd", "video", False),
    "Character Order": ("character_order.json", "perception/videos", "video", False),
    "Egocentric Navigation": ("egocentric_navigation.json", "vlnqa", "video", False),
    "Episodic Reasoning": ("episodic_reasoning.json", "tvqa/frames_fps3_hq", "frame", True),
    "Counterfactual Inference": ("counterfactual_inference.json", "clevrer/video_validation", "video", False),
}
FRAME_FPS = 3.0  # TVQA frame folders
# The `video` revision's folders per annotation stem (lmms-eval 0.7.3 tasks/mvbench/utils.py DATA_LIST).
SEGMENTS: dict[str, str] = {
    "object_interaction": "star/Charades_segment", "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment", "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation", "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos", "object_shuffle": "perception/videos", "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation", "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos", "scene_transition": "scene_qa/video",
    "state_change": "perception/videos", "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4", "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation", "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}  # fmt: skip


def layout(root: Path) -> str:
    """ "release" (a video/ folder) or "precut" (lmms-eval's `video` revision)."""
    return "release" if (root / "video").is_dir() else "precut"


def load(root: str | Path, tasks: list[str] | None = None) -> SuiteLoad:
    root = Path(root)
    precut = layout(root) == "precut"
    out = SuiteLoad([], notes=["pre-cut layout (the `video` revision lmms-eval reads)"] if precut else [])
    for task, (name, folder, kind, bounded) in TASKS.items():
        if tasks and task not in tasks and name.removesuffix(".json") not in tasks:
            continue
        ann = root / "json" / name
        if not ann.exists():
            out.notes.append(f"task {task}: no {ann.relative_to(root)}, skipped")
            continue
        for i, rec in enumerate(read_json_or_jsonl(ann)):
            sid = f"{name.removesuffix('.json')}/{i}"
            options = [str(c) for c in rec["candidates"]]
            if precut:
                path, bounded, kind = (
                    root / SEGMENTS[name.removesuffix(".json")] / rec["video"],
                    False,
                    "video",
                )
            else:
                path = root / "video" / folder / rec["video"]
                if not path.exists() and (root / "video" / "data0613" / folder / rec["video"]).exists():
                    path = root / "video" / "data0613" / folder / rec["video"]
            sample = Sample(
                id=sid, suite="mvbench", video=str(path), question=str(rec["question"]), options=tuple(options),
                answer=answer_letter(rec["answer"], options, sid), tags={"task_type": task},
                start=float(rec["start"]) if bounded and "start" in rec else None,
                end=float(rec["end"]) if bounded and "end" in rec else None,
                frame_fps=FRAME_FPS if kind == "frame" else None, doc=json_safe(rec),
            )  # fmt: skip
            if path.exists():
                out.samples.append(sample)
            else:
                out.missing.append((sid, str(path)))
    return out
