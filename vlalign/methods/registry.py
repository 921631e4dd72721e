"""The alignment measures by name, each with its settings and its metadata beside it (after mklabunde/resi).

``MEASURES[name]`` is a ``MeasureInfo``: the function ``f(x, y, **settings) -> float`` on paired (n, d1), (n, d2)
arrays, its settings with their defaults, its range, whether larger means more similar, the transformations it
is invariant to, and the upper bound ``smax`` that permutation calibration normalises by. ``measure(name, x, y,
**settings)`` calls one with its settings checked by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from vlalign.methods.cka import cka
from vlalign.methods.geometry_measures import rsa, svcca
from vlalign.methods.knn_measures import cknna, cycle_knn
from vlalign.methods.measures import mutual_knn

__all__ = ["MeasureInfo", "MEASURES", "measure_info", "resolve_settings", "measure"]


@dataclass(frozen=True)
class MeasureInfo:
    """One measure and its metadata."""

    name: str
    function: Callable[..., float]
    defaults: Mapping[str, object]  # every setting the function takes, with its default
    value_range: tuple[float, float]  # the values it can take (closed interval unless noted)
    larger_is_more_similar: bool
    invariances: tuple[str, ...]  # transformations of either representation that leave the value unchanged
    smax: float | None  # upper bound used by calibration's (s - tau) / (smax - tau); None: unnormalised
    reference: str
    notes: str = field(default="")


def _info(name, function, defaults, value_range, invariances, reference, notes="", smax=1.0) -> MeasureInfo:
    return MeasureInfo(name, function, MappingProxyType(dict(defaults)), value_range, True, tuple(invariances),
                       smax, reference, notes)


_ORTHO = "orthogonal maps"
_ISO = "isotropic scaling"
_SHIFT = "translations"
_ROWS = "positive rescaling of rows (samples)"

MEASURES: Mapping[str, MeasureInfo] = MappingProxyType({
    "cka": _info(
        "cka", cka, {"kernel": "linear", "debiased": False, "sigma": None, "scale": 1.0}, (0.0, 1.0),
        (_ORTHO, _ISO, _SHIFT),
        "Kornblith et al. 2019 (debiased: Song et al. 2012 HSIC_1)",
        "debiased CKA can be slightly negative; rbf with the median bandwidth (sigma=None) keeps isotropic "
        "scaling invariance, a fixed sigma does not"),
    "mutual_knn": _info(
        "mutual_knn", mutual_knn, {"k": 10}, (0.0, 1.0), (_ORTHO, _ROWS),
        "Huh et al. 2024, platonic-rep metrics.py mutual_knn", "chance level k / (n - 1)"),
    "cycle_knn": _info(
        "cycle_knn", cycle_knn, {"k": 10, "normalize": True}, (0.0, 1.0), (_ORTHO, _ROWS),
        "Huh et al. 2024, platonic-rep metrics.py cycle_knn", "not symmetric in x and y"),
    "cknna": _info(
        "cknna", cknna, {"k": 10, "normalize": True, "unbiased": True, "eps": 1e-6}, (-1.0, 1.0), (_ORTHO, _ROWS),
        "Huh et al. 2024, platonic-rep metrics.py cknna",
        "masked Grams are not positive semi-definite, so |value| <= 1 is typical but not guaranteed"),
    "svcca": _info(
        "svcca", svcca, {"keep_variance": 0.99, "dims": None, "standardize": False}, (0.0, 1.0),
        (_ORTHO, _ISO, _SHIFT), "Raghu et al. 2017"),
    "rsa": _info(
        "rsa", rsa, {"distance": "correlation"}, (-1.0, 1.0),
        ("strictly increasing maps of either RDM",),
        "Kriegeskorte et al. 2008; Spearman of the RDMs' upper triangles",
        "further invariances depend on distance: correlation: per-sample affine maps; cosine: orthogonal maps "
        "and row rescaling; euclidean: orthogonal maps, translations, isotropic scaling"),
})


def measure_info(name: str) -> MeasureInfo:
    """The registry entry of ``name``, or a ValueError listing the known names."""
    if not isinstance(name, str) or name not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {name!r}")
    return MEASURES[name]


def resolve_settings(name: str, settings: Mapping[str, object]) -> dict[str, object]:
    """``settings`` completed with the measure's defaults; a ValueError names any setting it does not take."""
    info = measure_info(name)
    unknown = sorted(set(settings) - set(info.defaults))
    if unknown:
        raise ValueError(f"measure {name!r} takes the settings {sorted(info.defaults)}, got unknown {unknown}")
    return {**info.defaults, **settings}


def measure(name: str, x: np.ndarray, y: np.ndarray, **settings: object) -> float:
    """The value of measure ``name`` on paired x (n, d1), y (n, d2) with ``settings`` (defaults for the rest)."""
    return float(measure_info(name).function(x, y, **resolve_settings(name, settings)))
