"""Image decoding: whatever a data set holds -> an RGB PIL image, or ImageDecodeError saying why.

decode_image() takes a PIL image, encoded bytes (PNG, JPEG, ...), a path or fsspec URL, or an
HxW(x3/4) uint8 array. Transparent images are composited onto white. Every failure raises
ImageDecodeError (a ValueError) whose message names the input and the problem: unreadable file,
not an image / unknown format, truncated data, corrupt data, a zero-size image, or a decompression
bomb.

Decompression bombs: PIL raises DecompressionBombError above 2 x Image.MAX_IMAGE_PIXELS and only
warns (DecompressionBombWarning) above Image.MAX_IMAGE_PIXELS; both are refused. The warning is
made an error by a local filter (warnings.catch_warnings), never by changing the process-wide
filters or PIL's limits. Before Python 3.14, catch_warnings swaps the global filter list on entry
and restores it on exit, so two such blocks interleaving in two threads could leave the error
filter installed for good; a lock keeps ours from interleaving (decoding is also serialised per
model by LoadedEncoder's lock, so this costs no parallelism there).
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from typing import Any, Iterator

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from vlalign.encoders.base import ImageDecodeError

__all__ = ["decode_image"]

_FILTER_LOCK = threading.Lock()


@contextlib.contextmanager
def _bombs_refused() -> Iterator[None]:
    """DecompressionBombWarning raised as an error inside the block (only there, only this thread)."""
    with _FILTER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _problem(e: BaseException) -> str:
    """What went wrong, in words, for a failure while opening or decoding image data."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "decompression bomb (more pixels than PIL.Image.MAX_IMAGE_PIXELS allows), refused"
    if isinstance(e, UnidentifiedImageError):
        return "not an image, an unknown image format or a corrupt header"
    if isinstance(e, EOFError) or "truncated" in str(e).lower():
        return "truncated image data"
    if isinstance(e, MemoryError):
        return "image too large for memory"
    return "corrupt image data"


def _read(x: Any) -> bytes:
    """The encoded bytes of a path or fsspec URL."""
    path = os.fspath(x)
    if "://" in path:
        with fsspec.open(path, "rb") as fh:
            return fh.read()
    with open(path, "rb") as fh:
        return fh.read()


class _Named(io.BytesIO):
    """Image data that PIL's messages call by its name ('cannot identify image file ...'), not by its object."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.label = name

    def __repr__(self) -> str:
        return repr(self.label)


def decode_image(x: Any, name: str | None = None) -> "Image.Image":
    """An RGB PIL image from a PIL image, PNG/JPEG/... bytes, a path (or fsspec URL) or an HxW(x3/4)
    uint8 array. Transparent images are composited onto white. Raises ImageDecodeError, whose message
    names the input: its path, else ``name`` (what the caller calls bytes: a tar member, an item) and size."""
    what = type(x).__name__

    def fail(problem: str, e: BaseException | None = None) -> ImageDecodeError:
        detail = f": {type(e).__name__}: {e}" if e is not None else ""
        return ImageDecodeError(f"cannot decode image ({what}): {problem}{detail}")

    data: bytes | None = None
    if isinstance(x, Image.Image):
        img = x
    elif isinstance(x, np.ndarray):
        what = f"array {x.shape} {x.dtype}"
        try:
            img = Image.fromarray(x)
        except Exception as e:  # noqa: BLE001 - TypeError/ValueError for shapes and dtypes PIL cannot map
            raise fail("unsupported array shape or dtype", e) from e
    elif isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        what = f"{name}, {len(data)} bytes" if name else f"{len(data)} bytes"
    elif isinstance(x, (str, os.PathLike)):
        what = str(x)
        try:
            data = _read(x)
        except Exception as e:  # noqa: BLE001 - missing file, permissions, fsspec/network errors
            raise fail("cannot read the file", e) from e
    else:
        raise fail(f"unsupported image type {type(x).__name__} (expected PIL image, bytes, path or array)")
    if data is not None and not data:
        raise fail("empty input (0 bytes)")

    try:
        with _bombs_refused():
            if data is not None:
                img = Image.open(_Named(data, what))
            img.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, EOFError, ...)
        raise fail(_problem(e), e) from e
    if img.width < 1 or img.height < 1:
        raise fail(f"empty image, size {img.size}")
    try:
        if img.has_transparency_data:
            rgba = img.convert("RGBA")
            out = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out.alpha_composite(rgba)
            return out.convert("RGB")
        return img if img.mode == "RGB" else img.convert("RGB")
    except Exception as e:  # noqa: BLE001 - e.g. a mode with no conversion to RGB
        raise fail(f"cannot convert mode {img.mode} to RGB", e) from e
