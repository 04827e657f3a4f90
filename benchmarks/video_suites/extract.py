"""Multiple-choice answer extraction: a model's raw reply -> an option letter, or None ("unparsed").

Rules, tried in order (the first that decides wins; research/video.md §3 lists the failure modes of
the common extractors that these avoid):
  1. thinking is dropped: `<think>...</think>` blocks, and everything before a lone `</think>`;
  2. the reply is only a letter: "B", "(b)", "B.", "B)";
  3. an answer phrase: "Answer: B", "the answer is b.", "Best option: (B", "correct choice is C";
     a lowercase letter counts only when punctuation or the end follows ("the answer is a red ball"
     is not A);
  4. a leading lettered option: "B. a red ball", "(B) ...", "B: ..." ("D. A book" gives D), or a
     leading "B " followed by option B's own text;
  5. a parenthesized letter anywhere: "I think (C)"; the last one wins;
  6. option text: the reply names exactly one option (the longest when one contains another);
  7. a lone capital letter at the end ("... so C"), or exactly one distinct standalone capital
     option letter anywhere (the articles "A"/"I" before a lowercase word do not count).
Letters outside the sample's options never count. Full-width letters and markdown emphasis are
normalized first. Never a random guess: no rule matching gives None.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: str  # which rule decided ("unparsed" when none did)


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_ANSWER_PHRASE = re.compile(
    r"(?:answer|option|choice)(?:\s+(?:is|would be|should be))?\s*[:：]?\s*(?:option\s*|choice\s*)?"
    r"[(\[]?\s*([A-Za-z])(?![A-Za-z])(\s*[).\]:,;!]?)",
    re.I,
)
_LEADING = re.compile(r"^[(\[]?([A-Z])\s*[.):\]]")
_PAREN = re.compile(r"[(\[]([A-Z])[)\]]")
_TRAILING = re.compile(r"(?:^|[\s:(])([A-Z])[)\].!]?\s*$")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
# "A"/"I" followed by a lowercase word is an article or pronoun, unless that word joins letters.
_ARTICLE = re.compile(r"\s+(?!(?:and|or|nor|but|vs|versus|is|are|was|were|seems|looks|then)\b)[a-z]")


def strip_thinking(text: str) -> str:
    text = _THINK_BLOCK.sub(" ", text)
    if re.search("</think>", text, re.I):
        text = re.split("</think>", text, flags=re.I)[-1]
    if re.match(r"\s*<think>", text, re.I):  # an unfinished thinking block: no answer yet
        return ""
    return text


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # full-width Ｂ -> B
    return text.replace("**", "").replace("__", "").replace("`", "").strip()


def _norm_words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def extract_answer(raw: str, options: Sequence[str]) -> Extraction:
    """The option letter `raw` (a model's reply; thinking included or not) chooses, and the rule used."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
    text = _normalize(strip_thinking(raw or ""))
    if not text:
        return Extraction(None, "unparsed")
    # 2. only a letter
    m = re.fullmatch(r"[(\[]?\s*([A-Za-z])\s*[)\].:]?", text)
    if m and m.group(1).upper() in letters:
        return Extraction(m.group(1).upper(), "letter")
    # 3. answer phrase (the last one, a reply may correct itself)
    found = None
    for m in _ANSWER_PHRASE.finditer(text):
        letter, tail = m.group(1), m.group(2)
        rest = text[m.end() :]
        if letter.islower() and not (tail.strip() or not rest.strip()):
            continue
        if letter.isupper() and not tail.strip() and _ARTICLE.match(rest) and letter in "AI":
            continue  # "the answer is A red ball": an article
        if letter.upper() in letters:
            found = letter.upper()
    if found:
        return Extraction(found, "phrase")
    # 4. leading lettered option
    m = _LEADING.match(text)
    if m and m.group(1) in letters:
        return Extraction(m.group(1), "leading")
    m = re.match(r"([A-Z])\s+(.+)", text, re.S)
    if m and m.group(1) in letters:
        option = _norm_words(options[letters.index(m.group(1))])
        if option and _norm_words(m.group(2)).startswith(option):
            return Extraction(m.group(1), "leading")
    # 5. parenthesized letter
    hits = [h for h in _PAREN.findall(text) if h in letters]
    if hits:
        return Extraction(hits[-1], "parenthesized")
    # 6. option text
    words = f" {_norm_words(text)} "
    named = [(len(o), i) for i, o in enumerate(map(_norm_words, options)) if o and f" {o} " in words]
    if named:
        longest = max(named)[0]
        best = [i for n, i in named if n == longest]
        # a shorter option inside the longest one ("red" in "dark red") does not count against it
        if len(best) == 1:
            return Extraction(letters[best[0]], "option_text")
    # 7. trailing / single standalone capital
    m = _TRAILING.search(text)
    if m and m.group(1) in letters:
        return Extraction(m.group(1), "trailing")
    standalone = {
        s.group(1)
        for s in _STANDALONE.finditer(text)
        if s.group(1) in letters and not (s.group(1) in "AI" and _ARTICLE.match(text[s.end() :]))
    }
    if len(standalone) == 1:
        return Extraction(standalone.pop(), "standalone")
    return Extraction(None, "unparsed")
