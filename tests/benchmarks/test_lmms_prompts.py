"""Prompts under `--protocol lmms-eval` equal lmms-eval 0.7.3's doc_to_text output for the same rows.

The expected texts are lmms-eval's own (tests/benchmarks/data/lmms_eval_oracle.json, made by
`lmms_oracle` from its source with each task's default kwargs; `test_lmms_eval_scoring` regenerates
the fixture when the source is at hand). The same rows read through our adapters give the same text
in `test_lmms_bench`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.video_suites import lmms_prompts
from tests.benchmarks import lmms_cases as cases
from tests.benchmarks.lmms_oracle import FIXTURE

ORACLE = json.loads(FIXTURE.read_text())["prompts"]


def ours(name: str, tmp_path: Path) -> str:
    task, _, k = name.partition("/")
    if task == "videomme":
        return lmms_prompts.videomme(cases.VIDEOMME_DOCS[int(k)])
    if task == "videomme_w_subtitle":
        srt = tmp_path / "sub.srt"
        srt.write_text(cases.VIDEOMME_SRT)
        fps, frames = cases.VIDEOMME_HEADER
        return lmms_prompts.videomme_subtitled(
            cases.VIDEOMME_DOCS[int(k)], srt if k == "0" else None, fps, frames
        )
    if task.startswith("mvbench_"):
        return lmms_prompts.mvbench(dict(cases.MVBENCH_DOCS)[task.removeprefix("mvbench_")])
    if task == "longvideobench_val_v":
        return lmms_prompts.longvideobench(cases.LVB_DOCS[int(k)])
    if task == "longvideobench_val_i":
        doc = cases.LVB_DOCS[int(k)]
        cues = tmp_path / doc["subtitle_path"]
        cues.write_text(json.dumps(cases.LVB_CUES[doc["subtitle_path"]]))
        return lmms_prompts.longvideobench_interleaved(doc, cues)
    return lmms_prompts.mlvu(cases.MLVU_DOCS[int(k)])


def test_every_task_and_variant_is_covered():
    tasks = {name.partition("/")[0] for name in ORACLE}
    assert tasks == {"videomme", "videomme_w_subtitle", "mvbench_action_sequence", "mvbench_episodic_reasoning",
                     "longvideobench_val_v", "longvideobench_val_i", "mlvu_dev"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ORACLE))
def test_prompt_equals_lmms_eval_doc_to_text(name, tmp_path):
    assert ours(name, tmp_path) == ORACLE[name]


def test_prompt_quirks_are_lmms_evals():
    """Named so a reader sees what differs from our native prompts (values from the oracle above)."""
    assert "based on the video and the subtitles" in ORACLE["videomme/0"]  # even without subtitles
    assert ORACLE["videomme/0"].endswith(
        "\n\nAnswer with the option's letter from the given choices directly."
    )
    assert ORACLE["mvbench_action_sequence"].startswith("Question:What")  # no space after the colon
    assert ORACLE["mlvu_dev/0"].endswith("Best option: (")
    assert "N/A" not in ORACLE["longvideobench_val_v/0"]


@pytest.mark.parametrize(
    "duration, expected",
    [(9.0, [0, 1, 2, 3, 4, 5, 6, 7, 8]), (32.0, [2.0 * i for i in range(16)]), (0.5, [])],
    ids=["short_one_a_second", "long_sixteen_spread", "under_a_second_none"],
)
def test_lvb_interleaved_frame_times(duration, expected):
    assert lmms_prompts.lvb_frame_times(duration) == expected
