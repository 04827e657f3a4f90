"""Generated ids split into thinking and answer: all at once (`split_thinking`) or streamed, from ids
(`ThinkingStream`) or from text (`ThinkingTextSplitter`). One counting rule for usage and budgets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mm_model.generation import TextStream
from mm_model.toggle.tokens import ANSWER, DONE, THINKING, ThinkTokens


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
