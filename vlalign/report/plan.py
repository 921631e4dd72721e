"""Which rows of a run belong to which study, from the run's own spec (``runs.spec``): the main grid (same
domain, the data sets' own domains and languages, the settings grid), cross-domain, cross-lingual, the curves
and the stretch x selection ablation."""

from __future__ import annotations

from typing import Iterable


def _setting(r: dict) -> tuple:
    return (r["base_size"], r["query_size"], r["base_selection"], r["stretch"], r["seed"])


def _same_domain(r: dict) -> bool:
    b, q = r.get("base_domain"), r.get("query_domain")
    return b is None or q is None or b == q


def _pick(names, default) -> tuple:
    return tuple(names) if names else tuple(default)


class Plan:
    """Which rows of a run belong to which study, from the run's spec. Without a spec (a run record that is
    missing or cannot be parsed), every same-domain row is the main grid and no other study is known."""

    def __init__(self, spec):
        self.spec = spec
        if spec is None:
            return
        self.settings = {(s.base_size, s.query_size, s.base_selection, s.stretch, s.seed) for s in spec.settings()}
        self.first = spec.settings()[0]
        self.datasets = {ds.name: ds for ds in spec.datasets}

    # -- the main grid --
    def main_selection(self, r: dict, lang: bool = True) -> bool:
        """(dataset, domain[, lang]) is one of the main grid's selections."""
        if self.spec is None:
            return True
        ds = self.datasets.get(r["dataset"])
        if ds is None:
            return False
        return (not ds.domains or r["domain"] in ds.domains) and (not lang or not ds.langs or r["lang"] in ds.langs)

    def is_main(self, r: dict) -> bool:
        if not _same_domain(r) or not self.main_selection(r):
            return False
        if self.spec is None:
            return True
        return (_setting(r) in self.settings and r["vision_encoder"] in self.spec.vision_encoders
                and r["text_encoder"] in self.spec.text_encoders)

    def main_langs(self, rows: Iterable[dict]) -> list[str]:
        return sorted({r["lang"] for r in rows if self.is_main(r)})

    # -- cross-domain --
    def is_cross_domain(self, r: dict) -> bool:
        return not _same_domain(r)

    def cross_domain_routes(self) -> list[tuple[str, str]]:
        cd = self.spec.cross_domain if self.spec else None
        return [(p.base, p.query) for p in cd.pairs] if cd else []

    def cross_domain_reference(self, r: dict) -> bool:
        """A main-grid row that a cross-domain route compares with: same domain as one end of a route, the
        study's encoders and seeds."""
        cd = self.spec.cross_domain if self.spec else None
        if not cd or not self.is_main(r):
            return False
        ends = {dom for pair in self.cross_domain_routes() for dom in pair}
        return (r["domain"] in ends and r["vision_encoder"] in _pick(cd.vision_encoders, self.spec.vision_encoders)
                and r["text_encoder"] in _pick(cd.text_encoders, self.spec.text_encoders)
                and r["seed"] in (cd.seeds or self.spec.seeds))

    # -- cross-lingual --
    def is_cross_lingual(self, r: dict, with_main: bool = False) -> bool:
        """A row of the cross-lingual study (lang one of its languages); ``with_main``: or of its reference,
        the same encoders, settings and seeds in the main grid's languages."""
        cl = self.spec.cross_lingual if self.spec else None
        if not cl or not _same_domain(r) or not self.main_selection(r, lang=False):
            return False
        in_lang = r["lang"] in cl.langs or (with_main and self.main_selection(r))
        setting = (r["base_size"], r["query_size"], r["base_selection"], r["stretch"])
        return (in_lang and setting in {s[:4] for s in self.settings} and r["seed"] in (cl.seeds or self.spec.seeds)
                and r["vision_encoder"] in _pick(cl.vision_encoders, self.spec.vision_encoders)
                and r["text_encoder"] in _pick(cl.text_encoders, self.spec.text_encoders))

    # -- curves and ablation --
    def curve_kinds(self, r: dict) -> list[str]:
        """Which curves a row is a point of: 'base_size', 'query_size', 'ablation' (a main-grid setting can be a
        point of all three)."""
        cv = self.spec.curves if self.spec else None
        if not cv or not _same_domain(r) or not self.main_selection(r):
            return []
        if (r["method"] not in cv.methods or r["seed"] not in cv.seeds
                or r["vision_encoder"] not in _pick(cv.vision_encoders, self.spec.vision_encoders[:1])
                or r["text_encoder"] not in _pick(cv.text_encoders, self.spec.text_encoders[:1])):
            return []
        f = self.first
        kinds = []
        if (r["query_size"], r["base_selection"], r["stretch"]) == (f.query_size, f.base_selection, f.stretch) \
                and r["base_size"] in cv.base_sizes:
            kinds.append("base_size")
        if (r["base_size"], r["base_selection"], r["stretch"]) == (f.base_size, f.base_selection, f.stretch) \
                and r["query_size"] in cv.query_sizes:
            kinds.append("query_size")
        if cv.ablation and (r["base_size"], r["query_size"]) == (f.base_size, f.query_size) \
                and r["base_selection"] in ("random", "kmeans_image"):
            kinds.append("ablation")
        return kinds

    def study(self, r: dict) -> str:
        """One label per row, for the tables that list every row: main, cross-domain, cross-lingual, curves."""
        if self.is_main(r):
            return "main"
        if self.is_cross_domain(r):
            return "cross-domain"
        if self.is_cross_lingual(r):
            return "cross-lingual"
        if self.curve_kinds(r):
            return "curves"
        return "other"
