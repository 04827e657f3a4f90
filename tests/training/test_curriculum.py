"""training/curriculum.sh: every plan's phases are valid trainer calls (run with a recording stand-in for
the trainer, so a typo in a mix fails here, not an hour into a run)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from training.generators import parse_mix

ROOT = Path(__file__).resolve().parents[2]


def plan_calls(tmp_path: Path, plan: str, **env: str) -> list[list[str]]:
    """The `training.train` argument lists the plan runs, in order (SCALE=0.5)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "python"
    # arithmetic (-c) goes to the real interpreter; the trainer's calls are recorded, one per line
    fake.write_text(
        f'#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then exec {shlex.quote(sys.executable)} "$@"; fi\n'
        f'printf "%q " "$@" >> {shlex.quote(str(calls))}; echo >> {shlex.quote(str(calls))}\n'
    )
    fake.chmod(0o755)
    run = subprocess.run(
        ["bash", "training/curriculum.sh", str(tmp_path / "out"), str(fake)],
        cwd=ROOT, env={**os.environ, "PLAN": plan, "SCALE": "0.5", **env}, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return [shlex.split(line) for line in calls.read_text().splitlines()]


def flag(args: list[str], name: str) -> str:
    """The last value given to `name` (argparse keeps the last)."""
    return args[len(args) - 1 - args[::-1].index(name) + 1]


REFINEMENTS = ("refine", "weak", "click", "objects", "attend", "buttons", "canvas")


@pytest.mark.parametrize(
    "plan, phases",
    [
        ("cpu", 5),
        ("gpu", 6),
        ("refine", 8),
        ("weak", 4),
        ("click", 6),
        ("objects", 7),
        ("attend", 5),
        ("buttons", 3),
        ("canvas", 1),
    ],
)
def test_every_phase_is_a_valid_trainer_call(tmp_path, plan, phases):
    init = {"INIT": str(tmp_path / "export")} if plan in REFINEMENTS else {}
    calls = plan_calls(tmp_path, plan, **init)
    assert len(calls) == phases
    for args in calls:
        assert args[:2] == ["-m", "training.train"]
        assert parse_mix(flag(args, "--mix"))  # a named mix or valid kinds
        assert float(flag(args, "--phase-minutes")) > 0 and float(flag(args, "--lr")) > 0
    if init:  # a refinement starts from another model: every phase is a new one, with the aux heads
        assert all("--new-phase" in a and float(flag(a, "--aux-weight")) >= 1 for a in calls)
        assert flag(calls[0], "--init") == init["INIT"]
    if plan in ("objects", "attend", "buttons", "canvas"):  # the per-token targets in every phase
        assert all(float(flag(a, "--object-weight")) >= 1 for a in calls)
    if plan in ("attend", "buttons", "canvas"):  # and the attention targets
        assert all(float(flag(a, "--attend-weight")) >= 1 for a in calls)
    if plan == "buttons":  # the X button alone with the per-token targets up, then mixes at 1
        assert [float(flag(a, "--object-weight")) for a in calls] == [4, 1, 1]
    if plan == "canvas":  # the canvas twins at weight 2
        assert float(flag(calls[0], "--canvas-weight")) == 2


def test_scale_multiplies_the_phase_minutes(tmp_path):
    calls = plan_calls(tmp_path, "cpu")
    assert [float(flag(a, "--phase-minutes")) for a in calls] == [0.75, 3, 3, 7.5, 9.5]


def test_flags_reach_every_phase_and_a_phase_s_own_flags_win(tmp_path):
    calls = plan_calls(tmp_path, "cpu", FLAGS="--aux-weight 1 --attend-weight 1")
    assert len(calls) == 5 and all(
        flag(a, "--aux-weight") == "1" == flag(a, "--attend-weight") for a in calls
    )
    (tmp_path / "b").mkdir()
    calls = plan_calls(tmp_path / "b", "buttons", INIT=str(tmp_path / "export"), FLAGS="--object-weight 2")
    assert [flag(a, "--object-weight") for a in calls] == ["4", "2", "2"]  # phase 1 sets its own


def test_a_refinement_from_a_run_continues_its_checkpoint(tmp_path):
    run = tmp_path / "refine_run"
    run.mkdir()
    for name in ("ckpt.json", "ckpt.safetensors", "tokenizer.json"):
        (run / name).write_text(name)
    calls = plan_calls(tmp_path, "weak", INIT=str(run))
    assert all("--init" not in a for a in calls)  # the copied checkpoint is resumed instead
    assert (tmp_path / "out" / "ckpt.safetensors").read_text() == "ckpt.safetensors"


def test_a_refinement_without_a_start_and_an_unknown_plan_are_refused(tmp_path):
    for plan, env in (("weak", {"INIT": ""}), ("nope", {})):
        run = subprocess.run(
            ["bash", "training/curriculum.sh", str(tmp_path / "out"), "false"],
            cwd=ROOT, env={**os.environ, "PLAN": plan, **env}, capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 2 and plan in run.stderr
