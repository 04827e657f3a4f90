"""`budget="auto"`: per task kind, the accuracy and the ρ-th percentile of correct thinking lengths
measured with unlimited thinking; a budget applies only where the accuracy reaches λ."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from vision.errors import InputError

CALIBRATION_FILE = "toggle_calibration.json"


def check_budget(value: Any, name: str) -> int | None:
    """`value` if it is None or an int >= 0 (a token budget), else an `InputError` naming `name`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be None or an int >= 0, got {value!r}")
    return value


def _exact_percentile(values: Sequence[int | float], rho: float) -> Fraction:
    """NumPy's default "linear" percentile: sorted x, h = (n - 1) * rho / 100, x[floor h] + frac(h) *
    (x[floor h + 1] - x[floor h]); in exact fractions so the budget's ceiling never flips on rounding."""
    if not values:
        raise InputError("percentile of an empty list")
    if not 0 <= rho <= 100:
        raise InputError(f"rho must be in [0, 100], got {rho}")
    xs = sorted(Fraction(v) for v in values)
    h = (len(xs) - 1) * Fraction(rho).limit_denominator(10**6) / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def percentile(values: Sequence[int | float], rho: float) -> float:
    """ρ-th percentile (ρ in [0, 100]) by NumPy's default linear method."""
    return float(_exact_percentile(values, rho))


def percentile_budget(values: Sequence[int], rho: float) -> int:
    """Ceiling of the ρ-th percentile: the budget in tokens."""
    return math.ceil(_exact_percentile(values, rho))


@dataclass(frozen=True)
class ScoredRun:
    """One calibration response: `thinking_tokens` as counted by `split_thinking`. `censored` marks
    a run whose thinking was cut (by a budget or max_new_tokens); such runs are rejected."""

    task_kind: str
    correct: bool
    thinking_tokens: int
    censored: bool = False


@dataclass(frozen=True)
class KindStats:
    """Per task kind: runs, correct runs, accuracy, and the budget (ceil of the ρ-th percentile of
    correct thinking lengths; None without a correct run)."""

    n: int
    n_correct: int
    accuracy: float
    budget: int | None


@dataclass(frozen=True)
class Calibration:
    """The record behind `budget="auto"`, saved as `toggle_calibration.json` next to a model.

    `default` pools every run and serves task kinds the record does not know (and `task_kind=None`).
    `lam` is the λ used when a request gives none; `min_correct` (our addition, not in the report)
    keeps a budget from being built on a handful of correct runs.
    """

    rho: float
    lam: float
    min_correct: int
    kinds: dict[str, KindStats]
    default: KindStats
    percentile_method: str = "numpy-linear, ceil"
    model_id: str = ""
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        try:
            if d.get("schema_version", 1) != 1:
                raise InputError(f"unknown calibration schema_version {d['schema_version']}")
            kinds = {k: KindStats(**v) for k, v in d["kinds"].items()}
            rest = {k: v for k, v in d.items() if k not in ("kinds", "default")}
            return cls(kinds=kinds, default=KindStats(**d["default"]), **rest)
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"bad Toggle calibration record: {e}") from None

    def save(self, path: str | Path) -> Path:
        """Write JSON to `path` (a directory gets `toggle_calibration.json`); returns the file."""
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read Toggle calibration {str(path)!r}: {e}") from None


def _stats(runs: Sequence[ScoredRun], rho: float) -> KindStats:
    correct = [r.thinking_tokens for r in runs if r.correct]
    budget = percentile_budget(correct, rho) if correct else None
    return KindStats(len(runs), len(correct), len(correct) / len(runs), budget)


def _as_run(r: ScoredRun | Mapping[str, Any]) -> ScoredRun:
    if isinstance(r, Mapping):
        r = ScoredRun(
            str(r["task_kind"]), bool(r["correct"]), r["thinking_tokens"], bool(r.get("censored", False))
        )
    if isinstance(r.thinking_tokens, bool) or not isinstance(r.thinking_tokens, int) or r.thinking_tokens < 0:
        raise InputError(f"thinking_tokens must be an int >= 0, got {r.thinking_tokens!r}")
    if r.censored:
        raise InputError(
            f"censored run (thinking cut by a budget or max_new_tokens) in kind {r.task_kind!r}: "
            "calibrate on unlimited-thinking runs, or the percentiles are truncated at the old cut"
        )
    return r


def build_calibration(
    runs: Iterable[ScoredRun | Mapping[str, Any]],
    rho: float,
    *,
    lam: float = 0.8,
    min_correct: int = 5,
    model_id: str = "",
) -> Calibration:
    """Per task kind: accuracy and the ρ-th percentile of correct thinking lengths, from scored
    unlimited-thinking runs (dicts with task_kind, correct, thinking_tokens[, censored] work too).
    λ = 0.8 and min_correct = 5 are our defaults; the report gives no values."""
    runs = [_as_run(r) for r in runs]
    if not runs:
        raise InputError("build_calibration needs at least one scored run")
    if not 0 <= rho <= 100 or not 0 <= lam <= 1:
        raise InputError(f"rho must be in [0, 100] and lam in [0, 1], got {rho}, {lam}")
    by_kind: dict[str, list[ScoredRun]] = {}
    for r in runs:
        by_kind.setdefault(r.task_kind, []).append(r)
    kinds = {k: _stats(v, rho) for k, v in sorted(by_kind.items())}
    return Calibration(rho, lam, min_correct, kinds, _stats(runs, rho), model_id=model_id)


def resolve_budget(record: Calibration, task_kind: str | None, lam: float | None = None) -> int | None:
    """The thinking budget for a request: the kind's percentile where its calibrated accuracy >= λ
    (and it has >= min_correct correct runs), else None (unlimited). Unknown kinds and None use the
    pooled `default` entry under the same rule. `lam=None` takes the record's λ."""
    lam = record.lam if lam is None else lam
    stats = record.kinds.get(task_kind, record.default) if task_kind is not None else record.default
    if stats.budget is None or stats.n_correct < record.min_correct or stats.accuracy < lam:
        return None
    return stats.budget


def choose_budget(
    budget: int | str | None,
    *,
    calibration: Calibration | None = None,
    task_kind: str | None = None,
    lam: float | None = None,
) -> int | None:
    """A request's `budget` argument -> an int or None: "auto" goes through `resolve_budget`."""
    if isinstance(budget, str):
        if budget != "auto":
            raise InputError(f'budget must be None, an int >= 0 or "auto", got {budget!r}')
        if calibration is None:
            raise InputError(f'budget="auto" needs a Toggle calibration record ({CALIBRATION_FILE})')
        return resolve_budget(calibration, task_kind, lam)
    return check_budget(budget, "budget")
