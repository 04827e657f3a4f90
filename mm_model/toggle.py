"""Toggle token budgets: a decoding policy that caps thinking, plus the K2.5 training-side rule.

What the K2.5 report describes (arXiv 2602.02276, §4.4.2 "Token Efficient Reinforcement
Learning", as quoted in shared/research/toggle_yarn.md; the formula was not re-checked against the
PDF here): during RL, iterations alternate every m steps between a budget-limited phase 0, where
a response longer than its problem's budget earns reward 0 (only on problems whose group mean
accuracy is >= λ), and an unlimited scaling phase 1. The budget is the ρ-th percentile of the
lengths of the problem's correct rollouts, estimated once before training.

What this module implements:

* Training side, verbatim: `toggle_phase(t, m) = (t // m) % 2` (t = 0 is phase 0) and
  `toggle_reward(...) = reward * 1[mean_accuracy < λ or length <= budget]` in phase 0, `reward` in
  phase 1; `estimate_budget` and `toggle_group_rewards` for one problem's K rollouts. Choices where
  the report is ambiguous: `length` is what the caller passes (the report means the whole
  response); `mean == λ` is enforced (the formula exempts only `mean < λ`; the prose says
  "exceeds"); no correct rollout means no budget and no enforcement; a negative reward over budget
  becomes 0, as the formula's product does.
* Inference side, a departure (the report's Toggle is a training procedure): `ThinkingBudget` is a
  `generation` logits processor that hard-caps the thinking block. `budget="auto"` is the report's
  phase-0 gate moved to request time: a `Calibration` record holds, per task kind (not per
  problem), the accuracy and the ρ-th percentile of correct thinking lengths measured on a
  calibration set with unlimited thinking; the budget applies only where accuracy >= λ, else
  thinking is unlimited. The budget counts thinking tokens, not the whole response; an optional
  separate answer budget caps the answer. There is no phase alternation at inference.

Counting (the same everywhere: budget, usage, calibration lengths): thinking tokens are the tokens
strictly between `<think>` and `</think>`; neither marker counts, and a thinking-mode prompt ends
with `<think>`, so the first new token is already thinking. Answer tokens follow `</think>` (in
instant mode, all new tokens) up to, not including, the turn-end token. Budget B therefore allows
at most B thinking tokens, then `</think>`; B = 0 gives `<think></think>`, the instant-mode prompt.

Departures from the spec note's decoding proposal (shared/research/toggle_yarn.md §2.4): the ramp
bias is added where processors run, before temperature, so at temperature T it is worth bias / T;
bans on turn ends and markers are opt-in (`strict=True`), so budgeted rows keep the model's own
distribution up to the ramp; each row's start state comes from the `thinking` flag, since a
processor never sees the prompt (`prompt_ends_in_thinking` computes the flag from prompt ids);
no wrap-up text before the forced `</think>` (Kimi was not trained with one).

Percentiles use NumPy's default "linear" method, computed exactly with fractions, and the budget
is its ceiling: correct lengths [10, 20, 30, 40] give p25 17.5 -> 18, p50 25, p75 32.5 -> 33,
p90 37. Marker ids always come from the caller (the tokenizer), never from constants here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mm_model.generation import TextStream
from vision.errors import InputError

CALIBRATION_FILE = "toggle_calibration.json"
BUDGET_PHASE, SCALING_PHASE = 0, 1
THINKING, ANSWER, DONE = "thinking", "answer", "done"


@dataclass(frozen=True)
class ThinkTokens:
    """Marker ids from the tokenizer. `stops` are further ids that end a turn (e.g. `[EOS]`)."""

    think_open: int
    think_close: int
    end: int
    stops: tuple[int, ...] = ()

    @classmethod
    def from_special_tokens(cls, special: Mapping[str, int]) -> ThinkTokens:
        """From a name -> id map holding `<think>`, `</think>`, `<|im_end|>` (and maybe `[EOS]`)."""
        missing = [k for k in ("<think>", "</think>", "<|im_end|>") if k not in special]
        if missing:
            raise InputError(f"tokenizer lacks the special tokens {missing} needed for thinking budgets")
        eos = (special["[EOS]"],) if "[EOS]" in special else ()
        return cls(special["<think>"], special["</think>"], special["<|im_end|>"], eos)

    @property
    def turn_end(self) -> frozenset[int]:
        return frozenset((self.end, *self.stops))


# ---- the decoding policy ----------------------------------------------------------------------


def _per_row(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, (list, tuple)) else None


def _check_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be None or an int >= 0, got {value!r}")
    return value


class ThinkingBudget:
    """Per-request Toggle policy for `generation.generate(..., logits_processors=[policy])`.

    Row modes: instant (`thinking=False`: the prompt ends with `<think></think>`, new tokens are the
    answer), thinking unlimited (`budget=None`) and thinking with budget B (an int, or "auto"
    resolved through `calibration` / `task_kind` / `lam`). `thinking`, `budget` and
    `answer_budget` take one value for every row or a list with one per row.

    A row with no budget of either kind is never touched: its logits come back bit for bit. In
    budget mode, once a row holds `B_eff` thinking tokens without `</think>`, every other logit
    is set to -inf (and `</think>` to 0), so any sampler picks `</think>`; the next token is
    chosen normally. With `ramp` r in (0, 1], the last ceil(r * B_eff) thinking steps add
    `ramp_strength * k / R` (k = 1..R) to the `</think>` logit (in the processor's units, i.e.
    before temperature). With `answer_budget` A, the turn-end token is forced once the answer
    holds A tokens. `strict=True` also bans `<think>` and turn ends while thinking and both markers
    in the answer (budgeted rows only); the default leaves those choices to the model.

    `B_eff = min(B, max_new_tokens - 1 - min_answer_tokens)` when `max_new_tokens` is given, so
    `</think>` and an answer still fit (InputError if that is negative).

    Forcing needs no sampler bypass in `generation.sample`: with one finite logit, argmax, softmax,
    top-k (the k-th value is -inf, nothing is masked) and top-p (the best token is always kept) all
    return it, and the repetition penalty runs before processors. Put this policy last.

    State (the only mutable state; the caller owns one object per request) is rebuilt from
    `generated` as the loop advances; step 0 resets it, so an object may serve one generate call
    at a time. `budgets` holds the resolved per-row budgets; `forced_close[i]` tells whether row
    i's `</think>` was forced (usage's `closed_by`).
    """

    def __init__(
        self,
        tokens: ThinkTokens,
        *,
        thinking: bool | Sequence[bool] = True,
        budget: int | str | Sequence[int | str | None] | None = None,
        answer_budget: int | Sequence[int | None] | None = None,
        ramp: float = 0.0,
        ramp_strength: float = 8.0,
        max_new_tokens: int | None = None,
        min_answer_tokens: int = 1,
        strict: bool = False,
        calibration: Calibration | None = None,
        task_kind: str | None = None,
        lam: float | None = None,
    ) -> None:
        lists = {k: v for k, v in (("thinking", _per_row(thinking)), ("budget", _per_row(budget)),
                                    ("answer_budget", _per_row(answer_budget))) if v is not None}  # fmt: skip
        sizes = {len(v) for v in lists.values()}
        if len(sizes) > 1:
            raise InputError(f"per-row lists differ in length: { {k: len(v) for k, v in lists.items()} }")
        self.batch = sizes.pop() if sizes else None
        n = self.batch or 1
        thinks = lists.get("thinking", [thinking] * n)
        budgets = lists.get("budget", [budget] * n)
        answers = lists.get("answer_budget", [answer_budget] * n)
        if not (0.0 <= ramp <= 1.0) or not (math.isfinite(ramp_strength) and ramp_strength >= 0):
            raise InputError(
                f"ramp must be in [0, 1] and ramp_strength finite >= 0, got {ramp}, {ramp_strength}"
            )
        _check_int(min_answer_tokens, "min_answer_tokens")
        if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or max_new_tokens < 1):
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        self.tokens, self.ramp, self.ramp_strength, self.strict = tokens, ramp, ramp_strength, strict
        self.thinking = [bool(t) for t in thinks]
        self.budgets: list[int | None] = []
        for t, b in zip(self.thinking, budgets, strict=True):
            if b is not None and not t:
                raise InputError(f"budget={b!r} needs thinking=True (instant mode has no thinking block)")
            if isinstance(b, str):
                b = choose_budget(b, calibration=calibration, task_kind=task_kind, lam=lam)
            b = _check_int(b, "budget")
            if b is not None and max_new_tokens is not None:
                room = max_new_tokens - 1 - min_answer_tokens
                if room < 0:
                    raise InputError(
                        f"budget={b} leaves no room for </think> and {min_answer_tokens} answer token(s) "
                        f"within max_new_tokens={max_new_tokens}"
                    )
                b = min(b, room)
            self.budgets.append(b)
        self.answer_budgets = [_check_int(a, "answer_budget") for a in answers]
        self.reset()

    def reset(self) -> None:
        n = len(self.thinking)
        self.phase = [THINKING if t else ANSWER for t in self.thinking]
        self.n_think, self.n_answer = [0] * n, [0] * n
        self.forced_close, self.forced_end = [False] * n, [False] * n
        self._seen = 0

    def _expand(self, b: int) -> None:
        """One value for every row: grow the per-row lists to the batch size on first use."""
        if len(self.thinking) == b:
            return
        if self.batch is not None or len(self.thinking) != 1:
            raise InputError(f"policy built for {len(self.thinking)} rows, the batch has {b}")
        for name in ("thinking", "budgets", "answer_budgets"):
            setattr(self, name, getattr(self, name) * b)
        self.reset()

    def _observe(self, i: int, t: int) -> None:
        if self.phase[i] == THINKING:
            if t == self.tokens.think_close:
                self.phase[i] = ANSWER
            elif t in self.tokens.turn_end:
                self.phase[i] = DONE  # ended without closing the thinking block
            else:
                self.n_think[i] += 1
        elif self.phase[i] == ANSWER:
            if t in self.tokens.turn_end:
                self.phase[i] = DONE
            else:
                self.n_answer[i] += 1

    def __call__(self, step: int, generated: Tensor, logits: Tensor) -> Tensor:
        """generated (B, step) new ids so far, logits (B, V) fp32 -> logits (modified in place)."""
        if step == 0:
            self._expand(logits.shape[0])
            self.reset()
        assert self._seen <= step == generated.shape[1], (self._seen, step, tuple(generated.shape))
        for col in generated[:, self._seen : step].T.tolist():
            for i, t in enumerate(col):
                self._observe(i, t)
        self._seen = step
        force: list[tuple[int, int]] = []  # (row, token) to emit now
        ban: list[tuple[int, int]] = []  # (row, token) to forbid (strict mode)
        ramp: list[tuple[int, float]] = []  # (row, bias on </think>)
        tk = self.tokens
        for i, phase in enumerate(self.phase):
            budget, answer_budget = self.budgets[i], self.answer_budgets[i]
            if phase == THINKING and budget is not None:
                n = self.n_think[i]
                if n >= budget:
                    force.append((i, tk.think_close))
                    self.forced_close[i] = True
                    continue
                if self.strict:
                    ban += [(i, t) for t in (tk.think_open, *tk.turn_end)]
                window = math.ceil(self.ramp * budget)  # R; the ramp covers n_think in [B - R, B)
                if window and n >= budget - window:
                    ramp.append((i, self.ramp_strength * (n - budget + window + 1) / window))
            elif phase == ANSWER and answer_budget is not None:
                if self.n_answer[i] >= answer_budget:
                    force.append((i, tk.end))
                    self.forced_end[i] = True
                elif self.strict:
                    ban += [(i, tk.think_open), (i, tk.think_close)]
            elif phase == ANSWER and budget is not None and self.strict:
                ban += [(i, tk.think_open), (i, tk.think_close)]
        if ban:
            rows, ids = zip(*ban)
            logits[list(rows), list(ids)] = float("-inf")
        if ramp:
            rows, bias = zip(*ramp)
            logits[list(rows), [tk.think_close] * len(rows)] += torch.tensor(
                bias, dtype=logits.dtype, device=logits.device
            )
        if force:
            rows, ids = zip(*force)
            logits[list(rows)] = float("-inf")
            logits[list(rows), list(ids)] = 0.0  # finite even where an earlier processor put -inf
        return logits


def prompt_ends_in_thinking(prompt_ids: Sequence[int], tokens: ThinkTokens) -> bool:
    """Whether a prompt leaves a thinking block open (its last `<think>` comes after its last
    `</think>`): the `thinking` flag for callers who bring their own ids. The policy cannot see the
    prompt (the processor protocol passes only new tokens), so the caller decides from this."""
    ids = [int(t) for t in prompt_ids]
    last_open = max((k for k, t in enumerate(ids) if t == tokens.think_open), default=-1)
    last_close = max((k for k, t in enumerate(ids) if t == tokens.think_close), default=-1)
    return last_open > last_close


# ---- splitting generated ids into thinking and answer -----------------------------------------


@dataclass(frozen=True)
class ThinkingSplit:
    """One row's new ids split at `</think>`; markers and the turn-end token belong to neither."""

    thinking: list[int]
    answer: list[int]
    closed: bool  # `</think>` appeared
    ended: bool  # a turn-end token appeared (ids after it are ignored)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking)

    @property
    def answer_tokens(self) -> int:
        return len(self.answer)


def split_thinking(ids: Iterable[int], tokens: ThinkTokens, *, thinking: bool = True) -> ThinkingSplit:
    """Split one row's new ids (pass them up to the row's length; padding after a stop is ignored
    anyway). `thinking=False` for instant mode: everything is answer."""
    think, answer, closed = [], [], not thinking
    for t in ids:
        t = int(t)
        if t in tokens.turn_end:
            return ThinkingSplit(think, answer, closed and thinking, True)
        if not closed and t == tokens.think_close:
            closed = True
        else:
            (answer if closed else think).append(t)
    return ThinkingSplit(think, answer, closed and thinking, False)


@dataclass(frozen=True)
class ChannelText:
    """A streamed piece of text: `channel` is "thinking" or "answer"."""

    channel: str
    text: str


class ThinkingStream:
    """Token ids in, `ChannelText` events out; markers are not shown, the turn end stops the stream.

    One `generation.TextStream` per channel: a multi-byte character cut by `</think>` is flushed
    into the thinking channel as whatever `decode` makes of the broken bytes (U+FFFD for a
    byte-level tokenizer), never into the answer. Counts match `split_thinking`.
    """

    def __init__(self, tokens: ThinkTokens, decode: Any, *, thinking: bool = True) -> None:
        self.tokens, self.decode = tokens, decode
        self.channel = THINKING if thinking else ANSWER
        self.text = TextStream(decode)
        self.thinking_tokens = self.answer_tokens = 0

    def _flush(self) -> list[ChannelText]:
        tail = self.text.flush()
        return [ChannelText(self.channel, tail)] if tail else []

    def push(self, token_id: int) -> list[ChannelText]:
        t = int(token_id)
        if self.channel == DONE:
            return []
        if t in self.tokens.turn_end:
            out = self._flush()
            self.channel = DONE
            return out
        if self.channel == THINKING and t == self.tokens.think_close:
            out = self._flush()
            self.channel, self.text = ANSWER, TextStream(self.decode)
            return out
        if self.channel == THINKING:
            self.thinking_tokens += 1
        else:
            self.answer_tokens += 1
        piece = self.text.push(t)
        return [ChannelText(self.channel, piece)] if piece else []

    def flush(self) -> list[ChannelText]:
        return [] if self.channel == DONE else self._flush()


class ThinkingTextSplitter:
    """Text pieces in (decoded with special tokens kept), `ChannelText` out: splits at the
    `close_text` marker, holding back a tail that could be the start of it."""

    def __init__(self, close_text: str = "</think>", *, thinking: bool = True) -> None:
        self.close_text, self.channel, self.buffer = close_text, (THINKING if thinking else ANSWER), ""

    def push(self, piece: str) -> list[ChannelText]:
        if self.channel == ANSWER:
            return [ChannelText(ANSWER, piece)] if piece else []
        self.buffer += piece
        at = self.buffer.find(self.close_text)
        if at >= 0:
            before, after = self.buffer[:at], self.buffer[at + len(self.close_text) :]
            self.buffer, self.channel = "", ANSWER
            out = [ChannelText(THINKING, before)] if before else []
            return out + self.push(after)
        hold = next(
            (k for k in range(len(self.close_text) - 1, 0, -1) if self.buffer.endswith(self.close_text[:k])),
            0,
        )
        out, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold :]
        return [ChannelText(THINKING, out)] if out else []

    def flush(self) -> list[ChannelText]:
        out, self.buffer = self.buffer, ""
        return [ChannelText(self.channel, out)] if out else []


# ---- calibration: budget="auto" ---------------------------------------------------------------


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
    return _check_int(budget, "budget")


# ---- training side: the report's rule ---------------------------------------------------------


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
