"""The marker ids Toggle works with, from the tokenizer, and the names of the stream channels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vision.errors import InputError

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
