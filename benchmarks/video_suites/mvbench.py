"""MVBench (OpenGVLab/MVBench), in its release layout:

    root/json/<task>.json            entries {video, question, candidates[], answer (text), [start, end]}
    root/video/<source folder>/...   per task, as in the official evaluation (VideoChat2 mvbench.ipynb);
                                     files added later live under video/data0613/<source folder>/

Task -> (annotation file, source folder, input type, bounded): the official table below. "frame"
inputs are folders of JPEG frames at 3 fps (TVQA); bounded tasks ask about the [start, end] segment.
Duration bucket: measured at run time (MVBench publishes none); task type = the task.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.video_suites.schema import Sample, SuiteLoad, answer_letter, read_json_or_jsonl

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


def load(root: str | Path, tasks: list[str] | None = None) -> SuiteLoad:
    root = Path(root)
    out = SuiteLoad([])
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
            path = root / "video" / folder / rec["video"]
            if not path.exists() and (root / "video" / "data0613" / folder / rec["video"]).exists():
                path = root / "video" / "data0613" / folder / rec["video"]
            sample = Sample(
                id=sid, suite="mvbench", video=str(path), question=str(rec["question"]), options=tuple(options),
                answer=answer_letter(rec["answer"], options, sid), tags={"task_type": task},
                start=float(rec["start"]) if bounded and "start" in rec else None,
                end=float(rec["end"]) if bounded and "end" in rec else None,
                frame_fps=FRAME_FPS if kind == "frame" else None,
            )  # fmt: skip
            if path.exists():
                out.samples.append(sample)
            else:
                out.missing.append((sid, str(path)))
    return out
