"""Prompts as each suite's own evaluation code words them: lettered options, answer with the letter.

Sources (research/video.md §3): Video-MME's official prompt ("... The best answer is:"), MVBench as
lmms-eval asks it ("Question: ... Option: (A) ... Only give the best option."), LongVideoBench's
dataset code ("Answer with the option's letter from the given choices directly."), MLVU as lmms-eval
asks it. The generic format uses LongVideoBench's wording. `PROMPT_VERSION` goes into the results
fingerprint, so a changed prompt never mixes with old results on resume.
"""

from __future__ import annotations

from benchmarks.video_suites.schema import Sample

PROMPT_VERSION = 1


def _letters_list(sample: Sample) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(sample.letters, sample.options))


def _letters_paren(sample: Sample) -> str:
    return "\n".join(f"({letter}) {text}" for letter, text in zip(sample.letters, sample.options))


def _letter_range(sample: Sample) -> str:
    letters = list(sample.letters)
    return ", ".join(letters[:-1]) + f", or {letters[-1]}"


def build_prompt(sample: Sample, subtitles: str | None = None, style: str | None = None) -> str:
    """The user text that follows the video for `sample` (subtitle lines first when given)."""
    style = style or sample.suite
    if style == "videomme":
        head = (
            "Select the best answer to the following multiple-choice question based on the video"
            + (" and the subtitles" if subtitles is not None else "")
            + f". Respond with only the letter ({_letter_range(sample)}) of the correct option."
        )
        body = f"{head}\n{sample.question}\n{_letters_list(sample)}\nThe best answer is:"
    elif style == "mvbench":
        body = f"Question: {sample.question}\nOption:\n{_letters_paren(sample)}\nOnly give the best option."
    elif style == "mlvu":
        body = f"Question: {sample.question}\nOptions:\n{_letters_paren(sample)}\nOnly give the best option."
    else:  # longvideobench, generic, synthetic
        body = (
            f"Question: {sample.question}\n{_letters_list(sample)}\n"
            "Answer with the option's letter from the given choices directly."
        )
    if subtitles is not None:
        body = f"This video's subtitles are listed below:\n{subtitles or 'No subtitles available'}\n{body}"
    return body
