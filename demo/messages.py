"""Gradio chat history -> `Model.chat` messages (pure; no Gradio import).

Gradio hands the history as OpenAI-style dicts whose user content mixes text (a str or a
`{"type": "text"}` block) and files (`{"path": ...}`, or `{"type": "file", "file": {"path": ...}}`
after the Chatbot's preprocessing). Each file is checked against the demo's limits and becomes an
`{"type": "image"|"video", ...}` part; a `.txt` (Gradio's form of long pasted text) becomes text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demo.media import Limits, check_file
from mm_model import InputError

ERROR = "⚠️ "  # answers that start with this are errors: their turn is left out of the model's history
NOTICE = "ℹ️ "  # shown instead of an empty answer: the model's history gets the empty answer it gave


def file_path(item: Any) -> str | None:
    """The path of a Gradio file value ({"path": ...}, {"file": {"path": ...}}, a FileData, a str)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        if isinstance(item.get("file"), dict):
            return item["file"].get("path")
        return item.get("path")
    return getattr(item, "path", None)


def _user_parts(content: Any, limits: Limits) -> list[dict[str, Any]]:
    """API content parts for one chat message's content (text, files, or a list of both)."""
    items = content if isinstance(content, (list, tuple)) else [content]
    parts = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "text":
            item = item.get("text", "")
        if isinstance(item, str):  # text; files always come as dicts / FileData
            if item.strip():
                parts.append({"type": "text", "text": item})
            continue
        path = file_path(item)
        if path is None:
            continue
        kind = check_file(path, limits)
        if kind == "text":
            parts.append({"type": "text", "text": Path(path).read_text(errors="replace")})
        else:
            parts.append({"type": kind, kind: path})
    return parts


def to_messages(history: list[dict[str, Any]], message: dict[str, Any], limits: Limits) -> list[dict]:
    """Chat history + the new multimodal message -> `Model.chat` messages.

    Thinking and stats messages (those with a metadata title) are display only; a turn answered by an
    error is dropped with its error, so one bad file does not poison the rest of the conversation.
    """
    messages: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for m in history:
        if m.get("role") == "user":
            pending.append(m)
            continue
        if (m.get("metadata") or {}).get("title"):
            continue
        text = m.get("content") if isinstance(m.get("content"), str) else ""
        if text.startswith(ERROR):
            pending = []
            continue
        if text.startswith(NOTICE):
            text = ""
        for u in pending:
            messages.append({"role": "user", "content": _user_parts(u["content"], limits)})
        pending = []
        messages.append({"role": "assistant", "content": text})
    parts = [p for u in pending for p in _user_parts(u["content"], limits)]  # unanswered (stopped) turns
    parts += [p for f in message.get("files") or [] for p in _user_parts({"path": file_path(f)}, limits)]
    if (message.get("text") or "").strip():
        parts.append({"type": "text", "text": message["text"]})
    if not parts:
        raise InputError("type a question or attach a screenshot, image or video")
    return [*messages, {"role": "user", "content": parts}]
