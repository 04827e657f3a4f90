"""Toggle: the thinking budget is never exceeded on random tiny models (through the real `generate`
loop, with and without the ramp), the answer follows the forced close, instant and unlimited rows
are untouched bit for bit, splitting and streaming, calibration percentiles and the λ rule on
hand-made data, and the report's training rule as tables."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "lm"))
from lm_helpers import randomize_

from mm_model import InputError
from mm_model.generation import generate
from mm_model.lm import DeepseekV3LM, LMConfig
from mm_model.toggle import (
    Calibration,
    ChannelText,
    KindStats,
    ScoredRun,
    ThinkingBudget,
    ThinkingStream,
    ThinkingTextSplitter,
    ThinkTokens,
    build_calibration,
    choose_budget,
    estimate_budget,
    percentile,
    percentile_budget,
    prompt_ends_in_thinking,
    resolve_budget,
    split_thinking,
    toggle_group_rewards,
    toggle_phase,
    toggle_reward,
)

# Marker ids inside the tiny vocab (256), picked here as the tokenizer would supply them.
TK = ThinkTokens(think_open=250, think_close=251, end=252, stops=(253,))
STOPS = [TK.end, *TK.stops]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models() -> list[DeepseekV3LM]:
    out = []
    for seed in (0, 1):
        m = DeepseekV3LM(LMConfig.tiny()).eval()
        randomize_(m, seed=seed)
        out.append(m)
    return out


class Adversary:
    """Runs before the policy: pushes the markers so the model would never close thinking (and,
    with `end_bias`, never end or always end), or closes by itself at step `close_at[row]`."""

    def __init__(self, close_bias=-1e4, end_bias=-1e4, close_at=None):
        self.close_bias, self.end_bias, self.close_at = close_bias, end_bias, close_at

    def __call__(self, step, generated, logits):
        logits[:, TK.think_close] += self.close_bias
        logits[:, TK.end] += self.end_bias
        logits[:, TK.stops[0]] = float("-inf")
        for row, k in enumerate(self.close_at or ()):
            if k == step and TK.think_close not in generated[row].tolist():
                logits[row] = float("-inf")
                logits[row, TK.think_close] = 0.0
        return logits


class Spy:
    def __init__(self):
        self.seen = []

    def __call__(self, step, generated, logits):
        self.seen.append(logits.clone())
        return logits


def _prompts(rng, b):
    return [[rng.randrange(3, 240) for _ in range(rng.randrange(3, 9))] for _ in range(b)]


def _row(result, i):
    return result.tokens[i, : result.lengths[i]].tolist()


# ---- the budget holds --------------------------------------------------------------------------


@pytest.mark.parametrize("ramp", [0.0, 0.4, 1.0], ids=["no_ramp", "ramp_40pct", "ramp_all"])
def test_budget_never_exceeded_random_models_and_budgets(models, ramp):
    rng = random.Random(int(ramp * 10))
    for case in range(6):
        model = models[case % 2]
        budgets = [rng.randrange(0, 25) for _ in range(2)]
        # Row 0 never closes by itself; row 1 "closes by itself" at a random step, before or after its budget.
        close_at = [None, rng.randrange(0, 30)]
        temperature = (0.0, 1.0)[case % 2]
        new = max(budgets) + 6
        prompts = _prompts(rng, 2)
        prompts[1] = prompts[1][: len(prompts[0])] + [7] * (len(prompts[0]) - len(prompts[1]))
        policy = ThinkingBudget(TK, budget=budgets, ramp=ramp, max_new_tokens=new)
        adversary = Adversary(close_at=close_at)
        got = generate(model, prompts, max_new_tokens=new, temperature=temperature, top_p=0.9, seed=case,
                       stop_token_ids=STOPS, logits_processors=[adversary, policy])  # fmt: skip
        for i, b in enumerate(budgets):
            ids = _row(got, i)
            split = split_thinking(ids, TK)
            assert split.closed, (case, i, ids)
            assert split.thinking_tokens <= b, f"budget {b} exceeded: {split.thinking_tokens} thinking tokens"
            natural = close_at[i] is not None and close_at[i] < b
            assert ids.index(TK.think_close) == (close_at[i] if natural else b), (case, i, b, ids)
            assert policy.forced_close[i] == (not natural)
            assert split.answer_tokens >= 1, "no answer after the close"
            assert TK.think_close not in split.answer
        # The same run without the policy blows through the budget: the adversary has teeth.
        free = generate(model, prompts[:1], max_new_tokens=new, temperature=temperature, top_p=0.9, seed=case,
                        stop_token_ids=STOPS, logits_processors=[Adversary()])  # fmt: skip
        assert split_thinking(_row(free, 0), TK).thinking_tokens > budgets[0]


def test_forced_close_beats_samplers_and_a_minus_inf_close(models):
    """An earlier processor set `</think>` to -inf and top_p is tiny: the force still lands at B."""
    model = models[0]
    for budget in (0, 3, 11):
        adversary = Adversary(close_bias=float("-inf"), end_bias=50.0)
        policy = ThinkingBudget(TK, budget=budget, strict=True)
        got = generate(model, [[5, 6, 7]], max_new_tokens=budget + 4, temperature=1.5, top_p=0.01, top_k=3,
                       seed=budget, stop_token_ids=STOPS, logits_processors=[adversary, policy])  # fmt: skip
        ids = _row(got, 0)
        # strict: the end token (+50) is banned while thinking; after the close the model ends at once.
        assert ids == [*ids[:budget], TK.think_close, TK.end] and TK.end not in ids[:budget], ids


def test_answer_follows_forced_close_and_is_generated_normally(models):
    model = models[1]
    prompt = [9, 81, 4, 33, 120]
    for budget in (0, 5, 13):
        spy_in, spy_out = Spy(), Spy()
        policy = ThinkingBudget(TK, budget=budget)
        got = generate(model, [prompt], max_new_tokens=budget + 8, stop_token_ids=STOPS,
                       logits_processors=[Adversary(), spy_in, policy, spy_out])  # fmt: skip
        ids = _row(got, 0)
        assert ids[budget] == TK.think_close and TK.think_close not in ids[:budget]
        for step, (a, b) in enumerate(zip(spy_in.seen, spy_out.seen)):
            if step != budget:  # only the forced step is touched (no ramp, no answer budget)
                assert torch.equal(a, b), f"budget {budget}: logits changed at step {step}"
        # The answer equals what the model writes from prompt + thinking + </think> with no policy.
        cont = generate(model, [prompt + ids[: budget + 1]], max_new_tokens=len(ids) - budget - 1,
                        stop_token_ids=STOPS, logits_processors=[Adversary()])  # fmt: skip
        assert _row(cont, 0) == ids[budget + 1 :]


def test_answer_budget_forces_the_end_token(models):
    for budget, answer_budget in [(0, 0), (4, 3), (9, 1), (2, 10)]:
        policy = ThinkingBudget(TK, budget=budget, answer_budget=answer_budget)
        got = generate(models[0], [[11, 12, 13]], max_new_tokens=40, stop_token_ids=STOPS,
                       logits_processors=[Adversary(), policy])  # fmt: skip
        ids = _row(got, 0)
        assert got.finish_reasons == ["stop_token"]
        assert ids == [*ids[:budget], TK.think_close, *ids[budget + 1 : -1], TK.end]
        split = split_thinking(ids, TK)
        assert (split.thinking_tokens, split.answer_tokens) == (budget, answer_budget)
        assert policy.forced_close == [True] and policy.forced_end == [True]


def test_ramp_bias_shape_and_nothing_else_changes():
    policy = ThinkingBudget(TK, budget=10, ramp=0.5, ramp_strength=8.0)
    biases = []
    for step in range(11):
        logits = torch.randn(1, 256)
        before = logits.clone()
        out = policy(step, torch.full((1, step), 7), logits)
        if step < 10:
            others = torch.ones(256, dtype=torch.bool)
            others[TK.think_close] = False
            assert torch.equal(out[0, others], before[0, others])
            biases.append(float(out[0, TK.think_close] - before[0, TK.think_close]))
        else:
            assert out[0].argmax() == TK.think_close and torch.isinf(out[0]).sum() == 255
    assert biases[:5] == [0.0] * 5
    assert biases[5:] == pytest.approx([1.6, 3.2, 4.8, 6.4, 8.0], abs=1e-5)


def test_row_that_closed_is_untouched_by_thinking_budget():
    """After `</think>` the row is an answer row: no force and no ramp, whatever its count."""
    policy = ThinkingBudget(TK, budget=3, ramp=1.0)
    gen = torch.tensor([[5, TK.think_close, 6, 7, 8, 9, 10]])
    for step in range(8):
        logits = torch.randn(1, 256)
        before = logits.clone()
        out = policy(step, gen[:, :step], logits)
        assert torch.equal(out, before) == (step >= 2), step  # steps 0-1 are in the ramp window


def test_strict_bans_turn_ends_while_thinking_and_markers_in_the_answer():
    policy = ThinkingBudget(TK, budget=2, strict=True)
    gen = torch.tensor([[5, 6, TK.think_close, 7]])
    for step, banned in enumerate([{250, 252, 253}, {250, 252, 253}, None, {250, 251}]):
        logits = torch.randn(1, 256)
        before = logits.clone()
        out = policy(step, gen[:, :step], logits)
        if banned is None:  # step 2: the forced close
            continue
        changed = set((out != before).nonzero()[:, 1].tolist())
        assert changed == banned and torch.isinf(out[0, list(banned)]).all(), (step, changed)


@pytest.mark.parametrize(
    "prompt, want",
    [
        ([1, 250], True),
        ([1, 250, 251], False),
        ([1, 2], False),
        ([250, 251, 7, 250, 9], True),
        ([251, 250, 251], False),
    ],
    ids=["thinking_prompt", "instant_prompt", "no_markers", "history_then_open", "closed_last"],
)
def test_prompt_ends_in_thinking(prompt, want):
    assert prompt_ends_in_thinking(prompt, TK) is want


# ---- untouched modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("thinking", [False, True], ids=["instant", "unlimited"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_instant_and_unlimited_are_bit_exact(models, thinking, temperature):
    rng = random.Random(7)
    prompts = [p[:4] for p in _prompts(rng, 2)]
    kw = dict(max_new_tokens=24, temperature=temperature, seed=3, stop_token_ids=STOPS)
    spy_in, spy_out = Spy(), Spy()
    with_policy = generate(models[0], prompts, **kw,
                           logits_processors=[spy_in, ThinkingBudget(TK, thinking=thinking), spy_out])  # fmt: skip
    without = generate(models[0], prompts, **kw)
    assert torch.equal(with_policy.tokens, without.tokens)
    assert len(spy_in.seen) == 24 and all(torch.equal(a, b) for a, b in zip(spy_in.seen, spy_out.seen))
    # Control: the same spies see a budget policy change the logits (the check above can fail).
    spy_in, spy_out = Spy(), Spy()
    generate(models[0], prompts, **kw, logits_processors=[spy_in, ThinkingBudget(TK, budget=0), spy_out])
    assert not torch.equal(spy_in.seen[0], spy_out.seen[0])


def test_batch_mixing_modes_keeps_rows_independent(models):
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]
    policy = ThinkingBudget(TK, thinking=[False, True, True, True], budget=[None, None, 0, 7])
    kw = dict(max_new_tokens=14, stop_token_ids=STOPS)
    got = generate(models[1], prompts, **kw, logits_processors=[Adversary(), policy])
    free = generate(models[1], prompts, **kw, logits_processors=[Adversary()])
    assert torch.equal(got.tokens[:2], free.tokens[:2])  # instant and unlimited rows untouched
    assert got.tokens[2, 0] == TK.think_close and got.tokens[3, 7] == TK.think_close
    assert TK.think_close not in got.tokens[3, :7].tolist()
    assert policy.forced_close == [False, False, True, True]


def test_auto_budget_through_the_policy():
    cal = build_calibration(
        [ScoredRun("math", True, n) for n in (10, 20, 30, 40)], rho=50, lam=0.5, min_correct=1
    )
    assert ThinkingBudget(TK, budget="auto", calibration=cal, task_kind="math").budgets == [25]
    assert ThinkingBudget(TK, budget="auto", calibration=cal, task_kind="math", lam=1.01).budgets == [None]


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(budget=-1), "budget"),
        (dict(budget=2.5), "budget"),
        (dict(budget=True), "budget"),
        (dict(budget="short"), "budget"),
        (dict(budget="auto"), "calibration"),
        (dict(thinking=False, budget=5), "thinking=True"),
        (dict(budget=4, max_new_tokens=1), "max_new_tokens"),
        (dict(answer_budget=-2), "answer_budget"),
        (dict(ramp=1.5), "ramp"),
        (dict(budget=[1, 2], thinking=[True]), "per-row"),
    ],
    ids=["negative", "float", "bool", "unknown_string", "auto_without_record", "budget_in_instant",
         "no_room_for_answer", "negative_answer_budget", "ramp_above_one", "row_lists_disagree"],
)  # fmt: skip
def test_bad_requests_raise_input_error(kwargs, names):
    with pytest.raises(InputError, match=names):
        ThinkingBudget(TK, **kwargs)


def test_budget_clamped_to_leave_room_for_an_answer():
    assert ThinkingBudget(TK, budget=100, max_new_tokens=10).budgets == [8]
    assert ThinkingBudget(TK, budget=100, max_new_tokens=10, min_answer_tokens=4).budgets == [5]
    assert ThinkingBudget(TK, budget=3, max_new_tokens=10).budgets == [3]


def test_policy_for_one_row_refuses_a_batch_of_another_size():
    policy = ThinkingBudget(TK, budget=[1, 2])
    with pytest.raises(InputError, match="2 rows"):
        policy(0, torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 256))


# ---- splitting and streaming -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, thinking, want",
    [
        ([1, 2, 251, 3, 252, 0, 0], True, ([1, 2], [3], True, True)),
        ([251, 3, 4], True, ([], [3, 4], True, False)),
        ([1, 2, 3], True, ([1, 2, 3], [], False, False)),
        ([1, 253], True, ([1], [], False, True)),
        ([1, 251, 2, 251, 3], True, ([1], [2, 251, 3], True, False)),
        ([1, 2, 252], False, ([], [1, 2], False, True)),
    ],
    ids=["closed_and_ended", "budget_zero", "cut_by_length", "eos_in_thinking", "second_close_is_answer",
         "instant"],
)  # fmt: skip
def test_split_thinking(ids, thinking, want):
    s = split_thinking(ids, TK, thinking=thinking)
    assert (s.thinking, s.answer, s.closed, s.ended) == want
    assert (s.thinking_tokens, s.answer_tokens) == (len(want[0]), len(want[1]))


# A byte-level toy tokenizer: ids < 128 are ASCII, 200-202 are the three bytes of "€".
_BYTES = {i: bytes([i]) for i in range(128)} | {200: b"\xe2", 201: b"\x82", 202: b"\xac"}


def _decode(ids):
    return b"".join(_BYTES[i] for i in ids).decode("utf-8", errors="replace")


def _stream(ids, **kw):
    s = ThinkingStream(TK, _decode, **kw)
    events = [e for t in ids for e in s.push(t)] + s.flush()
    text = {"thinking": "", "answer": ""}
    for e in events:
        text[e.channel] += e.text
    return s, events, text


def test_stream_channels_match_split_and_hide_markers():
    ids = [72, 105, 200, 201, 202, 33, TK.think_close, 79, 75, TK.end, 88]
    s, events, text = _stream(ids)
    split = split_thinking(ids, TK)
    assert text == {"thinking": _decode(split.thinking), "answer": _decode(split.answer)}
    assert text == {"thinking": "Hi€!", "answer": "OK"}
    assert (s.thinking_tokens, s.answer_tokens) == (split.thinking_tokens, split.answer_tokens)
    assert [e.channel for e in events] == sorted((e.channel for e in events), reverse=True)  # thinking first


def test_stream_close_cutting_a_character_flushes_replacement_into_thinking():
    _, _, text = _stream([72, 200, 201, TK.think_close, 65])
    assert text == {"thinking": "H\ufffd", "answer": "A"}
    _, _, instant = _stream([65, 66], thinking=False)
    assert instant == {"thinking": "", "answer": "AB"}


@pytest.mark.parametrize(
    "pieces, want",
    [
        (["Hel", "lo</th", "ink>Ans", "wer"], ("Hello", "Answer")),
        (["a</", "b", "</think>"], ("a</b", "")),
        (["</think>x"], ("", "x")),
        (["thought <", "/"], ("thought </", "")),
    ],
    ids=["marker_split_across_pieces", "false_start", "marker_first", "held_tail_flushed"],
)
def test_text_splitter(pieces, want):
    sp = ThinkingTextSplitter()
    events = [e for p in pieces for e in sp.push(p)] + sp.flush()
    got = ("".join(e.text for e in events if e.channel == "thinking"),
           "".join(e.text for e in events if e.channel == "answer"))  # fmt: skip
    assert got == want
    assert all(isinstance(e, ChannelText) and e.text for e in events)


# ---- calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize("rho, exact, budget", [(0, 10, 10), (25, 17.5, 18), (50, 25, 25), (75, 32.5, 33),
                                                (90, 37, 37), (100, 40, 40)])  # fmt: skip
def test_percentiles_on_hand_made_lengths(rho, exact, budget):
    assert percentile([40, 10, 30, 20], rho) == exact
    assert percentile_budget([40, 10, 30, 20], rho) == budget


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    rng = random.Random(0)
    for _ in range(200):
        xs = [rng.randrange(0, 5000) for _ in range(rng.randrange(1, 40))]
        rho = rng.choice([rng.uniform(0, 100), rng.randrange(0, 101)])
        assert percentile(xs, rho) == pytest.approx(float(np.percentile(xs, rho)), rel=1e-9, abs=1e-9)
    # Exact arithmetic: a ceiling that float rounding could push up by one stays put.
    assert percentile_budget([0, 100], 29) == 29 and percentile_budget([0, 10, 20], 70) == 14


def _runs(kind, correct_lengths, wrong_lengths=()):
    return [ScoredRun(kind, True, n) for n in correct_lengths] + [
        ScoredRun(kind, False, n) for n in wrong_lengths
    ]


@pytest.mark.parametrize(
    "n_correct, n_wrong, lam, enforced",
    [(8, 2, 0.7, True), (6, 4, 0.7, False), (7, 3, 0.7, True), (7, 3, 0.71, False), (10, 0, 1.0, True)],
    ids=["acc_0.8_enforced", "acc_0.6_unlimited", "acc_equal_lambda_enforced", "just_below", "perfect"],
)
def test_lambda_rule(n_correct, n_wrong, lam, enforced):
    correct = [10 * (k + 1) for k in range(n_correct)]
    cal = build_calibration(_runs("k", correct, [500] * n_wrong), rho=90, lam=0.5, min_correct=1)
    assert cal.kinds["k"].accuracy == n_correct / (n_correct + n_wrong)
    assert cal.kinds["k"].budget == percentile_budget(correct, 90)
    assert resolve_budget(cal, "k", lam) == (cal.kinds["k"].budget if enforced else None)


def test_calibration_record_by_kind():
    runs = (
        _runs("math", [10, 20, 30, 40], [99]) + _runs("video", [100, 300], [5, 6, 7]) + _runs("ocr", [], [3])
    )
    cal = build_calibration(runs, rho=75, lam=0.7, min_correct=2)
    assert cal.kinds["math"] == KindStats(n=5, n_correct=4, accuracy=0.8, budget=33)
    assert cal.kinds["video"] == KindStats(n=5, n_correct=2, accuracy=0.4, budget=250)
    assert cal.kinds["ocr"] == KindStats(n=1, n_correct=0, accuracy=0.0, budget=None)
    assert cal.default == KindStats(
        n=11, n_correct=6, accuracy=6 / 11, budget=percentile_budget([10, 20, 30, 40, 100, 300], 75)
    )
    assert resolve_budget(cal, "math") == 33  # record's λ 0.7 <= 0.8
    assert resolve_budget(cal, "video") is None  # 0.4 < λ: unlimited, as the report's phase-0 gate
    assert resolve_budget(cal, "ocr", lam=0.0) is None  # no correct run: no budget
    assert resolve_budget(cal, "unknown") is None and resolve_budget(cal, None) is None  # pooled 0.55 < 0.7
    assert resolve_budget(cal, "unknown", lam=0.5) == cal.default.budget == 85
    strict = build_calibration(runs, rho=75, lam=0.7, min_correct=5)
    assert resolve_budget(strict, "math") is None  # 4 correct runs < min_correct


def test_calibration_json_round_trip_and_file_name(tmp_path):
    qa = {"task_kind": "qa", "correct": True, "thinking_tokens": 12}  # a JSON-lines record works too
    cal = build_calibration([*_runs("math", [10, 20, 30, 40], [7]), qa], rho=90, lam=0.75, min_correct=1,
                            model_id="tiny@abc")  # fmt: skip
    path = cal.save(tmp_path)
    assert path.name == "toggle_calibration.json"
    assert Calibration.load(tmp_path) == cal and Calibration.load(path) == cal
    assert json.loads(path.read_text())["kinds"]["qa"] == {
        "n": 1,
        "n_correct": 1,
        "accuracy": 1.0,
        "budget": 12,
    }
    assert choose_budget("auto", calibration=Calibration.load(tmp_path), task_kind="qa") == 12


@pytest.mark.parametrize(
    "runs, match",
    [
        ([ScoredRun("k", True, 10, censored=True)], "censored"),
        ([{"task_kind": "k", "correct": True, "thinking_tokens": -1}], "thinking_tokens"),
        ([], "at least one"),
    ],
    ids=["censored_run", "negative_length", "empty"],
)
def test_build_calibration_rejects(runs, match):
    with pytest.raises(InputError, match=match):
        build_calibration(runs, rho=90)


def test_calibration_load_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        Calibration.load(tmp_path)
    (tmp_path / "toggle_calibration.json").write_text('{"rho": 90}')
    with pytest.raises(InputError, match="bad Toggle calibration"):
        Calibration.load(tmp_path)


# ---- training side -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reward, length, budget, acc, lam, phase, want",
    [
        (1.0, 50, 40, 0.9, 0.8, 1, 1.0),
        (1.0, 50, 40, 0.5, 0.8, 0, 1.0),
        (1.0, 50, 40, 0.9, 0.8, 0, 0.0),
        (1.0, 50, 40, 0.8, 0.8, 0, 0.0),
        (1.0, 40, 40, 0.9, 0.8, 0, 1.0),
        (1.0, 10, 40, 0.9, 0.8, 0, 1.0),
        (0.0, 50, 40, 0.9, 0.8, 0, 0.0),
        (1.0, 50, None, 0.9, 0.8, 0, 1.0),
        (0.5, 50, 40, 0.9, 0.8, 0, 0.0),
    ],
    ids=["scaling_phase_passes", "below_lambda_passes", "over_budget_zeroed", "at_lambda_enforced",
         "length_equal_budget_kept", "under_budget_kept", "wrong_stays_zero", "no_budget_passes",
         "partial_reward_zeroed"],
)  # fmt: skip
def test_toggle_reward_table(reward, length, budget, acc, lam, phase, want):
    assert toggle_reward(reward, length, budget, acc, lam, phase) == want


@pytest.mark.parametrize("m, want", [(1, [0, 1, 0, 1, 0, 1, 0]), (2, [0, 0, 1, 1, 0, 0, 1]),
                                     (3, [0, 0, 0, 1, 1, 1, 0])])  # fmt: skip
def test_toggle_phase_schedule(m, want):
    assert [toggle_phase(t, m) for t in range(7)] == want


def test_group_rewards_and_budget_estimate():
    lengths, rewards = [10, 20, 30, 40, 90], [1.0, 1.0, 1.0, 1.0, 0.0]
    budget = estimate_budget(lengths, [r == 1 for r in rewards], rho=50)
    assert budget == 25
    # mean 0.8 >= 0.8: phase 0 (iteration 0) zeroes the correct over-budget rollouts; phase 1 keeps them.
    assert toggle_group_rewards(rewards, lengths, budget, 0.8, iteration=0, m=2) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert toggle_group_rewards(rewards, lengths, budget, 0.8, iteration=2, m=2) == rewards
    assert toggle_group_rewards(rewards, lengths, budget, 0.81, iteration=0, m=2) == rewards
    assert estimate_budget([5, 6], [False, False], rho=50) is None


@pytest.mark.parametrize(
    "call",
    [lambda: toggle_phase(0, 0), lambda: toggle_phase(-1, 2), lambda: toggle_reward(1, 1, 1, 1, 1, 2),
     lambda: estimate_budget([1], [True, False], 50), lambda: percentile([], 50), lambda: percentile([1], 101)],
    ids=["m_zero", "negative_iteration", "bad_phase", "length_mismatch", "empty", "rho_out_of_range"],
)  # fmt: skip
def test_training_side_bad_input(call):
    with pytest.raises(InputError):
        call()


def test_think_tokens_from_the_tokenizer_map():
    special = {"<think>": 10, "</think>": 11, "<|im_end|>": 12, "[EOS]": 13, "<|im_user|>": 14}
    assert ThinkTokens.from_special_tokens(special) == ThinkTokens(10, 11, 12, (13,))
    with pytest.raises(InputError, match="</think>"):
        ThinkTokens.from_special_tokens({"<think>": 1, "<|im_end|>": 2})


def test_toggle_curve_plumbing_with_a_scripted_answerer():
    """benchmarks/toggle_curve: budgets come from the calib split's correct lengths per kind, auto
    follows the λ rule, and the metrics are computed against the unlimited row."""
    from benchmarks.toggle_curve import Task, run_curve

    need = {f"t{i}": 10 * (i % 4 + 1) for i in range(16)}  # thinking a task needs to be answered right
    kinds = {f"t{i}": ("easy" if i % 2 else "hard") for i in range(16)}
    tasks = [Task(t, kinds[t], "", "") for t in need]

    def answer(task, budget, thinking):
        n = 0 if not thinking else need[task.task_id] if budget is None else min(budget, need[task.task_id])
        return n >= need[task.task_id] and (task.kind == "easy" or task.task_id != "t0"), n

    rows, info = run_curve(answer, tasks[:8], tasks[8:], lam=0.9, auto_rho=50, min_correct=1)
    by = {r["mode"]: r for r in rows}
    assert list(by) == ["none", "p90", "p75", "p50", "p25", "auto", "instant"]
    assert by["none"]["accuracy"] == 1.0 and by["instant"]["accuracy"] == 0.0
    # calib: easy t1, t3, t5, t7 need 20, 40, 20, 40; hard t0 (wrong), t2, t4, t6 need 30, 10, 30.
    assert (
        info["calibration"]["kinds"]["easy"]["budget"] == 30
        and info["calibration"]["kinds"]["hard"]["accuracy"] == 0.75
    )
    assert info["per_task"]["p90"] == [30, 40] * 4  # eval t8..t15: hard, easy, hard, ...
    assert info["per_task"]["auto"] == [None, 30, None, 30, None, 30, None, 30]  # hard 0.75 < λ 0.9
    assert by["p50"]["mean_thinking"] < by["none"]["mean_thinking"]
    assert by["auto"]["token_reduction"] == pytest.approx(
        1 - by["auto"]["mean_thinking"] / by["none"]["mean_thinking"]
    )
    # per kind: auto keeps hard unlimited (all right) and budgets easy at 30, where t9/t13 need 40
    assert by["auto"]["per_kind"] == {"hard": 1.0, "easy": 0.5} and by["instant"]["per_kind"]["easy"] == 0.0
    from benchmarks.toggle_curve import per_kind_rows

    kinds_of = {r["kind"]: r for r in per_kind_rows([{"model": "m", **r} for r in rows])}
    assert kinds_of["easy"]["auto"] == 0.5 and kinds_of["hard"]["thinking_minus_instant"] == 1.0
