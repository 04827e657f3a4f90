"""Replies scored exactly as lmms-eval 0.7.3 scores them, for numbers that compare with its tables.

    correct(suite, reply, gold_letter, options) -> True | False | None   (None: out of the denominator)
    judge(...) -> Verdict(prediction, correct, guessed, filtered)        (what `correct` comes down to)

Read from lmms-eval 0.7.3 (`lmms_eval/tasks/{videomme,mvbench,longvideobench,mlvu}/utils.py`,
`tasks/_task_utils/mcq_extract.py`, `api/reasoning.py`, `__main__.py`) and written here anew; the
tests check every verdict against lmms-eval's own functions (tests/benchmarks/lmms_oracle.py).

The pipeline a reply goes through in lmms-eval, reproduced step by step:
  1. reasoning blocks are cut by the CLI's default `--reasoning_tags` (`<think>`/`<analysis>` pairs,
     case-sensitive; a lone closing tag keeps what follows it) and the rest is `.strip()`ped;
  2. per task:
     - Video-MME, MLVU: `extract_mcq_answer(pred, ["A", "B", "C", "D"])`, ranked candidates (leading
       letter > trailing letter > answer phrase > "(X)" > "X." > "X:" > "X)" > "X " > any capital
       anywhere); it reads only capital A-D, so "(d)" or "E" are nothing, never right;
     - MVBench: `mcq_acc` normalises reply and gold alike ("X. ..." -> X, else punctuation rules and
       the first standalone a-e in any case); a reply that is empty after step 1 is left out of the
       accuracy's denominator (`mvbench_aggregate_results`), which `correct` returns as None;
     - LongVideoBench: answer prefixes removed, then the first capital A-E anywhere ("E" counts even
       with 4 options, and is wrong); with none, lmms-eval picks a random option.
Where lmms-eval guesses (LongVideoBench) we draw the guess from a seeded generator keyed by the sample
(`guess_key`), so reruns agree, and flag it `guessed`: lmms-eval keeps a guess in the denominator, so
must we for equal numbers, but the summary counts guesses and gives their expected value apart.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vision.errors import InputError

LMMS_EVAL_VERSION = "0.7.3"
SUITES = ("videomme", "mvbench", "longvideobench", "mlvu")
# lmms-eval's CLI default for --reasoning_tags (lmms_eval/__main__.py).
REASONING_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"), ("<analysis>", "</analysis>"))
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Verdict:
    """How lmms-eval reads one reply.

    Attributes:
        prediction: the letter lmms-eval's parser settled on ("" when it found none; MVBench: its
            normalised reply, which is a letter or whatever text remained).
        correct: True/False, or None when lmms-eval leaves the sample out of the denominator.
        guessed: LongVideoBench only: no letter was found and the prediction is a seeded random guess.
        filtered: the reply after reasoning tags were cut (what lmms-eval's process_results sees).
    """

    prediction: str
    correct: bool | None
    guessed: bool = False
    filtered: str = ""


def strip_reasoning(text: str, tags: Sequence[tuple[str, str]] = REASONING_TAGS) -> str:
    """Cut reasoning blocks the way lmms-eval's `strip_reasoning_tags` does, then strip whitespace."""
    for start_tag, end_tag in tags:
        while True:  # the first start tag pairs with the first end tag after it; repeat until none
            start = text.find(start_tag)
            end = text.find(end_tag, start) if start != -1 else -1
            if start == -1 or end == -1:
                break
            text = text[:start] + text[end + len(end_tag) :]
        if end_tag in text and start_tag not in text:  # a template that pre-fills the opening tag
            text = text.rsplit(end_tag, 1)[-1]
    return text.strip()


# ---- extract_mcq_answer (Video-MME, MLVU) -----------------------------------------------------------

# Higher wins; within one format the later position wins (lmms-eval's _FORMAT_PRIORITY).
_START, _END, _PHRASE, _PARENS, _PERIOD, _COLON, _RPAREN, _SPACE, _ANY = 10, 9, 7, 6, 5, 4, 3, 2, 0
# The phrases in lmms-eval's order; only the first occurrence of each phrase is looked at.
_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)  # fmt: skip


def extract_mcq_answer(response: str, choices: Sequence[str] = "ABCDEFGH") -> str:
    """The choice letter lmms-eval's shared MCQ extractor reads in `response`, or ""."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in ",.!?;:'\"":  # one character at a time, in this order: '"B."' keeps its period
        text = text.strip(char)
    text = f" {text} "
    found: list[tuple[int, int, str]] = []  # (priority, position, letter)
    for ch in choices:
        for pattern, priority in ((f"({ch})", _PARENS), (f"{ch}.", _PERIOD), (f"{ch}:", _COLON),
                                  (f"{ch})", _RPAREN), (f"{ch} ", _SPACE)):  # fmt: skip
            if pattern in text:
                found.append((priority, text.rfind(pattern), ch))
    lower = text.lower()
    for phrase in _PHRASES:
        at = lower.find(phrase)
        if at != -1:
            # every choice letter after the phrase is a candidate, so "is B, not A" reads A
            found += [(_PHRASE, p, ch) for ch in choices if (p := text.find(ch, at + len(phrase))) != -1]
    core = text.strip()
    for ch in choices:
        if core.startswith(ch) and (len(core) == 1 or not core[1].isalpha()):
            found.append((_START, 0, ch))
        if core.endswith(ch) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((_END, len(text) - 1, ch))
    if not found:  # any capital choice letter at all, the last one
        found = [(_ANY, text.rfind(ch), ch) for ch in choices if ch in text]
    return max(found)[2] if found else ""


# ---- mcq_acc (MVBench) ------------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a lookahead for "<=", so any "." not before a digit
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_LETTER_WORD = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def mvbench_normalize(answer: str) -> str:
    """What MVBench's `mcq_acc` compares: a letter A-E, or the reply text it could not reduce to one."""
    m = _OPTION_LINE.match(answer.strip())
    if m:
        return m.group(1).upper()
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    digit_comma = _COMMA_STRIP.search(text) is not None
    out = text
    for p in _PUNCT:  # the test reads the text before any replacement; replacements accumulate
        out = out.replace(p, "" if (p + " " in text or " " + p in text or digit_comma) else " ")
    # sic: re.UNICODE lands in `count`, so at most 32 periods go
    out = _PERIOD_STRIP.sub("", out, re.UNICODE)
    for char in "'\")(":
        out = out.strip(char)
    out = out.strip().lower()
    m = _LETTER_WORD.search(out)
    return m.group(1).upper() if m else out


# ---- LongVideoBench ---------------------------------------------------------------------------------

_LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                 "The best option is", "The correct option is", "Best answer:", "Best option:")  # fmt: skip
_LVB_LETTER = re.compile(r"[ABCDE]")


def lvb_letter(response: str) -> str | None:
    """The first capital A-E after LongVideoBench's answer prefixes are removed; None where it guesses."""
    s = response.strip()
    for prefix in _LVB_PREFIXES:
        s = s.replace(prefix, "")
    m = _LVB_LETTER.search(s)  # (its "> 10 words and no letter" branch also guesses: the same outcome)
    return m.group(0) if m else None


def seeded_guess(choices: Sequence[str], key: str) -> str:
    """A reproducible stand-in for lmms-eval's `random.choice(all_choices)`."""
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return random.Random(seed).choice(list(choices))


# ---- the verdict ------------------------------------------------------------------------------------


def _check(suite: str, reply: object, gold_letter: object, options: Sequence[str]) -> int:
    if suite not in SUITES:
        raise InputError(
            f"suite {suite!r} has no lmms-eval scoring here (expected one of {', '.join(SUITES)})"
        )
    if not isinstance(reply, str):
        raise InputError(f"reply must be a string, got {type(reply).__name__}")
    if isinstance(options, str) or not 2 <= len(options) <= len(LETTERS):
        raise InputError(f"options must be a list of 2..26 option texts, got {options!r}")
    if not isinstance(gold_letter, str) or gold_letter not in LETTERS[: len(options)]:
        raise InputError(
            f"gold_letter must be one of {LETTERS[: len(options)]} for {len(options)} options, got {gold_letter!r}"
        )
    return LETTERS.index(gold_letter)


def judge(
    suite: str, reply: str, gold_letter: str, options: Sequence[str], *, guess_key: str | None = None
) -> Verdict:
    """Score `reply` as lmms-eval 0.7.3's task code does (see the module docstring).

    Args:
        options: the option texts in order (MVBench's gold is the first option equal to the gold one;
            LongVideoBench's choices stop at the first "N/A").
        guess_key: what seeds a LongVideoBench guess (a sample id; default: the reply and options).
    """
    gold = _check(suite, reply, gold_letter, options)
    pred = strip_reasoning(reply)
    if suite in ("videomme", "mlvu"):
        letter = extract_mcq_answer(pred, "ABCD")
        return Verdict(letter, letter.lower() == gold_letter.lower(), filtered=pred)
    if suite == "mvbench":
        # lmms-eval finds the gold letter by the answer's text: the first equal option wins
        gold_letter = LETTERS[list(options).index(options[gold])]
        normalized = mvbench_normalize(pred)
        return Verdict(
            normalized, None if pred == "" else normalized == mvbench_normalize(gold_letter), filtered=pred
        )
    choices = LETTERS[: next((i for i, o in enumerate(options) if o == "N/A"), len(options))]
    letter = lvb_letter(pred)
    if letter is not None:
        return Verdict(letter, letter == gold_letter, filtered=pred)
    guess = seeded_guess(choices, guess_key if guess_key is not None else "\x1f".join([pred, *options]))
    return Verdict(guess, guess == gold_letter, guessed=True, filtered=pred)


def correct(suite: str, reply: str, gold_letter: str, options: Sequence[str]) -> bool | None:
    """Whether lmms-eval 0.7.3 counts `reply` right for this question (None: left out of the denominator).

    LongVideoBench replies with no letter get a seeded guess (lmms-eval guesses at random); `judge`
    says when that happened.
    """
    return judge(suite, reply, gold_letter, options).correct
