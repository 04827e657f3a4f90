"""Toggle token budgets: a decoding policy that caps thinking, plus the K2.5 training-side rule.

What the K2.5 report describes (arXiv 2602.02276, §4.4.2 "Token Efficient Reinforcement
Learning", as quoted in shared/research/toggle_yarn.md; the formula was not re-checked against the
PDF here): during RL, iterations alternate every m steps between a budget-limited phase 0, where
a response longer than its problem's budget earns reward 0 (only on problems whose group mean
accuracy is >= λ), and an unlimited scaling phase 1. The budget is the ρ-th percentile of the
lengths of the problem's correct rollouts, estimated once before training.

What this package implements (policy.py, calibration.py, streams.py, rule.py):

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

from mm_model.toggle.calibration import (
    CALIBRATION_FILE,
    Calibration,
    KindStats,
    ScoredRun,
    build_calibration,
    choose_budget,
    percentile,
    percentile_budget,
    resolve_budget,
)
from mm_model.toggle.policy import ThinkingBudget, prompt_ends_in_thinking
from mm_model.toggle.rule import (
    BUDGET_PHASE,
    SCALING_PHASE,
    estimate_budget,
    toggle_group_rewards,
    toggle_phase,
    toggle_reward,
)
from mm_model.toggle.streams import (
    ChannelText,
    ThinkingSplit,
    ThinkingStream,
    ThinkingTextSplitter,
    split_thinking,
)
from mm_model.toggle.tokens import ANSWER, DONE, THINKING, ThinkTokens

__all__ = [
    "ANSWER",
    "BUDGET_PHASE",
    "CALIBRATION_FILE",
    "DONE",
    "SCALING_PHASE",
    "THINKING",
    "Calibration",
    "ChannelText",
    "KindStats",
    "ScoredRun",
    "ThinkTokens",
    "ThinkingBudget",
    "ThinkingSplit",
    "ThinkingStream",
    "ThinkingTextSplitter",
    "build_calibration",
    "choose_budget",
    "estimate_budget",
    "percentile",
    "percentile_budget",
    "prompt_ends_in_thinking",
    "resolve_budget",
    "split_thinking",
    "toggle_group_rewards",
    "toggle_phase",
    "toggle_reward",
]
