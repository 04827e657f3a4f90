"""The K2.5 report's training-side rule, verbatim: phase alternation, the phase-0 reward, budget estimation."""

from __future__ import annotations

from collections.abc import Sequence

from mm_model.toggle.calibration import percentile_budget
from vision.errors import InputError

BUDGET_PHASE, SCALING_PHASE = 0, 1


def toggle_phase(iteration: int, m: int) -> int:
    """0 (budget-limited) or 1 (scaling): phases alternate every m iterations, iteration 0 in phase 0."""
    if m < 1 or iteration < 0:
        raise InputError(f"need m >= 1 and iteration >= 0, got m={m}, iteration={iteration}")
    return (iteration // m) % 2


def toggle_reward(
    reward: float, length: int, budget: int | None, mean_accuracy: float, lam: float, phase: int
) -> float:
    """r~ = r * 1[mean_accuracy < λ or length <= budget] in phase 0, r in phase 1.

    `length` is the whole response length in the report; `budget=None` (no correct rollout when it
    was estimated) enforces nothing.
    """
    if phase not in (BUDGET_PHASE, SCALING_PHASE):
        raise InputError(f"phase must be 0 or 1, got {phase!r}")
    if phase == SCALING_PHASE or budget is None or mean_accuracy < lam or length <= budget:
        return float(reward)
    return 0.0


def estimate_budget(lengths: Sequence[int], correct: Sequence[bool], rho: float) -> int | None:
    """A problem's budget: ceil of the ρ-th percentile of its correct rollouts' lengths (None if none)."""
    if len(lengths) != len(correct):
        raise InputError(f"{len(lengths)} lengths but {len(correct)} correctness flags")
    kept = [n for n, c in zip(lengths, correct, strict=True) if c]
    return percentile_budget(kept, rho) if kept else None


def toggle_group_rewards(
    rewards: Sequence[float], lengths: Sequence[int], budget: int | None, lam: float, iteration: int, m: int
) -> list[float]:
    """Toggle rewards for one problem's K rollouts; the mean accuracy is the group's mean reward
    (binary rewards, as in the report)."""
    if len(rewards) != len(lengths) or not rewards:
        raise InputError(f"need K >= 1 rewards and lengths, got {len(rewards)} and {len(lengths)}")
    mean, phase = sum(rewards) / len(rewards), toggle_phase(iteration, m)
    return [toggle_reward(r, n, budget, mean, lam, phase) for r, n in zip(rewards, lengths, strict=True)]
