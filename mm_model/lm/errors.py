"""The LM's checkpoint error, in a module of its own so that the INT4 and loading modules can both
raise it without importing each other (`loading` imports `int4`; `int4` needs only this)."""

from __future__ import annotations

from vision.errors import InputError


class CheckpointError(InputError):
    """A checkpoint directory or file is missing, unreadable or does not fit the config."""
