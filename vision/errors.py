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


def check_file_or_bytes(source: object, what: str, error: type[InputError], name: str | None = None):
    """A path or bytes input checked before decoding: returns the path or a `BytesIO`.

    Raises `error` naming the input when the bytes are empty, or the path is missing, a directory or
    empty; returns None for any other kind of object (the caller decides what else it accepts).
    """
    import io
    import os

    name = name or describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise error(f"{what} {name} is empty (zero bytes)")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise error(f"{what} {name} does not exist")
        if os.path.isdir(path):
            raise error(f"{what} {name} is a directory, not a file")
        if os.path.getsize(path) == 0:
            raise error(f"{what} {name} is empty (zero bytes)")
        return path
    return None


def describe_source(source: object) -> str:
    """A short human name for an input, for error messages: the path, or the kind of object."""
    import os

    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"
