"""The layers a sweep embeds: the spec's vision_layers / text_layers resolved against each model.

Indices are the model's (vlalign.encoders.layers): 0, 1, ... its inner layers, -1 its output (the embedding of the
first lakes). ``last`` is (-1,); ``all`` every inner layer and the output; ``{every: k}`` inner layers 0, k, 2k, ...
and the output; a list is taken as written, checked against the model before any work starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import vlalign.encoders.layers as encoder_layers
from vlalign.datalake.digest import digest_json
from vlalign.datalake.store import atomic_write_bytes, cache_home
from vlalign.encoders import EncoderError, weights_digest
from vlalign.encoders.cache import load_encoder
from vlalign.encoders.layers import OUTPUT
from vlalign.engine.spec import SpecError, SweepSpec
from vlalign.engine.spec_types import Every

Layers = tuple[tuple[int, str], ...]  # ((index, name), ...) in the spec's order


def resolve_layers(choice: Any, names: tuple[str, ...], key: str, encoder: str) -> tuple[int, ...]:
    """The indices ``choice`` (a validated layers value) selects from a model whose inner layers are ``names``."""
    if choice == "last":
        return (OUTPUT,)
    if choice == "all":
        return (*range(len(names)), OUTPUT)
    if isinstance(choice, Every):
        return (*range(0, len(names), choice.k), OUTPUT)
    bad = [i for i in choice if i != OUTPUT and i >= len(names)]
    if bad:
        have = (f"inner layers 0..{len(names) - 1}" if names else
                "one layer (its output, a static embedding or a model whose layers are not exposed)")
        raise SpecError(f"{key}: layer {', '.join(map(str, bad))} is out of range for {encoder}, which has {have}; "
                        "-1 (or last) is its output")
    return tuple(choice)


def layer_name(names: tuple[str, ...], index: int) -> str:
    return "output" if index == OUTPUT else names[index]


def layer_names(name: str) -> tuple[str, ...]:
    """The inner layers' names of encoder ``name``: from a model loaded once, then kept per machine (in the cache
    folder, keyed by the weights' digest and the code that names the layers: loading six models to count their
    layers took 7 s of every `vlalign run`)."""
    code = Path(encoder_layers.__file__).parent
    key = digest_json([name, weights_digest(name), _library_versions()]
                      + [(code / f).read_bytes().hex() for f in _NAMING_CODE])
    path = Path(cache_home()) / "layer-names.json"
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), list):
        return tuple(known[key])
    names = tuple(load_encoder(name, device="cpu").layer_names)
    try:
        atomic_write_bytes(str(path), json.dumps({**known, key: list(names)}).encode(), "layers")
    except OSError:
        pass  # a cache only
    return names


def _library_versions() -> list[str | None]:
    """The versions of the libraries whose models the layers come from (timm's feature_info, transformers)."""
    from importlib.metadata import PackageNotFoundError, version  # (only when layers are counted)

    out = []
    for dist in ("timm", "transformers", "sentence-transformers", "torch"):
        try:
            out.append(version(dist))
        except PackageNotFoundError:
            out.append(None)
    return out


_NAMING_CODE = ("layers.py", "vision.py", "text.py", "backend.py")  # vlalign/encoders: where layer names come from


def spec_layers(spec: SweepSpec) -> dict[str, Layers]:
    """{encoder: ((index, name), ...)} for every encoder of a spec that names vision_layers or text_layers; {} for
    one that does not (only the outputs are embedded, no model is opened here). Loads each model once (on the
    CPU, in this process's cache) to count its layers."""
    if spec.vision_layers == "last" and spec.text_layers == "last":
        return {}
    out: dict[str, Layers] = {}
    for key, encoders in (("vision_layers", spec.vision_encoders), ("text_layers", spec.text_encoders)):
        choice = getattr(spec, key)
        for name in encoders:
            try:
                names = () if choice == "last" else layer_names(name)
            except EncoderError as e:
                raise SpecError(f"{key}: {name}: {e}") from None
            out[name] = tuple((i, layer_name(names, i)) for i in resolve_layers(choice, names, key, name))
    return out
