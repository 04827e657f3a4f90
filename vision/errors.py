"""The bad-input error hierarchy, shared by every layer.

It lives in `vision` (the lowest layer) so that `vision` and `video` need nothing from `mm_model`;
`mm_model` re-exports `InputError` as its public name.
"""

from __future__ import annotations


class InputError(ValueError):
    """Something the caller passed in is unusable; the message names the input and the problem."""


class ImageError(InputError):
    """An image could not be read, decoded or accepted."""


class VideoError(InputError):
    """A video could not be opened, decoded or accepted."""


def describe_source(source: object) -> str:
    """A short human name for an input, for error messages: the path, or the kind of object."""
    import os

    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"
