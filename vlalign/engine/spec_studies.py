"""The study sections of a sweep spec (``analyses.cross_domain``, ``cross_lingual``, ``classification``,
``concepts``, ``curves``, ``explain``): each a frozen pydantic model, unknown keys refused (vlalign.engine.spec)."""

from __future__ import annotations

from typing import Annotated, Optional

from annotated_types import Ge
from pydantic import Field, Strict, field_validator

from vlalign.datalake.names import SafeName
from vlalign.engine.spec_errors import spec_error
from vlalign.engine.spec_types import (
    MATCHING_METHODS,
    BaseSizes,
    Count,
    Encoders,
    Grid,
    MatchingMethods,
    NonEmpty,
    QuerySizes,
    Seeds,
    Strings,
    StudySeeds,
    _Section,
)
from vlalign.methods.classify import CLASSIFY_METHODS
from vlalign.methods.concepts import MAPPINGS, RETRIEVALS

LABEL_FIELDS = ("label", "sublabel")
DEFAULT_TEMPLATES = ("an emoji of {label}", "a {label} emoji", "an icon showing {label}", "{label}")
# The classification methods (vlalign.methods.classify) in the spec's order: the training-free ones first. The
# default of analyses.classification.methods, so this order is in the run id of every spec that leaves it out.
CLASSIFY_ORDER = ("local_cka", "qap", *(m for m in CLASSIFY_METHODS if m not in ("local_cka", "qap")))


class DomainPair(_Section):
    base: SafeName = Field(description="the domain the base pairs come from")
    query: SafeName = Field(description="the domain the queries come from")
    base_dataset: Optional[SafeName] = Field(None, description="the data set of the base (default: the queries')")
    query_dataset: Optional[SafeName] = Field(None, description="the data set of the queries (default: every one with both domains)")


class CrossDomainSpec(_Section):
    """Matching with the base pairs from one domain and the queries from another."""

    pairs: NonEmpty[DomainPair] = Field(json_schema_extra={"minItems": 1},
                                       description="list of {base: DOMAIN, query: DOMAIN[, base_dataset, query_dataset]}")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")


class CrossLingualSpec(_Section):
    """Matching with the captions in other languages (the paper's XTD-10 study)."""

    langs: Strings = Field(description="caption languages; each is compared with the sweep's own languages")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all); English-only ones are skipped, with the reason")
    multilingual: Strings = Field((), description="text encoders to treat as multilingual beyond the catalog's flag")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")


class ClassificationSpec(_Section):
    """Zero-shot classification: each class becomes a caption through the templates."""

    label_fields: Annotated[tuple[str, ...], Grid(str, choices=LABEL_FIELDS)] = Field(
        LABEL_FIELDS, description="label and/or sublabel (emoji: category and subcategory)"
    )
    templates: Strings = Field(DEFAULT_TEMPLATES, description="caption templates with {label}; their embeddings are averaged")
    template_set: SafeName = Field("default", description="a name for the template list, shown in the results")
    methods: Annotated[tuple[str, ...], Grid(str, choices=CLASSIFY_ORDER)] = Field(
        CLASSIFY_ORDER, description=f"a subset of {list(CLASSIFY_ORDER)}"
    )
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")

    @field_validator("templates")
    @classmethod
    def _has_label(cls, templates: tuple[str, ...]) -> tuple[str, ...]:
        for t in templates:
            if "{label}" not in t:
                raise spec_error("every template must contain {label}", got=t)
            try:
                t.format(label="x")
            except (KeyError, IndexError, ValueError) as e:
                raise spec_error(f"template is not a valid format string ({e})", got=t) from None
        return templates


class ConceptsSpec(_Section):
    """Concept alignment (Li et al.): Procrustes from concept image means to word embeddings, k-fold, P@k."""

    domains: Optional[Strings] = Field(None, description="visual domains whose images a concept averages (default: all)")
    mappings: Annotated[tuple[str, ...], Grid(str, choices=MAPPINGS)] = Field(
        MAPPINGS, description="procrustes, and the baselines random_orthogonal and shuffled_dictionary")
    retrievals: Annotated[tuple[str, ...], Grid(str, choices=RETRIEVALS)] = Field(
        RETRIEVALS, description="nearest neighbour and/or CSLS")
    folds: Annotated[int, Strict(), Ge(2)] = Field(5, description="cross-validation folds over the concepts")
    seeds: Seeds = Field((0,), description="fold seeds")
    csls_k: Count = Field(10, description="neighbourhood size of CSLS")
    bins: Count = Field(3, description="quantile bins of each concept property in the breakdowns")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")


class CurvesSpec(_Section):
    """Accuracy against base size and query size over several seeds, and the stretching x selection ablation."""

    vision_encoders: Encoders = Field(None, description="default: the sweep's first vision encoder")
    text_encoders: Encoders = Field(None, description="default: the sweep's first text encoder")
    base_sizes: BaseSizes = Field((40, 80, 160, 320, 640), description="base sizes at the sweep's first query size")
    query_sizes: QuerySizes = Field((100, 250, 500, 1000), description="query sizes at the sweep's first base size")
    seeds: Seeds = Field((0, 1, 2), description="seeds of every curve point (the band is their spread)")
    methods: MatchingMethods = Field(MATCHING_METHODS, description="matching methods on the curves")
    ablation: Annotated[bool, Strict()] = Field(True, description="stretch on/off x random/kmeans_image base at the first sizes")


class ExplainSpec(_Section):
    """Moller et al.: the attributions of the run's best-matched query pairs to (image region, caption token) pairs,
    as `vlalign explain --run RUN --top N` computes them, drawn on the page."""

    top: Count = Field(3, description="how many of the best-matched query pairs of the main grid's first cell")
    vision_encoder: Optional[str] = Field(None, description="default: the sweep's first vision encoder")
    text_encoder: Optional[str] = Field(None, description="default: the sweep's first text encoder")
    steps: Count = Field(32, description="integration steps (the residual shrinks as they grow: 64 for ~1e-3)")
    seed: Optional[Annotated[int, Strict(), Ge(0)]] = Field(None, description="the cell's seed (default: the sweep's first)")
