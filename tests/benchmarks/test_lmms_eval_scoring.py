"""`benchmarks.video_suites.lmms_eval.correct` against lmms-eval 0.7.3's own task functions.

The oracle: ~30 tricky replies (`lmms_cases.REPLIES`) x 4 gold letters x 4 suites, scored by lmms-eval
0.7.3's process_results after its default `--reasoning_tags` stripping. Why a committed fixture: the
task files import cv2, decord, datasets, torch and transformers at module top, so lmms-eval cannot be
imported in CI; `lmms_oracle` loads the real files with stubs for those imports and records every
verdict in tests/benchmarks/data/lmms_eval_oracle.json (the version and the regenerating command are
in it). `test_fixture_is_what_lmms_eval_computes` reruns the oracle against the source whenever it
is at hand ($LMMS_EVAL_SRC or an installed lmms-eval) and requires the same fixture, so the committed
file cannot drift from lmms-eval's code.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

import mm_model
from benchmarks.video_suites.extract import extract_answer
from benchmarks.video_suites.lmms_eval import (
    LMMS_EVAL_VERSION,
    correct,
    extract_mcq_answer,
    judge,
    mvbench_normalize,
    strip_reasoning,
)
from tests.benchmarks import lmms_cases as cases
from tests.benchmarks import lmms_oracle

FIXTURE = json.loads(lmms_oracle.FIXTURE.read_text())
SUITES = ("videomme", "mvbench", "longvideobench", "mlvu")


def options_for(suite: str) -> list[str]:
    return [*cases.OPTIONS, "N/A"] if suite == "longvideobench" else list(cases.OPTIONS)


def test_fixture_is_lmms_eval_0_7_3():
    assert FIXTURE["lmms_eval_version"] == LMMS_EVAL_VERSION == "0.7.3"
    assert FIXTURE["reasoning_tags"] == [["<think>", "</think>"], ["<analysis>", "</analysis>"]]
    assert {s: len(v) for s, v in FIXTURE["verdicts"].items()} == {s: len(cases.REPLIES) * 4 for s in SUITES}


@pytest.mark.parametrize("suite", SUITES)
def test_every_verdict_agrees_with_lmms_eval(suite):
    """Same verdict (True / False / None = out of the denominator) and the same parsed prediction."""
    wrong = []
    for i, gold, prediction, verdict, guessed in FIXTURE["verdicts"][suite]:
        reply = cases.REPLIES[i]
        v = judge(suite, reply, gold, options_for(suite))
        seen = v.filtered if suite == "mvbench" else v.prediction  # MVBench logs the filtered reply
        if v.guessed != guessed or (not guessed and (v.correct != verdict or seen != prediction)):
            wrong.append((reply, gold, (prediction, verdict, guessed), (seen, v.correct, v.guessed)))
        if not guessed:
            assert correct(suite, reply, gold, options_for(suite)) is v.correct
    assert not wrong, (
        f"{len(wrong)} verdicts differ from lmms-eval {LMMS_EVAL_VERSION} (reply, gold, theirs, ours): {wrong}"
    )


def test_the_corpus_exercises_every_quirk():
    """The corpus is only a test if it reaches the branches where lmms-eval's scorers differ from ours."""
    v = FIXTURE["verdicts"]
    assert any(r[3] is None for r in v["mvbench"]), "an MVBench reply out of the denominator"
    assert any(r[4] for r in v["longvideobench"]), "a LongVideoBench guess"
    assert any(r[2] == "" for r in v["videomme"]), "a Video-MME reply with no A-D letter"
    native = Counter()
    for suite in SUITES:
        for i, gold, _, verdict, _ in v[suite]:
            if verdict is not None:
                native[suite] += (extract_answer(cases.REPLIES[i], cases.OPTIONS).letter == gold) != verdict
    assert all(native[s] > 0 for s in SUITES), f"our native extractor should disagree somewhere: {native}"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("the correct answer is (d)", ""),  # only capital A-D count
        ("The answer is B, not A.", "A"),  # every letter after the phrase is a candidate; the last wins
        ("B, C", "B"),  # a leading letter (priority 10) outranks a trailing one (9)
        ("I cannot tell from the video.", ""),
        ('"B."', "B"),
        ("E", ""),
    ],
    ids=[
        "lowercase_paren",
        "phrase_then_other_letter",
        "two_letters",
        "no_letter",
        "quoted",
        "outside_a_to_d",
    ],
)
def test_extract_mcq_answer_named_cases(reply, expected):
    """Hand-read from mcq_extract.py (lmms-eval 0.7.3); the fixture test covers the rest."""
    assert extract_mcq_answer(reply, "ABCD") == expected


def test_strip_reasoning_matches_lmms_eval_rules():
    assert strip_reasoning("<think>a</think> B ") == "B"
    assert strip_reasoning("x</think>\nD") == "D"  # a pre-filled opening tag: keep what follows
    assert strip_reasoning("<think>unfinished A") == "<think>unfinished A"  # left as is
    assert strip_reasoning("<THINK>A</THINK> C") == "<THINK>A</THINK> C"  # case-sensitive


def test_mvbench_normalization():
    assert mvbench_normalize("B. Took the towel.") == "B"
    assert mvbench_normalize("I think it's a red ball.") == "A"  # the article "a" is a standalone a-e
    assert mvbench_normalize("(c)") == "C"
    assert mvbench_normalize("no idea") == "no idea"


def test_mvbench_empty_reply_leaves_the_denominator_and_duplicate_options_use_the_first():
    assert correct("mvbench", "", "A", ["x", "y"]) is None
    assert correct("mvbench", "<think>only thinking</think>  ", "B", ["x", "y"]) is None
    # lmms-eval finds the gold letter by the answer's text: options A and C are both "up"
    assert correct("mvbench", "A", "C", ["up", "down", "up"]) is True
    assert correct("mvbench", "C", "C", ["up", "down", "up"]) is False


def test_longvideobench_guess_is_seeded_flagged_and_kept_in_the_denominator():
    verdicts = [
        judge("longvideobench", "no idea", g, ["p", "q", "r", "s", "N/A"], guess_key="lvb-7") for g in "ABCD"
    ]
    assert all(v.guessed for v in verdicts)
    assert (
        len({v.prediction for v in verdicts}) == 1 and verdicts[0].prediction in "ABCD"
    )  # never E: "N/A" stops
    assert sum(v.correct for v in verdicts) == 1  # one right gold, like lmms-eval's random pick
    again = judge("longvideobench", "no idea", "A", ["p", "q", "r", "s", "N/A"], guess_key="lvb-7")
    assert again.prediction == verdicts[0].prediction  # reruns agree
    picks = Counter(
        judge("longvideobench", "?", "A", list("pqrs"), guess_key=str(k)).prediction for k in range(400)
    )
    assert set(picks) == set("ABCD") and min(picks.values()) > 60  # spread like random.choice


@pytest.mark.parametrize(
    "args, message",
    [
        (("egoschema", "A", "A", ["x", "y"]), "suite 'egoschema'"),
        (("videomme", None, "A", ["x", "y"]), "reply must be a string"),
        (("videomme", "A", "C", ["x", "y"]), "gold_letter must be one of AB"),
        (("mlvu", "A", "A", "xy"), "options must be a list"),
    ],
    ids=["unknown_suite", "reply_not_text", "gold_outside_options", "options_a_string"],
)
def test_bad_input_is_an_input_error(args, message):
    with pytest.raises(mm_model.InputError, match=message):
        correct(*args)


@pytest.mark.parity
def test_fixture_is_what_lmms_eval_computes():
    """Regenerate the oracle from lmms-eval's source (when present) and require the committed fixture."""
    src = lmms_oracle.find_source()
    if src is None or lmms_oracle.source_version(src) not in (None, lmms_oracle.VERSION):
        pytest.skip(f"lmms-eval {lmms_oracle.VERSION} source not found (set LMMS_EVAL_SRC; see lmms_oracle)")
    assert lmms_oracle.build(src) == FIXTURE
