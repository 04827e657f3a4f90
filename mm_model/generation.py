"""Prefill + decode loop around the static latent cache: sampling, stops, streaming text.

The loop calls three small functions (`prefill`, `decode_one_token`, `sample`) so a compiled or
otherwise faster decode step can replace one of them without touching the rest.

Logits processors (the Toggle budget policy plugs in here) are callables
`processor(step, generated, logits) -> logits` where `step` is the index of the token being chosen
(0 for the first new token), `generated` the new tokens so far, (B, step) long (finished rows hold
`pad_token_id`), and `logits` the next-token scores, (B, V) fp32, after the repetition penalty and
before temperature / top-k / top-p. Return a (B, V) tensor (in place is fine); -inf forbids a token.

Batches of prompts of different lengths: pass a list of token-id lists (they are left-padded) or
a left-padded tensor plus `attention_mask`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mm_model.lm.cache import LatentCache, left_padding
from mm_model.lm.model import DeepseekV3LM
from vision.errors import InputError

LogitsProcessor = Callable[[int, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class GenerationResult:
    """tokens: (B, N) new ids, `pad_token_id` after a row finished; lengths: new tokens per row
    (including the stop token); finish_reasons: "stop_token", "stop_string" or "length" per row."""

    tokens: Tensor
    lengths: list[int]
    finish_reasons: list[str]


# ---- the three steps ---------------------------------------------------------------------------


def prefill(
    model: DeepseekV3LM,
    input_ids: Tensor | None,
    cache: LatentCache,
    *,
    attention_mask: Tensor | None = None,
    inputs_embeds: Tensor | None = None,
) -> Tensor:
    """Run the prompt (B, S) into an empty cache; returns the last position's logits (B, V) fp32."""
    logits = model(
        input_ids, inputs_embeds=inputs_embeds, cache=cache, attention_mask=attention_mask, last_only=True
    )
    return logits[:, -1].float()


def decode_one_token(model: DeepseekV3LM, tokens: Tensor, cache: LatentCache, input_pos: Tensor) -> Tensor:
    """One decode step: tokens (B,) at slot input_pos (1,) -> next-token logits (B, V) fp32.

    Runs the model's static-shape `decode_step` when it has one (`lm.compiled`), else `forward`;
    input_pos must then be the slot right after the cache's contents, as in the generation loop."""
    if model.decode_step is not None:
        return model.decode_step(tokens, cache, input_pos)
    return model(tokens[:, None], cache=cache, input_pos=input_pos)[:, -1].float()


def sample(
    logits: Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row from logits (B, V): argmax at temperature 0, else sampled. Returns (B,)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p (the best one always stays).
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter_(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL-style penalty on tokens already seen (prompt or generated): positive scores divided by it,
    negative multiplied. logits (B, V) fp32, seen (B, V) bool."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


# ---- streaming text ----------------------------------------------------------------------------


class TextStream:
    """Turns token ids into printable text pieces with a `decode(ids) -> str` callable.

    A piece is held back while the decoded tail ends in U+FFFD (an incomplete multi-byte character
    split across tokens) and released once the character completes. Only a short window of ids is
    re-decoded per token (offsets as in text-generation-inference).
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the window re-decoded for context
        self.read_offset = 0  # ids before this are already emitted

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly "")."""
        self.ids.append(token_id)
        prefix = self.decode(self.ids[self.prefix_offset : self.read_offset])
        text = self.decode(self.ids[self.prefix_offset :])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        prefix = self.decode(self.ids[self.prefix_offset : self.read_offset])
        text = self.decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return text[len(prefix) :]


class ForcedTokens:
    """A logits processor that makes every row emit `ids` in order, starting right after the row emits
    `after` (or at the first step when `after` is None); the rows choose freely before and after.

    Used to start an answer with a fixed text (tool_choice "required" or a named function).
    """

    def __init__(self, ids: Sequence[int], after: int | None = None) -> None:
        if not ids:
            raise ValueError("ForcedTokens needs at least one id")
        self.ids, self.after = list(ids), after
        self._pos: list[int | None] = []  # per row: index into ids of the next forced token, or None

    def __call__(self, step: int, generated: Tensor, logits: Tensor) -> Tensor:
        if step == 0:
            self._pos = [0 if self.after is None else None] * logits.shape[0]
        elif self.after is not None:
            for i, t in enumerate(generated[:, -1].tolist()):
                if t == self.after and self._pos[i] is None:
                    self._pos[i] = 0
        for i, k in enumerate(self._pos):
            if k is not None and k < len(self.ids):
                logits[i].fill_(float("-inf"))
                logits[i, self.ids[k]] = 0.0
                self._pos[i] = k + 1
        return logits


class StopStringFilter:
    """Holds back text that could be the start of a stop string; cuts the text at a stop string."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        self.stops = [s for s in stop_strings if s]
        self.buffer = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """Text now safe to emit; sets `stopped` once a stop string appeared (text before it is emitted)."""
        if self.stopped:
            return ""
        self.buffer += piece
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self.buffer = self.buffer[: min(hits)], ""
            return out
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buffer)), hold, -1):
                if self.buffer.endswith(s[:k]):
                    hold = k
                    break
        out, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold :]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


# ---- the loop ----------------------------------------------------------------------------------


def _batch_prompts(
    input_ids: Tensor | Sequence[Sequence[int]], attention_mask: Tensor | None, pad_token_id: int
) -> tuple[Tensor, Tensor | None]:
    """(B, S) ids and a left-padding mask (None when no row is padded)."""
    if isinstance(input_ids, Tensor):
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError(
                f"input_ids must be (batch, seq) with seq >= 1, got shape {tuple(input_ids.shape)}"
            )
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise InputError(
                    f"attention_mask shape {tuple(attention_mask.shape)} != input_ids {tuple(input_ids.shape)}"
                )
            if not bool(left_padding(attention_mask).any()):
                attention_mask = None
        return input_ids, attention_mask
    rows = [list(r) for r in input_ids]
    if not rows or any(len(r) == 0 for r in rows):
        raise InputError("every prompt needs at least one token")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, (mask if bool((mask == 0).any()) else None)


def _steps(
    model: DeepseekV3LM,
    input_ids: Tensor | Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    attention_mask: Tensor | None,
    inputs_embeds: Tensor | None,
    temperature: float,
    top_k: int | None,
    top_p: float,
    repetition_penalty: float,
    stop_token_ids: Sequence[int],
    seed: int | None,
    logits_processors: Sequence[LogitsProcessor],
    pad_token_id: int | None,
) -> Iterator[tuple[Tensor, list[int]]]:
    """Yields (new tokens (B,), their ids as a list) per step; rows that already finished get pad."""
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1 or (top_k is not None and top_k < 1) or repetition_penalty <= 0:
        raise InputError(
            f"bad sampling settings: temperature {temperature} (>= 0), top_p {top_p} (in (0, 1]), "
            f"top_k {top_k} (>= 1), repetition_penalty {repetition_penalty} (> 0)"
        )
    cfg = model.config
    pad_id = pad_token_id if pad_token_id is not None else (cfg.pad_token_id or 0)
    device = model.lm_head.weight.device
    ids, mask = _batch_prompts(input_ids, attention_mask, pad_id)
    ids = ids.to(device)
    mask = None if mask is None else mask.to(device)
    b, s = ids.shape if inputs_embeds is None else inputs_embeds.shape[:2]
    if s > cfg.max_position_embeddings:
        raise InputError(
            f"prompt of {s} tokens is longer than the context window ({cfg.max_position_embeddings})"
        )
    max_new_tokens = min(max_new_tokens, cfg.max_position_embeddings - s)
    if max_new_tokens == 0:
        return
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    seen = None
    if repetition_penalty != 1.0:
        seen = torch.zeros(b, cfg.vocab_size, dtype=torch.bool, device=device)
        valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        seen.scatter_(1, torch.where(valid, ids, ids[:, -1:]), True)  # padding maps onto the row's last token
    stops = set(stop_token_ids)
    generated = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    cache = model.new_cache(b, s + max_new_tokens)
    # Inference mode is entered per step and never held across a `yield`: grad mode is thread-local,
    # so a suspended (or abandoned, or interleaved) stream would otherwise leave its caller's thread
    # in inference mode, and the exits of interleaved streams would restore the wrong mode.
    with torch.inference_mode():
        logits = prefill(model, None if inputs_embeds is not None else ids, cache, attention_mask=mask,
                         inputs_embeds=inputs_embeds)  # fmt: skip
    for step in range(max_new_tokens):
        with torch.inference_mode():
            if seen is not None:
                logits = apply_repetition_penalty(logits, seen, repetition_penalty)
            for processor in logits_processors:
                logits = processor(step, generated[:, :step], logits)
            token = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            token = token.masked_fill(finished, pad_id)
            generated[:, step] = token
            token_list = token.tolist()
        yield token, token_list
        with torch.inference_mode():
            if stops:
                finished |= torch.tensor([t in stops for t in token_list], device=device)
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            if bool(finished.all()) or step == max_new_tokens - 1:
                return
            logits = decode_one_token(model, token, cache, torch.tensor([s + step], device=device))


def generate(
    model: DeepseekV3LM,
    input_ids: Tensor | Sequence[Sequence[int]] | None,
    *,
    max_new_tokens: int,
    attention_mask: Tensor | None = None,
    inputs_embeds: Tensor | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_token_ids: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    seed: int | None = None,
    logits_processors: Sequence[LogitsProcessor] = (),
    pad_token_id: int | None = None,
) -> GenerationResult:
    """Generate up to `max_new_tokens` per row (greedy at temperature 0).

    A row stops after emitting a token in `stop_token_ids` (the token is kept) or once its decoded
    text contains one of `stop_strings` (needs `decode`; the completing token is kept). With
    `inputs_embeds` (B, S, D) (media already merged) pass `input_ids=None`.
    """
    if stop_strings and decode is None:
        raise InputError("stop_strings need a decode callable")
    if input_ids is None and inputs_embeds is None:
        raise InputError("pass input_ids or inputs_embeds")
    steps = _steps(
        model, input_ids if input_ids is not None else inputs_embeds.new_zeros(inputs_embeds.shape[:2], dtype=torch.long),
        max_new_tokens=max_new_tokens, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        stop_token_ids=stop_token_ids, seed=seed, logits_processors=logits_processors, pad_token_id=pad_token_id,
    )  # fmt: skip
    rows: list[list[int]] | None = None
    reasons: list[str | None] | None = None
    streams: list[TextStream] = []
    filters: list[StopStringFilter] = []
    stop_ids = set(stop_token_ids)
    for _, token_list in steps:
        if rows is None:
            rows, reasons = [[] for _ in token_list], [None] * len(token_list)
            streams = [TextStream(decode) for _ in token_list] if stop_strings else []
            filters = [StopStringFilter(stop_strings) for _ in token_list] if stop_strings else []
        for i, t in enumerate(token_list):
            if reasons[i] is not None:
                continue
            rows[i].append(t)
            if t in stop_ids:
                reasons[i] = "stop_token"
            elif filters:
                filters[i].push(streams[i].push(t))
                if filters[i].stopped:
                    reasons[i] = "stop_string"
        if all(r is not None for r in reasons):
            steps.close()  # also ends decoding for rows stopped by strings
            break
    if rows is None:
        b = inputs_embeds.shape[0] if input_ids is None else len(input_ids)
        return GenerationResult(torch.zeros(b, 0, dtype=torch.long), [0] * b, ["length"] * b)
    pad_id = pad_token_id if pad_token_id is not None else (model.config.pad_token_id or 0)
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return GenerationResult(out, [len(r) for r in rows], [r or "length" for r in reasons])


def stream(
    model: DeepseekV3LM,
    input_ids: Tensor | Sequence[int],
    *,
    decode: Callable[[list[int]], str],
    max_new_tokens: int,
    inputs_embeds: Tensor | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_token_ids: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    seed: int | None = None,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> Iterator[str]:
    """Yield decoded text pieces for one prompt as tokens arrive (arguments as in `generate`).

    Pieces never end inside a multi-byte character and never contain (the start of) a stop string;
    generation ends at a stop token (not decoded into the text) or at a stop string (cut before it).
    """
    prompt = input_ids.reshape(1, -1) if isinstance(input_ids, Tensor) else [list(input_ids)]
    stop_ids = set(stop_token_ids)
    steps = _steps(
        model, prompt, max_new_tokens=max_new_tokens, attention_mask=None, inputs_embeds=inputs_embeds,
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        stop_token_ids=tuple(stop_ids), seed=seed, logits_processors=logits_processors, pad_token_id=None,
    )  # fmt: skip
    text, stops = TextStream(decode), StopStringFilter(stop_strings)
    for _, (t,) in steps:
        if t in stop_ids:
            break
        piece = stops.push(text.push(t))
        if piece:
            yield piece
        if stops.stopped:
            steps.close()
            return
    tail = stops.push(text.flush()) + stops.flush()
    if tail:
        yield tail


def reference_generate(
    model: DeepseekV3LM, input_ids: Tensor, max_new_tokens: int, attention_mask: Tensor | None = None
) -> Tensor:
    """Greedy tokens (B, N) by full recompute each step, no cache: the slow twin of `generate`."""
    ids = input_ids
    mask = attention_mask
    out = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            token = model(ids, attention_mask=mask)[:, -1].float().argmax(-1)
            out.append(token)
            ids = torch.cat((ids, token[:, None]), dim=1)
            if mask is not None:
                mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)
    return torch.stack(out, dim=1)
