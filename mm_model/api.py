"""The user-facing API: `load()` a model, then `Model.chat()` or `Model.generate()`.

import mm_model
m = mm_model.load("path/to/checkpoint")          # or a bundled model name
r = m.chat([{"role": "user", "content": [{"type": "image", "image": "shot.png"},
                                         {"type": "text", "text": "Which button is highlighted?"}]}])
r.text, r.thinking, r.usage
for piece in m.chat(messages, stream=True): print(piece, end="")   # piece.kind: "thinking" | "answer"
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from compute.dtypes import cpu_has_fast_bf16
from mm_model import generation
from mm_model import tools as tools_mod
from mm_model.checkpoint import load_model
from mm_model.config import ModelConfig
from mm_model.generation import ForcedTokens
from mm_model.lm.compiled import DecodeStep, compile_requested, use_decode_step, warm_up
from mm_model.media_options import MediaOptions
from mm_model.multimodal import KimiK25Model
from mm_model.processor import MediaItem, Processor
from mm_model.toggle import CALIBRATION_FILE, Calibration, ThinkingBudget, ThinkingStream, ThinkTokens
from mm_model.tokenizer import Tokenizer, load_tokenizer
from vision.errors import InputError
from vision.packing import pack

if TYPE_CHECKING:
    from mm_model.remote import RemoteModel

BUNDLED = ("tiny",)


NO_ANSWER = "the model produced no answer"


@dataclass(frozen=True)
class ChatResult:
    """One assistant reply. usage: prompt_tokens, vision_tokens, thinking_tokens, answer_tokens.

    An empty answer is a result, not an error: `answered` is False and `notice` says so (and why), so
    that a caller shows that rather than a blank as if it were the answer."""

    text: str
    thinking: str
    usage: dict[str, int]
    finish_reason: str = "stop"
    timings: dict[str, float] = field(default_factory=dict)
    # OpenAI-shaped {"id", "type": "function", "function": {"name", "arguments"}}; finish_reason "tool_calls"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Whether the answer has any text other than white space, or calls a tool."""
        return bool(self.text.strip()) or bool(self.tool_calls)

    @property
    def notice(self) -> str | None:
        """None when there is an answer; else what to show instead of it."""
        if self.answered:
            return None
        if self.finish_reason == "length":
            where = "while thinking" if self.thinking else "before it"
            return f"{NO_ANSWER}: max_new_tokens ran out {where}"
        return f"{NO_ANSWER}: it ended its turn without one"


class TextPiece(str):
    """A streamed piece of text that knows whether it belongs to the thinking or the answer."""

    kind: str

    def __new__(cls, text: str, kind: str) -> TextPiece:
        piece = super().__new__(cls, text)
        piece.kind = kind
        return piece


class ToolCallPiece(TextPiece):
    """A streamed piece of a tool call (kind "tool_call"): its text is a fragment of the call's JSON
    arguments; `index` numbers the calls of the reply; `id` and `name` are set on a call's first piece."""

    index: int
    id: str | None
    name: str | None

    def __new__(cls, text: str, index: int, id: str | None = None, name: str | None = None) -> ToolCallPiece:
        piece = super().__new__(cls, text, "tool_call")
        piece.index, piece.id, piece.name = index, id, name
        return piece


class ChatStream:
    """Iterator of `TextPiece`s; `.result` holds the `ChatResult` once the iteration has finished."""

    def __init__(self, pieces: Iterator[TextPiece]) -> None:
        self._pieces = pieces
        self.result: ChatResult | None = None

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> TextPiece:
        return next(self._pieces)

    def close(self) -> None:
        """Stop generating now (e.g. the client went away); `.result` stays None."""
        self._pieces.close()


def _default_dtype(device: torch.device) -> torch.dtype:
    # bf16 only where matmuls have native bf16 units; elsewhere fp32 runs ~10x faster (compute/dtypes.py).
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()):
        return torch.bfloat16
    return torch.float32


def resolve_source(source: str | Path | None) -> Path:
    """A bundled model name or a checkpoint directory (None: the default, "tiny") -> the directory."""
    if source is None:
        source = "tiny"
    if not isinstance(source, str | Path):
        raise InputError(f"model source must be a bundled model name, a directory or an http(s):// endpoint "
                         f"URL, not {type(source).__name__}")  # fmt: skip
    if isinstance(source, str) and not source.strip():
        raise InputError(
            f"model source is empty: name a bundled model {BUNDLED}, a directory or an endpoint URL"
        )
    from mm_model.remote import is_url

    if is_url(source):
        raise InputError(
            f"{source} is an endpoint URL: this needs a local model (a bundled name or a directory)"
        )
    if isinstance(source, str) and source in BUNDLED:
        path = Path(str(resources.files("mm_model") / "bundled" / source))
        if not (path / "config.json").exists():
            raise InputError(f"the bundled model {source!r} is not installed in this build ({path})")
        return path
    path = Path(source)
    if not path.is_dir():
        raise InputError(f"model source {str(source)!r} is neither a bundled model {BUNDLED}, a directory, "
                         "nor an http(s):// endpoint URL (such as http://127.0.0.1:8000/v1)")  # fmt: skip
    return path


def load(
    source: str | Path | None = "tiny",
    dtype: torch.dtype | None = None,
    device: str | None = None,
    *,
    model: str | None = None,
    api_key: str | None = None,
    compile: bool | None = None,
) -> Model | RemoteModel:
    """Load a bundled model by name or a checkpoint directory (config.json + safetensors [+ tokenizer]),
    or connect to an OpenAI-compatible endpoint given as an http(s):// URL (a `RemoteModel`: `model`
    names the served model, default the endpoint's first; `api_key` default $OPENAI_API_KEY; dtype and
    device are the endpoint's business and ignored).

    compile: decode with the step compiled by torch.compile (`mm_model.lm.compiled`); None reads
    `MM_MODEL_COMPILE` (default off: the compile costs seconds to minutes once per process, which pays
    back only over long or many generations; `Model.warm_up` pays it up front)."""
    from mm_model.remote import RemoteModel, is_url

    if is_url(source):
        return RemoteModel(source, model, api_key)
    if model is not None or api_key is not None:
        raise InputError(f"model= and api_key= are for an endpoint URL; {str(source)!r} is a local model")
    path = resolve_source(source)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or _default_dtype(dev)
    model = load_model(path, dtype=dtype, device=dev)
    if compile_requested(compile):
        use_decode_step(model.language_model, DecodeStep(model.language_model, compile=True))
    return Model(model, load_tokenizer(path), path=path)


class Model:
    """A loaded multimodal model: `.config`, `.processor`, `.model` (the `nn.Module`), `.tokenizer`."""

    def __init__(
        self,
        model: KimiK25Model,
        tokenizer: Tokenizer | None,
        *,
        path: Path | None = None,
        media_cache_items: int = 64,
        processor: Processor | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.model = model.eval()
        self.config: ModelConfig = model.config
        self.tokenizer = tokenizer
        self.path = path
        self.processor = processor or Processor(self.config, tokenizer)
        # chat(thinking=None) follows the checkpoint's template default (the release's: on)
        self.default_thinking: bool = self.config.thinking_default
        # Toggle calibration for budget="auto" (toggle_calibration.json next to the weights).
        if calibration is None and path is not None and (path / CALIBRATION_FILE).exists():
            calibration = Calibration.load(path / CALIBRATION_FILE)
        self.calibration = calibration
        # Features of media already seen (e.g. earlier turns of a conversation), by content hash.
        self._media_cache: OrderedDict[str, Tensor] = OrderedDict()
        self._media_cache_items = media_cache_items

    # ---- media ---------------------------------------------------------------------------------
    def media_embeddings(self, items: Sequence[MediaItem]) -> tuple[Tensor | None, int]:
        """(T, D) LM embeddings of `items` in order, encoding only those not seen before; and the count encoded."""
        if not items:
            return None, 0
        todo = [m for m in dict.fromkeys(m.key for m in items) if m not in self._media_cache]
        by_key = {m.key: m for m in items}
        if todo:
            packed = pack([(by_key[k].patches, by_key[k].grid) for k in todo], self.config.vision)
            device = self.model.mm_projector.pre_norm.weight.device
            with torch.inference_mode():
                fresh = self.model.embed_media(packed.to(device)).split(packed.tokens)
            for key, emb in zip(todo, fresh):
                self._media_cache[key] = emb
        for m in items:
            self._media_cache.move_to_end(m.key)
        embeds = torch.cat([self._media_cache[m.key] for m in items])
        while len(self._media_cache) > self._media_cache_items:
            self._media_cache.popitem(last=False)
        return embeds, len(todo)

    # ---- decode step ---------------------------------------------------------------------------
    @property
    def compiled(self) -> bool:
        """Whether answers decode with the step compiled by torch.compile (`load(..., compile=True)`)."""
        return bool(getattr(self.model.language_model.decode_step, "compiled", False))

    def warm_up(self) -> float | None:
        """Run the decode step as answers will (`lm.compiled.warm_up`), so its compile (30-60 s on a CPU
        at the lm_speed size, once per process) happens now and not in an answer. Seconds taken; None
        when decoding eagerly."""
        return warm_up(self.model.language_model) if self.compiled else None

    # ---- chat ----------------------------------------------------------------------------------
    def chat(
        self,
        messages: Sequence[dict[str, Any]] | str,
        *,
        max_new_tokens: int = 256,
        thinking: bool | None = None,
        budget: int | str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stream: bool = False,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        max_patches: int | None = None,
        task_kind: str | None = None,
        answer_budget: int | None = None,
        ramp: float = 0.0,
    ) -> ChatResult | ChatStream:
        """Answer the conversation `messages` (OpenAI/HF style; a plain string is one user turn).

        thinking: open a thinking block first (None: the model's default, `default_thinking`: on for
        checkpoints, as the release's template and vLLM serve K2.5; off for the bundled model). budget:
        at most this many thinking tokens, then the
        policy closes the block and the model answers (None: unlimited; "auto": from the model's
        Toggle calibration for `task_kind`). answer_budget caps the answer; ramp (0..1) nudges the
        model to close its thinking over the last part of the budget (`mm_model.toggle`).
        stream: return a `ChatStream` of `TextPiece`s (thinking pieces first, then the answer).
        tools: OpenAI tools list, declared in K2's format; the reply's calls land in
        `ChatResult.tool_calls` (streamed as `ToolCallPiece`s). tool_choice: "auto" (default with
        tools), "none" (declared, not parsed), "required" or {"type": "function", "function": {"name":
        ...}} (the answer is made to start with a call: `mm_model.tools.forced_prefix`).
        fps, num_frames, max_patches: media options for this call, under those written on a part and
        over the processor's (`mm_model.media_options`: video sampling rate, frame cap, patch budget).
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        thinking = self.default_thinking if thinking is None else bool(thinking)
        tools = tools_mod.check_tools(tools) if tools else None
        choice = tools_mod.check_tool_choice(tool_choice, tools)
        if budget is not None and not thinking:
            raise InputError("a thinking budget needs thinking=True")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        policy = None
        if budget is not None or answer_budget is not None:
            if self.tokenizer is None:
                raise InputError(
                    "this model has no tokenizer files: chat needs one (use generate() with token ids)"
                )
            policy = ThinkingBudget(
                ThinkTokens.from_special_tokens(self.tokenizer.special_tokens), thinking=thinking, budget=budget,
                answer_budget=answer_budget, ramp=ramp, max_new_tokens=max_new_tokens,
                calibration=self.calibration, task_kind=task_kind,
            )  # fmt: skip
        media = MediaOptions.checked(fps, num_frames, max_patches)  # bad values raise now, not mid-stream
        pieces = self._chat_pieces(messages, max_new_tokens, thinking, policy, temperature, top_p, seed,
                                   tools, choice, media)  # fmt: skip
        if stream:
            holder = ChatStream(iter(()))

            def run() -> Iterator[TextPiece]:
                holder.result = yield from pieces

            holder._pieces = run()
            return holder
        try:
            while True:
                next(pieces)
        except StopIteration as done:
            return done.value

    def _chat_pieces(
        self,
        messages,
        max_new_tokens,
        thinking,
        policy,
        temperature,
        top_p,
        seed,
        tools,
        choice,
        options,
    ):
        """Generator of `TextPiece`s whose return value is the `ChatResult`; options: `MediaOptions`."""
        start = time.perf_counter()
        prompt = self.processor(messages, thinking=thinking, max_new_tokens=max_new_tokens, tools=tools,
                                **options.as_dict())  # fmt: skip
        media, encoded = self.media_embeddings(prompt.media)
        device = self.model.language_model.lm_head.weight.device
        ids = prompt.input_ids[None].to(device)
        with torch.inference_mode():
            embeds = self.model.merge_media(ids, None if media is None else media.to(device))
        tokens = ThinkTokens.from_special_tokens(self.tokenizer.special_tokens)
        processors = [] if policy is None else [policy]
        # Tool calls are parsed from the answer text, so their markers must survive decoding.
        calls = tools_mod.ToolCallSplitter() if tools and choice != "none" else None
        decode = tools_mod.decoder(self.tokenizer, keep_tool_markers=calls is not None)
        if calls is not None and (prefix := tools_mod.forced_prefix(choice, tools_mod.count_calls(messages))):
            processors.append(
                ForcedTokens(self.tokenizer.encode(prefix), tokens.think_close if thinking else None)
            )

        # the same channel splitter as the Toggle streams: `</think>` counts as neither channel
        stream = ThinkingStream(tokens, decode, thinking=thinking)
        texts: dict[str, list[str]] = {"thinking": [], "answer": []}
        finish, first_token_at, generated = "length", None, 0
        steps = generation._steps(
            self.model.language_model, ids, max_new_tokens=max_new_tokens, attention_mask=None, inputs_embeds=embeds,
            temperature=temperature, top_k=None, top_p=top_p, repetition_penalty=1.0,
            stop_token_ids=sorted(tokens.turn_end), seed=seed, logits_processors=processors, pad_token_id=None,
        )  # fmt: skip

        def emit(events: list) -> Iterator[TextPiece]:
            for event in events:
                if event.channel == "answer" and calls is not None:
                    yield from tool_pieces(calls.push(event.text))
                    continue
                texts[event.channel].append(event.text)
                yield TextPiece(event.text, event.channel)

        def tool_pieces(events: Iterator[tools_mod.ToolEvent]) -> Iterator[TextPiece]:
            for e in events:
                if e.kind == "content":
                    texts["answer"].append(e.text)
                    yield TextPiece(e.text, "answer")
                else:
                    yield ToolCallPiece(e.text, e.index, e.id, e.name)

        for _, (t,) in steps:
            first_token_at = first_token_at or time.perf_counter()
            generated += 1
            yield from emit(stream.push(t))  # the turn end flushes the stream and closes it
            if t in tokens.turn_end:
                finish = "stop"
                break
        yield from emit(stream.flush())  # nothing once closed
        if calls is not None:
            yield from tool_pieces(calls.flush())
        end = time.perf_counter()
        new_tokens = generated
        usage = {
            "prompt_tokens": int(prompt.input_ids.numel()),
            "vision_tokens": prompt.vision_tokens,
            "thinking_tokens": stream.thinking_tokens,
            "answer_tokens": stream.answer_tokens,
            "completion_tokens": new_tokens,
            "media_items_encoded": encoded,
        }
        first = (first_token_at or end) - start
        timings = {"time_to_first_token_s": first, "total_s": end - start,
                   "tokens_per_s": (new_tokens - 1) / (end - first_token_at) if first_token_at and end > first_token_at and new_tokens > 1 else 0.0}  # fmt: skip
        tool_calls = [] if calls is None else calls.calls
        finish = tools_mod.finish_reason(choice, tool_calls, finish)
        return ChatResult(
            "".join(texts["answer"]), "".join(texts["thinking"]), usage, finish, timings, tool_calls
        )

    # ---- raw generation ------------------------------------------------------------------------
    def generate(
        self,
        input_ids: Tensor | Sequence[int],
        *,
        pixel_values: Tensor | None = None,
        grid_thws: Tensor | None = None,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> Tensor:
        """New token ids (B, N) for prompts with placeholders already expanded (greedy at temperature 0).

        Works without tokenizer files. Rows that stop early are padded with the pad id.
        """
        ids = torch.as_tensor(input_ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        device = self.model.language_model.lm_head.weight.device
        media = None
        if pixel_values is not None:
            if grid_thws is None:
                raise InputError("pixel_values need grid_thws")
            with torch.inference_mode():
                media = self.model.embed_pixels(pixel_values, torch.as_tensor(grid_thws))
        with torch.inference_mode():
            embeds = self.model.merge_media(ids.to(device), media)
        stops = (
            []
            if eos_token_id is None
            else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        )
        result = generation.generate(
            self.model.language_model, ids, inputs_embeds=embeds, max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, seed=seed, stop_token_ids=stops,
        )  # fmt: skip
        return result.tokens
