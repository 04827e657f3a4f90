"""The JSON files of a model directory (config, preprocessor config, tokenizer config), read with
errors that name the file, as the public contract's `InputError` subclass the caller picks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vision.errors import InputError


def read_json(file: Path, error: type[InputError] = InputError) -> Any:
    """The parsed contents of `file`; `error` if it is missing, unreadable or not valid JSON."""
    if not file.exists():
        raise error(f"no {file.name} in {str(file.parent)!r}")
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{str(file)!r} is not valid JSON: {exc}") from exc
