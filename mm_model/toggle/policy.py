"""`ThinkingBudget`: the `generation` logits processor that caps the thinking block (and optionally the answer)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mm_model.toggle.calibration import Calibration, check_budget, choose_budget
from mm_model.toggle.tokens import ANSWER, DONE, THINKING, ThinkTokens
from vision.errors import InputError


def _per_row(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, (list, tuple)) else None


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
        check_budget(min_answer_tokens, "min_answer_tokens")
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
            b = check_budget(b, "budget")
            if b is not None and max_new_tokens is not None:
                room = max_new_tokens - 1 - min_answer_tokens
                if room < 0:
                    raise InputError(
                        f"budget={b} leaves no room for </think> and {min_answer_tokens} answer token(s) "
                        f"within max_new_tokens={max_new_tokens}"
                    )
                b = min(b, room)
            self.budgets.append(b)
        self.answer_budgets = [check_budget(a, "answer_budget") for a in answers]
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
