"""Answer extraction on a table of tricky replies; the raw reply is never needed to be clean."""

from __future__ import annotations

import pytest

from benchmarks.video_suites.extract import extract_answer, strip_thinking

OPTIONS = ["left to right", "right to left", "dark red", "red"]

CASES = [
    # name, raw reply, expected letter (None = unparsed)
    ("bare_letter", "B", "B"),
    ("lowercase_letter", "b", "B"),
    ("parenthesized_only", "(B)", "B"),
    ("letter_period", "C.", "C"),
    ("fullwidth", "Ｂ", "B"),
    ("markdown_bold", "**C**", "C"),
    ("answer_colon", "Answer: B", "B"),
    ("the_answer_is_lower", "the answer is b.", "B"),
    ("best_option_prefix", "Best option: (D", "D"),
    ("correct_choice_is", "The correct choice is C, because it is dark.", "C"),
    ("self_correction", "The answer is A. Wait, no: the answer is B.", "B"),
    ("lettered_echo", "D. red", "D"),
    ("lettered_echo_article", "A. A square moving right", "A"),
    ("paren_echo", "(C) dark red", "C"),
    ("letter_then_option_text", "B right to left", "B"),
    ("paren_in_sentence", "I think (B) is right here", "B"),
    ("option_text_only", "It moves right to left.", "B"),
    ("longest_option_text", "The square is dark red.", "C"),
    ("article_not_answer", "the answer is a red one", "D"),
    ("article_sentence", "A square moves from left to right", "A"),
    ("trailing_letter", "Looking at the frames, it is D", "D"),
    ("thinking_block", "<think>Maybe A? The square starts on the left... </think>The answer is B", "B"),
    ("thinking_separate_close", "it could be (A) or (C)</think> C", "C"),
    ("unfinished_thinking", "<think>first the square is red, so A", None),
    ("out_of_range_letter", "E", None),
    ("junk", "zzz qqq", None),
    ("empty", "", None),
    ("two_letters_no_cue", "between A and C, hard to say", None),
]


@pytest.mark.parametrize("raw, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_extraction_table(raw, expected):
    assert extract_answer(raw, OPTIONS).letter == expected


def test_unparsed_rule_and_thinking_strip():
    assert extract_answer("???", OPTIONS).rule == "unparsed"
    assert strip_thinking("<think>x</think>y<think>z</think>B").split() == ["y", "B"]
