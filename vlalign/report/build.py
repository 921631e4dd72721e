"""What a person looks at after a run: a text summary, PNG plots and one self-contained HTML page.

Every query is a file sql/report_*.sql (its leading comment says what it returns and its parameters), run over
the lake with its parameters bound ($run_id, $dataset), never pasted into the SQL text. The fetched rows are
split into the run's studies with the run's own spec (``runs.spec``): the main grid (same domain, the data
sets' own domains and languages, the settings grid), cross-domain, cross-lingual, the curves and the stretch x
selection ablation, and classification. Means, minima and maxima over seeds are taken here, in Python: for a
group of rows, the rows of each seed are averaged first (over data sets, settings, pairs, whatever the group
spans), then the seed means are summarised.

    summary(lake, run_id)       the text printed at the end of a sweep and by `vlalign report`
    plot_run(lake, run_id)      the PNGs, each only when its data exists
    correlations(lake, run_id)  CKA vs matching accuracy over the encoder pairs (Pearson, Spearman)
    write_report(lake, run_id)  the PNGs and report.html, one self-contained page
"""

from __future__ import annotations

import json
import math
import re
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from vlalign.lake.catalog import load_sql, query
from vlalign.lake.store import Lake

NOT_IN_SPEC = "not in this run's spec"
NO_ROWS = "in this run's spec, but the lake holds no results for it (yet)"


def _rows(lake: Lake, name: str, **params: str) -> list[dict]:
    """The rows of sql/<name>.sql run over ``lake`` with ``params`` bound to its $names."""
    return query(lake, load_sql(name), params).to_pylist()


# ---------------------------------------------------------------------------------------------------------------
# A run's rows, and which study each belongs to
# ---------------------------------------------------------------------------------------------------------------


def measure_name(kernel: str, debiased: bool | None) -> str:
    """A CKA measure's label: the kernel, with ' (debiased)' for the debiased-HSIC estimator."""
    return f"{kernel} (debiased)" if debiased else kernel


def _measure_file(kernel: str, debiased: bool | None) -> str:
    return f"cka_{re.sub(r'[^A-Za-z0-9_.-]+', '_', kernel)}{'_debiased' if debiased else ''}.png"


def pair_name(r: dict) -> str:
    return f"{r['vision_encoder']} x {r['text_encoder']}"


def route(r: dict) -> str:
    """'<base domain>-><query domain>' of a matching or retrieval row (rows from before the columns existed:
    the row's domain at both ends)."""
    return f"{r.get('base_domain') or r['domain']}->{r.get('query_domain') or r['domain']}"


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


@dataclass
class RunData:
    """Everything the report shows about one run, fetched once."""

    lake: Lake
    run_id: str
    record: dict | None
    spec: object | None  # vlalign.engine.spec.SweepSpec
    spec_problem: str | None
    cka_summary: list[dict]
    cka_grid: list[dict]
    cka: list[dict]
    matching: list[dict]
    retrieval: list[dict]
    classification: list[dict]
    rejects: dict[str, list[dict]]
    run_cells: list[dict]
    concepts: list[dict] = field(default_factory=list)
    concept_breakdown: list[dict] = field(default_factory=list)
    plan: Plan = field(init=False)

    def __post_init__(self) -> None:
        self.plan = Plan(self.spec)

    @property
    def main(self) -> list[dict]:
        return [r for r in self.matching if self.plan.is_main(r)]

    @property
    def measures(self) -> list[tuple[str, bool]]:
        return list(dict.fromkeys((r["kernel"], bool(r["debiased"])) for r in self.cka_grid))


def load_run(lake: Lake, run_id: str) -> RunData:
    """Fetch every row the report needs (one query per sql/report_*.sql file) and parse the run's spec."""
    record = (_rows(lake, "report_run", run_id=run_id) or [None])[0]
    spec, problem = None, None
    if record is None:
        problem = "no run record for this run id"
    elif record.get("spec"):
        from vlalign.engine.spec import parse_spec

        try:
            doc = record["spec"] if isinstance(record["spec"], dict) else json.loads(record["spec"])
            spec = parse_spec(doc)
        except (ValueError, TypeError) as e:
            problem = f"the run's spec cannot be read ({str(e).splitlines()[0]})"
    else:
        problem = "the run record has no spec"
    datasets = [r["dataset"] for r in _rows(lake, "report_datasets", run_id=run_id)]
    return RunData(
        lake=lake, run_id=run_id, record=record, spec=spec, spec_problem=problem,
        cka_summary=_rows(lake, "report_cka_summary", run_id=run_id),
        cka_grid=_rows(lake, "report_cka_grid", run_id=run_id),
        cka=_rows(lake, "report_cka_rows", run_id=run_id),
        matching=_rows(lake, "report_matching_rows", run_id=run_id),
        retrieval=_rows(lake, "report_retrieval_rows", run_id=run_id),
        classification=_rows(lake, "report_classification_rows", run_id=run_id),
        rejects={ds: _rows(lake, "report_rejects", dataset=ds) for ds in datasets},
        run_cells=_rows(lake, "report_run_cells", run_id=run_id),
        concepts=_rows(lake, "report_concepts_rows", run_id=run_id),
        concept_breakdown=_rows(lake, "report_concept_breakdown_rows", run_id=run_id),
    )


# ---------------------------------------------------------------------------------------------------------------
# Means over seeds
# ---------------------------------------------------------------------------------------------------------------


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def over_seeds(rows: Iterable[dict], key: Callable[[dict], object], value: str = "accuracy",
               extra: tuple[str, ...] = ("chance",)) -> dict[object, dict]:
    """{key(row): stats}: the rows of each seed averaged first (rows whose ``value`` is NULL left out), then
    over the seeds: mean, min, max, std (population), seeds (how many), and the mean of each ``extra`` column
    over the rows used. Groups with no value at all are absent."""
    per: dict[object, dict[int, list[dict]]] = {}
    for r in rows:
        if r.get(value) is None or (isinstance(r[value], float) and math.isnan(r[value])):
            continue
        per.setdefault(key(r), {}).setdefault(r["seed"], []).append(r)
    out = {}
    for k, seeds in per.items():
        xs = [_mean(x[value] for x in rs) for _, rs in sorted(seeds.items(), key=lambda kv: (kv[0] is None, kv[0]))]
        used = [x for rs in seeds.values() for x in rs]
        st = {"mean": _mean(xs), "min": min(xs), "max": max(xs), "std": statistics.pstdev(xs), "seeds": len(xs)}
        for c in extra:
            vals = [x[c] for x in used if x.get(c) is not None]
            st[c] = _mean(vals) if vals else None
        out[k] = st
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _spread(st: dict) -> str:
    return f"{_pct(st['mean'])} [{100 * st['min']:.1f}-{100 * st['max']:.1f}]" if st["seeds"] > 1 else _pct(st["mean"])


def skip_reason(note: str | None) -> str:
    """The short reason of a 'skipped: text encoder X is <reason>, so ...' note (else the note)."""
    m = re.search(r"is (.+?), so", note or "")
    return m.group(1) if m else (note or "")


# ---------------------------------------------------------------------------------------------------------------
# The text summary
# ---------------------------------------------------------------------------------------------------------------


def summary(lake: Lake, run_id: str, top: int = 3) -> str:
    """What each study of ``run_id`` found, a line or a few each: CKA per measure, main-grid matching per
    method (best pairs, mean over seeds [min-max]), retrieval, cross-domain, cross-lingual, classification,
    curves, and the rejects of each data set."""
    return summary_of(load_run(lake, run_id), top)


def summary_of(d: RunData, top: int = 3) -> str:
    lines = [f"run {d.run_id}"]
    if d.spec_problem and (d.record is not None or d.matching or d.cka):
        lines.append(f"  (the studies cannot be told apart: {d.spec_problem}; every same-domain row counts as the main grid)")
    width = max((len(measure_name(r["kernel"], r["debiased"])) for r in d.cka_summary), default=0)
    for r in d.cka_summary:
        lines.append(
            f"  CKA {measure_name(r['kernel'], r['debiased']):>{width}}: {r['n']} pairs, mean {r['mean_value']:.3f} "
            f"(shuffled {_f3(r['mean_shuffled'])}), true > shuffled in {r['beats_shuffled']}/{r['n']}; "
            f"best {r['best_pair']} = {r['best_value']:.3f}")
    lines += _matching_lines(d, top)
    lines += _retrieval_lines(d)
    lines += _cross_domain_lines(d)
    lines += _cross_lingual_lines(d)
    lines += _classification_lines(d)
    lines += _curve_lines(d)
    lines += _concept_lines(d)
    for ds, rej in d.rejects.items():
        total = sum(r["n"] for r in rej)
        detail = ", ".join(f"{r['stage']} {r['n']}" for r in rej)
        lines.append(f"  rejects in {ds}: {total}" + (f" ({detail}; vlalign query \"select * from rejects\")" if total else ""))
    return "\n".join(lines)


def _f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _matching_lines(d: RunData, top: int) -> list[str]:
    stats = over_seeds(d.main, lambda r: (r["method"], pair_name(r)))
    methods = sorted({m for m, _ in stats})
    width = max((len(m) for m in methods), default=0)
    lines = []
    for method in methods:
        rs = sorted(((p, st) for (m, p), st in stats.items() if m == method), key=lambda x: (-x[1]["mean"], x[0]))
        best = ", ".join(f"{p} {_spread(st)}" for p, st in rs[:top])
        chance = rs[0][1]["chance"]
        ratio = f"{rs[0][1]['mean'] / chance:.0f}x chance" if chance else "chance n/a"
        seeds = max(st["seeds"] for _, st in rs)
        over = f"; mean [min-max] over {seeds} seeds" if seeds > 1 else ""
        chance_txt = "n/a" if chance is None else f"{100 * chance:.2f}%"
        lines.append(f"  matching {method:>{width}}: best {best}  (chance {chance_txt}, best = {ratio}{over})")
    return lines


def _retrieval_lines(d: RunData) -> list[str]:
    main = [r for r in d.retrieval if d.plan.is_main(r)]
    stats = over_seeds(main, lambda r: (r["method"], r["direction"]), value="r1", extra=())
    best = over_seeds(main, lambda r: (r["method"], pair_name(r)), value="r1", extra=())
    lines = []
    for method in sorted({m for m, _ in stats}):
        dirs = ", ".join(f"{direction.replace('_to_', '->')} {_pct(st['mean'])}"
                         for (m, direction), st in sorted(stats.items()) if m == method)
        top_pair = max(((p, st) for (m, p), st in best.items() if m == method), key=lambda x: x[1]["mean"])
        lines.append(f"  retrieval {method}: R@1 {dirs} (mean over pairs; best {top_pair[0]} {_pct(top_pair[1]['mean'])})")
    return lines


def _cross_domain_lines(d: RunData) -> list[str]:
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    if not cross:
        return [f"  cross-domain: {'no results' if d.plan.cross_domain_routes() else NOT_IN_SPEC}"] if d.spec else []
    stats = over_seeds(cross, lambda r: (r["base_domain"], r["query_domain"], r["method"]))
    ref = over_seeds([r for r in d.matching if d.plan.cross_domain_reference(r)], lambda r: (r["domain"], r["method"]))
    lines = []
    for b, q in sorted({(b, q) for b, q, _ in stats}):
        accs = ", ".join(f"{m} {_pct(st['mean'])}" for (bb, qq, m), st in sorted(stats.items()) if (bb, qq) == (b, q))
        same = []
        for dom in dict.fromkeys((b, q)):
            xs = ", ".join(f"{m} {_pct(st['mean'])}" for (dd, m), st in sorted(ref.items()) if dd == dom)
            if xs:
                same.append(f"{dom}->{dom}: {xs}")
        lines.append(f"  cross-domain {b}->{q}: {accs}" + (f"  (same domain {'; '.join(same)})" if same else ""))
    return lines


def _cross_lingual_lines(d: RunData) -> list[str]:
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [f"  cross-lingual: {NOT_IN_SPEC}"] if d.spec else []
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main_langs = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    stats = over_seeds(rows, lambda r: (r["lang"], r["text_encoder"], r["method"]))
    lines = []
    for lang in cl.langs:
        mine = [r for r in rows if r["lang"] == lang]
        if not mine:
            lines.append(f"  cross-lingual {lang}: no results")
            continue
        parts = []
        for t in sorted({r["text_encoder"] for r in mine if r["accuracy"] is not None}):
            cand = [(m, st) for (lg, tt, m), st in stats.items() if lg == lang and tt == t]
            m, st = max(cand, key=lambda x: x[1]["mean"])
            ref = "; ".join(f"{ml} {_pct(stats[(ml, t, m)]['mean'])}" for ml in main_langs if (ml, t, m) in stats)
            parts.append(f"{t} best {m} {_pct(st['mean'])}" + (f" ({ref})" if ref else ""))
        skipped = [r for r in mine if r["accuracy"] is None and r.get("note")]
        why = {}
        for r in skipped:
            why.setdefault(r["text_encoder"], skip_reason(r["note"]))
        skip = (f"; skipped {len(why)} text encoder(s), {len(skipped)} rows: "
                + ", ".join(f"{t} ({w})" for t, w in sorted(why.items()))) if why else ""
        lines.append(f"  cross-lingual {lang}: " + (", ".join(parts) or "no encoder computed") + skip)
    return lines


def _classification_lines(d: RunData) -> list[str]:
    if not d.classification:
        return [f"  classification: {NOT_IN_SPEC if not (d.spec and d.spec.classification) else 'no results'}"] if d.spec else []
    lines = []
    for lf in sorted({r["label_field"] for r in d.classification}):
        rs = [r for r in d.classification if r["label_field"] == lf]
        by_method = over_seeds(rs, lambda r: r["method"], extra=("chance", "majority", "n_classes"))
        if not by_method:
            lines.append(f"  classification {lf}: no accuracy (see notes)")
            continue
        m, st = max(by_method.items(), key=lambda x: x[1]["mean"])
        by_pair = over_seeds([r for r in rs if r["method"] == m], pair_name)
        p, pst = max(by_pair.items(), key=lambda x: x[1]["mean"])
        ncls = f" ({st['n_classes']:.0f} classes)" if st.get("n_classes") else ""
        lines.append(f"  classification {lf}{ncls}: best method {m} {_pct(st['mean'])} (mean over pairs and seeds; "
                     f"best pair {p} {_pct(pst['mean'])}) vs chance {_pct(st['chance'])}, majority {_pct(st['majority'])}")
    return lines


def _concept_lines(d: RunData) -> list[str]:
    """One line per (vision, text) pair: P@1/10/100 of Procrustes by NN and CSLS, and the baselines' best P@10."""
    out = []
    pairs = dict.fromkeys((r["vision_encoder"], r["text_encoder"]) for r in d.concepts)
    for v, t in pairs:
        rs = [r for r in d.concepts if (r["vision_encoder"], r["text_encoder"]) == (v, t) and r["p_at_1"] is not None]
        main = [f"{r['retrieval']} P@1/10/100 {_pct(r['p_at_1'])}/{_pct(r['p_at_10'])}/{_pct(r['p_at_100'])}"
                for r in rs if r["mapping"] == "procrustes"]
        base = [r["p_at_10"] for r in rs if r["mapping"] != "procrustes"]
        n = rs[0]["n_concepts"] if rs else 0
        out.append(f"  concepts {v} x {t} ({n} concepts): procrustes " + ", ".join(main)
                   + (f"; baselines P@10 at most {_pct(max(base))}" if base else ""))
    return out


def _plot_concepts(d: RunData, out: Path, written: list[str]) -> None:
    """P@10 of Procrustes against each concept property's bins, one panel per property, a line per pair x retrieval."""
    rows = [r for r in d.concept_breakdown if r["mapping"] == "procrustes" and r["p_at_10"] is not None]
    props = list(dict.fromkeys(r["property"] for r in rows))
    if not props:
        return
    fig, axes = _figure(4.2 * len(props), 3.4, ncols=len(props))
    for ax, prop in zip(axes, props):
        sub = [r for r in rows if r["property"] == prop]
        for key in dict.fromkeys((r["vision_encoder"], r["text_encoder"], r["retrieval"]) for r in sub):
            rs = sorted((r for r in sub if (r["vision_encoder"], r["text_encoder"], r["retrieval"]) == key),
                        key=lambda r: r["bin"])
            ax.plot([f"{r['low']:.2g}-{r['high']:.2g}" for r in rs], [100 * r["p_at_10"] for r in rs], marker="o",
                    label=f"{key[0]} x {key[1]} ({key[2]})")
        ax.set_title(f"P@10 by {prop.replace('_', ' ')} (bins)", fontsize=9)
        ax.set_xlabel(prop.replace("_", " "))
        ax.set_ylabel("P@10 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    _save(fig, out / "concepts.png", written)


def _curve_lines(d: RunData) -> list[str]:
    cv = d.spec.curves if d.spec else None
    if not cv:
        return [f"  curves: {NOT_IN_SPEC}"] if d.spec else []
    pts = curve_points(d)
    if not pts:
        return ["  curves: no results"]
    parts = []
    for kind, axis in (("base_size", "base"), ("query_size", "query")):
        st = {k: v for k, v in pts.items() if k[0] == kind}
        if not st:
            continue
        xs = sorted({k[2] for k in st})
        methods = sorted({k[1] for k in st})
        parts.append(f"{axis} {xs[0]}->{xs[-1]}: " + ", ".join(
            f"{m} {_pct(st[(kind, m, xs[0])]['mean']) if (kind, m, xs[0]) in st else 'n/a'}->"
            f"{_pct(st[(kind, m, xs[-1])]['mean']) if (kind, m, xs[-1]) in st else 'n/a'}" for m in methods))
    abl = {k: v for k, v in pts.items() if k[0] == "ablation"}
    if abl:
        (_, m, (sel, stretch)), st = max(abl.items(), key=lambda x: x[1]["mean"])
        worst = min(abl.items(), key=lambda x: x[1]["mean"])
        parts.append(f"ablation best {m} {sel}{'+stretch' if stretch else ''} {_pct(st['mean'])}, worst "
                     f"{worst[0][1]} {worst[0][2][0]}{'+stretch' if worst[0][2][1] else ''} {_pct(worst[1]['mean'])}")
    pairs = sorted({pair_name(r) for r in d.matching if d.plan.curve_kinds(r)})
    return [f"  curves ({', '.join(pairs)}): " + "; ".join(parts)]


def curve_points(d: RunData) -> dict[tuple, dict]:
    """{(kind, method, x): stats over seeds} for kind base_size (x = base size), query_size (x = query size) and
    ablation (x = (base_selection, stretch)); the curve's encoder pairs averaged within each seed."""
    out = {}
    for kind, x in (("base_size", lambda r: r["base_size"]), ("query_size", lambda r: r["query_size"]),
                    ("ablation", lambda r: (r["base_selection"], r["stretch"]))):
        rows = [r for r in d.matching if kind in d.plan.curve_kinds(r)]
        for (m, xv), st in over_seeds(rows, lambda r, x=x: (r["method"], x(r))).items():
            out[(kind, m, xv)] = st
    return out


# ---------------------------------------------------------------------------------------------------------------
# CKA vs matching over the encoder pairs
# ---------------------------------------------------------------------------------------------------------------


def _correlation_points(d: RunData) -> list[dict]:
    """Per (measure, method): the encoder pairs with both a CKA value (mean over the run's CKA rows of the pair)
    and a main-grid matching accuracy (mean over seeds), and the correlations between them."""
    from scipy import stats as sst

    acc = over_seeds(d.main, lambda r: (r["method"], pair_name(r)))
    methods = sorted({m for m, _ in acc})
    out = []
    for kernel, debiased in d.measures:
        cka = {pair_name(r): r["v"] for r in d.cka_grid
               if (r["kernel"], bool(r["debiased"])) == (kernel, debiased) and r["v"] is not None and not math.isnan(r["v"])}
        for method in methods:
            pairs = sorted(p for p in cka if (method, p) in acc)
            xs = [cka[p] for p in pairs]
            ys = [acc[(method, p)]["mean"] for p in pairs]
            row = dict(measure=measure_name(kernel, debiased), method=method, n_pairs=len(pairs), pearson_r=None,
                       pearson_p=None, spearman_rho=None, spearman_p=None)
            if len(pairs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pr, sr = sst.pearsonr(xs, ys), sst.spearmanr(xs, ys)
                row.update(pearson_r=_num(pr.statistic), pearson_p=_num(pr.pvalue),
                           spearman_rho=_num(sr.statistic), spearman_p=_num(sr.pvalue))
            out.append({**row, "pairs": pairs, "x": xs, "y": ys, "y_stats": [acc[(method, p)] for p in pairs],
                        "kernel": kernel, "debiased": debiased})
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


CORRELATION_KEYS = ("measure", "method", "n_pairs", "pearson_r", "pearson_p", "spearman_rho", "spearman_p")


def correlations(lake: Lake, run_id: str) -> list[dict]:
    """For every CKA measure (kernel and estimator, mutual kNN included) and matching method of the main grid:
    the Pearson and Spearman correlations, over the encoder pairs, between the pair's CKA value and its
    main-grid matching accuracy (mean over seeds). Fewer than 3 pairs (or constant values): None."""
    return correlations_of(load_run(lake, run_id))


def correlations_of(d: RunData) -> list[dict]:
    return [{k: c[k] for k in CORRELATION_KEYS} for c in _correlation_points(d)]


def _corr_text(c: dict) -> str:
    if c["n_pairs"] < 3:
        return f"{c['n_pairs']} pair{'s' if c['n_pairs'] != 1 else ''}: too few for a correlation"
    if c["pearson_r"] is None:
        return f"{c['n_pairs']} pairs: constant values, no correlation"
    return (f"r={c['pearson_r']:.2f} (p={c['pearson_p']:.2g}), rho={c['spearman_rho']:.2f} (p={c['spearman_p']:.2g}), "
            f"n={c['n_pairs']}")


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------

DPI = 110


def _figure(w: float, h: float, ncols: int = 1, nrows: int = 1):
    from matplotlib.figure import Figure  # the object API: Agg for PNG, no pyplot state

    fig = Figure(figsize=(w, h), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _save(fig, path: Path, written: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    written.append(str(path))


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _grouped_bars(ax, groups: list, series: list, stats: dict, labels: list[str] | None = None) -> None:
    """Bars of stats[(group, series)]['mean'] (in %), error bars min..max over seeds."""
    import numpy as np

    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for k, (s, color) in enumerate(zip(series, _colors(n))):
        vals, lo, hi = [], [], []
        for g in groups:
            st = stats.get((g, s))
            if st is None:
                vals.append(np.nan), lo.append(0), hi.append(0)
            else:
                vals.append(100 * st["mean"]), lo.append(100 * (st["mean"] - st["min"])), hi.append(100 * (st["max"] - st["mean"]))
        ax.bar(x + (k - (n - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=2, label=str(s), color=color,
               error_kw={"elinewidth": 0.8})
    labels = labels or [str(g) for g in groups]
    long = max((len(line) for t in labels for line in t.splitlines()), default=0) > 12 and len(groups) > 2
    ax.set_xticks(x, labels, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)


def _legend(ax) -> None:
    """The legend outside the axes, right of them: it never hides a bar."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _plot_cka(d: RunData, out: Path, written: list[str]) -> dict[tuple, str]:
    import numpy as np

    files = {}
    for kernel, debiased in d.measures:
        rs = [r for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)]
        if not any(r["v"] is not None for r in rs):
            continue
        vis = sorted({r["vision_encoder"] for r in rs})
        txt = sorted({r["text_encoder"] for r in rs})
        grid = np.full((len(vis), len(txt)), np.nan)
        cell = {}
        for r in rs:
            i, j = vis.index(r["vision_encoder"]), txt.index(r["text_encoder"])
            grid[i, j] = np.nan if r["v"] is None else r["v"]
            cell[(i, j)] = r
        fig, (ax,) = _figure(2.2 + 1.5 * len(txt), 1.5 + 0.75 * len(vis))
        top = max(0.01, float(np.nanmax(grid)))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top, aspect="auto")
        ax.set_xticks(range(len(txt)), txt, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(vis)), vis, fontsize=8)
        for (i, j), r in cell.items():
            if r["v"] is None:
                ax.text(j, i, "n/a", ha="center", va="center", color="k", fontsize=8)
                continue
            text = f"{r['v']:.3f}"
            if r["ci_low"] is not None and r["ci_high"] is not None:
                text += f"\n[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            ax.text(j, i, text, ha="center", va="center", color="k" if r["v"] > 0.6 * top else "w", fontsize=8)
        shuffled = [r["s"] for r in rs if r["s"] is not None]
        sh = f"shuffled mean {_mean(shuffled):.3f}" if shuffled else "no shuffled baseline"
        ax.set_title(f"{measure_name(kernel, debiased)} - {sh}\nrun {d.run_id}", fontsize=9)
        fig.colorbar(im, ax=ax)
        path = out / _measure_file(kernel, debiased)
        _save(fig, path, written)
        files[(kernel, debiased)] = str(path)
    return files


def _plot_matching(d: RunData, out: Path, written: list[str]) -> None:
    stats = over_seeds(d.main, lambda r: (pair_name(r), r["method"]))
    if not stats:
        return
    pairs = sorted({p for p, _ in stats})
    methods = sorted({m for _, m in stats})
    fig, (ax,) = _figure(1.6 + max(6.0, 0.35 * len(pairs) * len(methods) + 2), 4.2)
    _grouped_bars(ax, pairs, methods, stats)
    chance = _mean(st["chance"] for st in stats.values() if st["chance"] is not None) if any(
        st["chance"] is not None for st in stats.values()) else None
    if chance is not None:
        ax.axhline(100 * chance, color="k", ls="--", lw=1, label="chance")
    ax.set_title(f"Matching accuracy, main grid - run {d.run_id}\n(mean over seeds, error bars min-max over seeds)",
                 fontsize=9)
    _legend(ax)
    _save(fig, out / "matching.png", written)


def _plot_curves(d: RunData, out: Path, written: list[str]) -> None:
    pts = curve_points(d)
    kinds = [k for k in ("base_size", "query_size") if any(p[0] == k for p in pts)]
    if kinds:
        chance = over_seeds([r for r in d.matching if d.plan.curve_kinds(r)],
                            lambda r: (r["base_size"], r["query_size"]))
        fig, axes = _figure(5.0 * len(kinds), 3.8, ncols=len(kinds))
        f = d.plan.first
        for ax, kind in zip(axes, kinds):
            methods = sorted({p[1] for p in pts if p[0] == kind})
            for m, color in zip(methods, _colors(len(methods))):
                xs = sorted(p[2] for p in pts if p[0] == kind and p[1] == m)
                st = [pts[(kind, m, x)] for x in xs]
                ax.plot(xs, [100 * s["mean"] for s in st], marker="o", color=color, label=m)
                ax.fill_between(xs, [100 * s["min"] for s in st], [100 * s["max"] for s in st], color=color, alpha=0.2)
            xs = sorted({p[2] for p in pts if p[0] == kind})
            ch = [chance.get((x, f.query_size) if kind == "base_size" else (f.base_size, x), {}).get("chance") for x in xs]
            if all(c is not None for c in ch):
                ax.plot(xs, [100 * c for c in ch], color="k", ls="--", lw=1, label="chance")
            ax.set_xscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            fixed = f"query size {f.query_size}" if kind == "base_size" else f"base size {f.base_size}"
            ax.set_xlabel(kind.replace("_", " "))
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"accuracy vs {kind.replace('_', ' ')} ({fixed})\nband: min-max over seeds", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        _save(fig, out / "curves.png", written)
    abl = {(p[2], p[1]): st for p, st in pts.items() if p[0] == "ablation"}
    if abl:
        groups = sorted({g for g, _ in abl}, key=lambda g: (g[0], g[1]))
        methods = sorted({m for _, m in abl})
        fig, (ax,) = _figure(1.6 + max(6.0, 1.2 * len(groups) * len(methods) / 2 + 2), 4.0)
        _grouped_bars(ax, groups, methods, abl, labels=[f"{s}\n{'stretch' if st else 'no stretch'}" for s, st in groups])
        ax.set_title(f"Ablation: base selection x stretch (base {d.plan.first.base_size}, query "
                     f"{d.plan.first.query_size})\nerror bars min-max over seeds", fontsize=9)
        _legend(ax)
        _save(fig, out / "ablation.png", written)


def _scatter_method(points: list[dict]) -> str | None:
    methods = sorted({c["method"] for c in points})
    if not methods:
        return None
    if "qap" in methods:
        return "qap"
    return max(methods, key=lambda m: _mean(y for c in points if c["method"] == m for y in c["y"]) if any(
        c["y"] for c in points if c["method"] == m) else -1)


def _plot_scatter(d: RunData, out: Path, written: list[str], points: list[dict]) -> None:
    method = _scatter_method(points)
    chosen = [c for c in points if c["method"] == method]
    if not chosen or not any(c["n_pairs"] for c in chosen):
        return
    fig, axes = _figure(4.2 * len(chosen), 4.0, ncols=len(chosen))
    for ax, c in zip(axes, chosen):
        xs, ys = c["x"], [100 * y for y in c["y"]]
        lo = [100 * (s["mean"] - s["min"]) for s in c["y_stats"]]
        hi = [100 * (s["max"] - s["mean"]) for s in c["y_stats"]]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=2, color="tab:blue")
        for x, y, p in zip(xs, ys, c["pairs"]):
            ax.annotate(p, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.margins(x=0.3, y=0.15)
        ax.set_xlabel(c["measure"] if c["measure"].startswith("mutual") else f"CKA {c['measure']}")
        ax.set_ylabel(f"{method} accuracy (%)")
        ax.set_title(f"{c['measure']} vs {method}\n{_corr_text(c)}", fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, out / "scatter.png", written)


def _cross_lingual_data(d: RunData):
    """(rows of the study and its main-language reference, langs in order, the pairs computed in some study
    language, stats {(lang, method): ...} over those pairs)."""
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [], [], [], {}
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    langs = main + [lg for lg in cl.langs if any(r["lang"] == lg for r in rows)]
    computed = sorted({pair_name(r) for r in rows if r["lang"] in cl.langs and r["accuracy"] is not None})
    stats = over_seeds([r for r in rows if pair_name(r) in computed], lambda r: (r["lang"], r["method"]))
    return rows, langs, computed, stats


def _plot_cross_lingual(d: RunData, out: Path, written: list[str]) -> None:
    rows, langs, computed, stats = _cross_lingual_data(d)
    if not stats:
        return
    methods = sorted({m for _, m in stats})
    main = set(langs) - set(d.spec.cross_lingual.langs)
    fig, (ax,) = _figure(1.6 + max(6.0, 0.5 * len(langs) * len(methods) + 2), 4.0)
    _grouped_bars(ax, langs, methods, stats, labels=[f"{lg} (main)" if lg in main else lg for lg in langs])
    ax.set_title(f"Cross-lingual matching per caption language\n{', '.join(computed)}; error bars min-max over seeds",
                 fontsize=9)
    _legend(ax)
    _save(fig, out / "cross_lingual.png", written)


def _cross_domain_data(d: RunData):
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    ref = [r for r in d.matching if d.plan.cross_domain_reference(r)]
    stats = over_seeds(cross, lambda r: (route(r), r["method"]))
    stats.update(over_seeds(ref, lambda r: (f"{r['domain']}->{r['domain']}", r["method"])))
    routes = []
    for b, q in d.plan.cross_domain_routes() or sorted({(r["base_domain"], r["query_domain"]) for r in cross}):
        for label in (f"{b}->{b}", f"{q}->{q}", f"{b}->{q}"):
            if label not in routes and any(k[0] == label for k in stats):
                routes.append(label)
    return cross, ref, routes, stats


def _plot_cross_domain(d: RunData, out: Path, written: list[str]) -> None:
    cross, _, routes, stats = _cross_domain_data(d)
    if not cross or not stats:
        return
    methods = sorted({m for _, m in stats})
    fig, (ax,) = _figure(1.6 + max(6.0, 0.5 * len(routes) * len(methods) + 2), 4.0)
    _grouped_bars(ax, routes, methods, stats,
                  labels=[f"{r}\n(same domain)" if r.split("->")[0] == r.split("->")[1] else r for r in routes])
    ax.set_title("Cross-domain matching: base domain -> query domain\nmean over pairs; error bars min-max over seeds",
                 fontsize=9)
    _legend(ax)
    _save(fig, out / "cross_domain.png", written)


def _plot_classification(d: RunData, out: Path, written: list[str]) -> None:
    fields = sorted({r["label_field"] for r in d.classification if r["accuracy"] is not None})
    if not fields:
        return
    pairs = sorted({pair_name(r) for r in d.classification})
    methods = sorted({r["method"] for r in d.classification})
    fig, axes = _figure(1.6 + max(5.0, 0.35 * len(pairs) * len(methods) + 2.5), 3.6 * len(fields), nrows=len(fields))
    for ax, lf in zip(axes, fields):
        rs = [r for r in d.classification if r["label_field"] == lf]
        stats = over_seeds(rs, lambda r: (pair_name(r), r["method"]), extra=("chance", "majority"))
        _grouped_bars(ax, pairs, methods, stats)
        for col, style, label in (("chance", "--", "chance"), ("majority", ":", "majority class")):
            vals = [r[col] for r in rs if r.get(col) is not None]
            if vals:
                ax.axhline(100 * _mean(vals), color="k", ls=style, lw=1, label=label)
        ax.set_title(f"Zero-shot classification: {lf} (error bars min-max over seeds)", fontsize=9)
        _legend(ax)
    _save(fig, out / "classification.png", written)


def _out_dir(lake: Lake, run_id: str, out_dir: str | Path | None) -> Path:
    """``out_dir``, or <lake>/reports/run=<id>/; for an object-store lake, a local folder keyed by the lake
    (:meth:`Lake.local_dir`), copied into the lake by :func:`build_report`."""
    if out_dir:
        out = Path(out_dir)
    elif getattr(lake, "is_local", True):
        out = Path(lake.root) / "reports" / f"run={run_id}"
    else:
        out = Path(lake.local_dir("reports")) / f"run={run_id}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _copy_to_lake(lake: Lake, run_id: str, paths: list) -> None:
    """The report's files, into <lake>/reports/run=<id>/ of an object-store lake (one PUT each)."""
    for p in paths:
        lake.write_bytes(lake.path("reports", f"run={run_id}", Path(p).name), Path(p).read_bytes())


def plot_run(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> list[str]:
    """PNG plots of a run, each only when its data exists: a CKA heat map per measure (cka_<kernel>[_debiased]
    .png), main-grid matching bars (matching.png), curves.png and ablation.png, the CKA vs matching scatter
    (scatter.png), cross_lingual.png, cross_domain.png and classification.png. Default folder:
    <lake>/reports/run=<run_id>/. Returns the paths written."""
    return plots_of(load_run(lake, run_id), _out_dir(lake, run_id, out_dir))


def plots_of(d: RunData, out: Path, points: list[dict] | None = None) -> list[str]:
    written: list[str] = []
    _plot_cka(d, out, written)
    _plot_matching(d, out, written)
    _plot_curves(d, out, written)
    _plot_scatter(d, out, written, _correlation_points(d) if points is None else points)
    _plot_cross_lingual(d, out, written)
    _plot_cross_domain(d, out, written)
    _plot_classification(d, out, written)
    _plot_concepts(d, out, written)
    return written


# ---------------------------------------------------------------------------------------------------------------
# The HTML page
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    path: Path  # report.html
    plots: list[str]
    summary: str


def write_report(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> Path:
    """Write the PNGs (as plot_run) and ONE self-contained page, report.html, to ``out_dir`` (default
    <lake>/reports/run=<run_id>/). Returns the page's absolute path."""
    return build_report(lake, run_id, out_dir).path


def build_report(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> Report:
    """write_report, also returning the PNG paths and the summary text (the rows are fetched once)."""
    from vlalign.report.html import write_page

    d = load_run(lake, run_id)
    out = _out_dir(lake, run_id, out_dir).resolve()
    points, plots = _cached_figures(d, out)
    text = summary_of(d)
    sections = _sections(d, plots, points, text)
    path = write_page(out / "report.html", f"vlalign report: {run_id}", sections, meta=_meta(d))
    if not out_dir and not getattr(lake, "is_local", True):
        _copy_to_lake(lake, run_id, [*plots, path])
    return Report(path=Path(path).resolve(), plots=plots, summary=text)


FIGURES_CACHE = "figures.json"


def _cached_figures(d: RunData, out: Path) -> tuple[list[dict], list[str]]:
    """(correlation points, PNG paths): reused from an earlier report in ``out`` when the run's result rows and
    the report's code are the same (a rerun that computed nothing redraws nothing), else drawn now."""
    import importlib.util
    import json

    from vlalign.lake.digest import digest_json

    code = [open(importlib.util.find_spec(m).origin, "rb").read().hex() for m in ("vlalign.report.build", "vlalign.report.html")]
    rows = [d.cka_summary, d.cka_grid, d.cka, d.matching, d.retrieval, d.classification, d.concepts,
            d.concept_breakdown, d.spec.source if d.spec is not None else None]
    def canon(v):  # floats to 12 digits: SQL aggregates may differ in the last bits from one query to the next
        return f"{v:.12g}" if isinstance(v, float) else v

    key = digest_json([code, [[{k: canon(v) for k, v in r.items() if k != "seconds"} for r in t]
                              if isinstance(t, list) else t for t in rows]])
    cache = out / FIGURES_CACHE
    try:
        got = json.loads(cache.read_text())
        if got["key"] == key and all((out / name).is_file() for name in got["plots"]):
            return got["points"], [str(out / name) for name in got["plots"]]
    except (OSError, ValueError, KeyError):
        pass
    points = _correlation_points(d)
    plots = plots_of(d, out, points)
    out.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "points": points, "plots": [Path(p).name for p in plots]}, default=float))
    tmp.replace(cache)
    return points, plots


def _meta(d: RunData) -> dict:
    rec = d.record or {}
    spec = d.spec
    protocol = None
    if spec is not None:
        protocol = spec.protocol + " (" + ", ".join(f"{k}={v}" for k, v in spec.protocol_settings.items()) + ")"
    else:
        protocols = sorted({r["protocol"] for r in d.matching if r.get("protocol")})
        protocol = ", ".join(protocols) or None
    cells = None
    if rec:
        cells = f"{rec.get('cells_total')} total, {rec.get('cells_done')} done, {rec.get('cells_computed')} computed by this run"
    local = getattr(d.lake, "is_local", True)
    return {"run id": d.run_id, "lake": str(Path(d.lake.root).resolve()) if local else d.lake.root,
            "spec name": spec.name if spec else None, "protocol": protocol, "status": rec.get("status"),
            "started": _ts(rec.get("started_at")), "finished": _ts(rec.get("finished_at")), "cells": cells}


def _ts(x) -> str | None:
    return None if x is None else str(x)


def _figure_item(plots: list[str], name: str, title: str, caption: str = ""):
    from vlalign.report.html import Figure

    for p in plots:
        if Path(p).name == name:
            return Figure(title, p, caption)
    return None


def _missing(d: RunData, present_in_spec: bool) -> str:
    if d.spec is None:
        return f"The run's spec is not available ({d.spec_problem}), and the lake holds no results for this."
    return NO_ROWS if present_in_spec else NOT_IN_SPEC


def _setting_cols(r: dict) -> tuple:
    return (r["base_size"], r["query_size"], r["base_selection"], r["stretch"])


SAME_COLUMNS = ("dataset", "domain", "lang", "domains", "base", "query", "selection", "stretch", "templates", "seeds")


def _table(title: str, columns: list[str], rows: list[tuple], note: str = ""):
    """A Table without the columns of SAME_COLUMNS that hold one value in every row (two rows or more): that
    value goes to the note instead, so that the table stays narrow."""
    from vlalign.report.html import Table

    rows = [tuple(r) for r in rows]
    drop = [j for j, c in enumerate(columns) if c in SAME_COLUMNS and len(rows) > 1 and len({r[j] for r in rows}) == 1]
    if drop:
        same = ", ".join(f"{columns[j]} {_cell_text(rows[0][j])}" for j in drop)
        note = f"Every row: {same}." + (f" {note}" if note else "")
        keep = [j for j in range(len(columns)) if j not in drop]
        columns = [columns[j] for j in keep]
        rows = [tuple(r[j] for j in keep) for r in rows]
    return Table(title, columns, rows, note=note)


def _cell_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "NULL" if v is None else str(v)


def _direction(x: str) -> str:
    return x.replace("_to_", "->")


def _sections(d: RunData, plots: list[str], points: list[dict], text: str) -> list:
    from vlalign.report.html import Section, Table

    spec = d.spec
    sections = []

    # -- Summary --
    lines = [line.strip() for line in text.splitlines()[1:]]
    items: list = [Table("Summary", ["study", "found"], [tuple(x.strip() for x in line.split(": ", 1)) if ": " in line
                                                        else (line, "") for line in lines],
                         note="The text that `vlalign report` and the end of a sweep print.")]
    if d.spec_problem:
        items.insert(0, f"Note: {d.spec_problem}; rows are assigned to studies as well as can be done without it.")
    sections.append(Section("Summary", items, intro=f"Run {d.run_id}: what each study found."))

    # -- Alignment --
    items = []
    for kernel, debiased in d.measures:
        fig = _figure_item(plots, _measure_file(kernel, debiased), f"CKA {measure_name(kernel, debiased)}",
                           "mean over the run's CKA rows of each pair; [95% bootstrap interval] where computed")
        if fig:
            items.append(fig)
    if d.cka_summary:
        items.append(Table("CKA per measure", ["measure", "rows", "mean", "mean shuffled", "true > shuffled", "best pair",
                                               "best value"],
                           [(measure_name(r["kernel"], r["debiased"]), r["n"], r["mean_value"], r["mean_shuffled"],
                             r["beats_shuffled"], r["best_pair"], r["best_value"]) for r in d.cka_summary]))
    if d.cka:
        items.append(_table("Every CKA row of the run", ["dataset", "domain", "lang", "pair", "measure", "n", "value",
                                                         "shuffled", "ci_low", "ci_high", "seed", "note"],
                            [(r["dataset"], r["domain"], r["lang"], pair_name(r), measure_name(r["kernel"], r["debiased"]),
                              r["n"], r["value"], r["shuffled_value"], r["ci_low"], r["ci_high"], r["seed"], r["note"])
                             for r in d.cka]))
    else:
        items.append(_missing(d, bool(spec and spec.cka)))
    sections.append(Section("Alignment", items, intro="CKA (linear/RBF kernels, biased or debiased HSIC) and mutual "
                            "k-nearest-neighbour alignment of every vision x text encoder pair, with the shuffled-pairing "
                            "baseline."))

    # -- Matching --
    items = []
    fig = _figure_item(plots, "matching.png", "Matching accuracy (main grid)",
                       "mean over seeds, error bars min-max over seeds, dashed: chance")
    if fig:
        items.append(fig)
    main = d.main
    if main:
        stats = over_seeds(main, lambda r: (r["dataset"], r["domain"], r["lang"], pair_name(r), r["method"],
                                            *_setting_cols(r)))
        items.append(_table("Main-grid matching accuracy over seeds",
                            ["dataset", "domain", "lang", "pair", "method", "base", "query", "selection", "stretch",
                             "seeds", "mean", "min", "max", "std", "chance"],
                            [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["std"], st["chance"])
                             for k, st in sorted(stats.items(), key=lambda kv: _sort_key(kv[0]))]))
        notes = [r for r in main if r["accuracy"] is None]
        if notes:
            items.append(Table("Main-grid rows without an accuracy", ["pair", "method", "seed", "note"],
                               [(pair_name(r), r["method"], r["seed"], r["note"]) for r in notes]))
    else:
        items.append(_missing(d, bool(spec and spec.has_matching)))
    if d.retrieval:
        rstats = {}
        for col in ("r1", "r5", "r10"):
            for k, st in over_seeds(d.retrieval, lambda r: (d.plan.study(r), r["dataset"], r["lang"],
                                                           route(r), pair_name(r),
                                                           r["method"], r["direction"], *_setting_cols(r)),
                                    value=col, extra=()).items():
                rstats.setdefault(k, {})[col] = st
        items.append(_table("Retrieval recall at 1/5/10 (every retrieval result of the run, mean over seeds)",
                            ["study", "dataset", "lang", "domains", "pair", "method", "direction", "base", "query",
                             "selection", "stretch", "seeds", "R@1", "R@1 min", "R@1 max", "R@5", "R@10"],
                            [(*k[:6], _direction(k[6]), *k[7:], s["r1"]["seeds"], s["r1"]["mean"], s["r1"]["min"],
                              s["r1"]["max"], s.get("r5", {}).get("mean"), s.get("r10", {}).get("mean"))
                             for k, s in sorted(rstats.items(), key=lambda kv: _sort_key(kv[0])) if "r1" in s]))
        skipped: dict[tuple, list] = {}
        for r in d.retrieval:
            if r["r1"] is None:
                skipped.setdefault((d.plan.study(r), r["lang"], pair_name(r), r["method"]), [0, r["note"]])[0] += 1
        if skipped:
            items.append(_table("Retrieval results without a recall", ["study", "lang", "pair", "method", "rows", "note"],
                                [(*k, n, note) for k, (n, note) in sorted(skipped.items())]))
    other = [r for r in d.matching if d.plan.study(r) == "other"]
    if other:
        stats = over_seeds(other, lambda r: (r["dataset"], r["domain"], r["lang"], route(r),
                                             pair_name(r), r["method"], *_setting_cols(r)))
        items.append(_table("Other matching rows of the run (in no study of the spec)",
                            ["dataset", "domain", "lang", "domains", "pair", "method", "base", "query", "selection",
                             "stretch", "seeds", "mean", "min", "max", "chance"],
                            [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                             for k, st in sorted(stats.items(), key=lambda kv: _sort_key(kv[0]))]))
    sections.append(Section("Matching", items, intro="Training-free matching of held-out queries, given a base of "
                            "known pairs: the main grid (the data sets' own domains and languages, the spec's settings)."))

    # -- Curves --
    items = []
    for name, title, cap in (("curves.png", "Accuracy vs base size and vs query size",
                              "mean over seeds, band min-max over seeds, dashed: chance"),
                             ("ablation.png", "Ablation: stretch x base selection", "error bars min-max over seeds")):
        fig = _figure_item(plots, name, title, cap)
        if fig:
            items.append(fig)
    pts = curve_points(d)
    if pts:
        items.append(Table("Curve and ablation points", ["curve", "method", "x", "seeds", "mean", "min", "max", "chance"],
                           [(k[0], k[1], _xlabel(k[2]), st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                            for k, st in sorted(pts.items(), key=lambda kv: _sort_key(kv[0]))],
                           note="x: the base size, the query size, or base selection + stretch; a point that is also a "
                                "main-grid setting is the main grid's row."))
    else:
        items.append(_missing(d, bool(spec and spec.curves)))
    pairs = sorted({pair_name(r) for r in d.matching if d.plan.curve_kinds(r)})
    sections.append(Section("Curves", items, intro=("Matching accuracy as the base and the query set grow, and the "
                                                   "stretch x selection ablation" + (f" ({', '.join(pairs)})." if pairs else "."))))

    # -- Cross-pair analysis --
    items = []
    fig = _figure_item(plots, "scatter.png", "CKA vs matching accuracy over the encoder pairs",
                       f"one panel per measure; y: {_scatter_method(points)} accuracy, mean over seeds (bars min-max)")
    if fig:
        items.append(fig)
    if points:
        items.append(Table("Correlation of CKA with main-grid matching accuracy over the encoder pairs",
                           ["measure", "method", "pairs", "Pearson r", "p", "Spearman rho", "p (rho)"],
                           [tuple(c[k] for k in CORRELATION_KEYS) for c in points],
                           note="Fewer than 3 pairs, or constant values: no correlation (empty cells)."))
        measures = list(dict.fromkeys(c["measure"] for c in points))
        methods = list(dict.fromkeys(c["method"] for c in points))
        all_pairs = sorted({p for c in points for p in c["pairs"]})
        val = {(c["measure"], p): x for c in points for p, x in zip(c["pairs"], c["x"])}
        acc = {(c["method"], p): y for c in points for p, y in zip(c["pairs"], c["y"])}
        items.append(Table("The values correlated, per encoder pair",
                           ["pair", *[f"CKA {m}" for m in measures], *[f"{m} accuracy" for m in methods]],
                           [(p, *[val.get((m, p)) for m in measures], *[acc.get((m, p)) for m in methods])
                            for p in all_pairs]))
    else:
        items.append("Needs CKA and main-grid matching results: " + _missing(d, bool(spec and spec.cka and spec.has_matching)))
    sections.append(Section("Cross-pair analysis", items, intro="Do encoder pairs that are more aligned (CKA) also "
                            "match better?"))

    # -- Cross-lingual --
    items = []
    fig = _figure_item(plots, "cross_lingual.png", "Accuracy per caption language",
                       "mean over the encoder pairs computed in the study's languages and seeds; error bars min-max over seeds")
    if fig:
        items.append(fig)
    rows, langs, computed, _ = _cross_lingual_data(d)
    if rows:
        stats = over_seeds(rows, lambda r: (r["lang"], pair_name(r), r["method"]))
        notes = {}
        for r in rows:
            if r["accuracy"] is None and r.get("note"):
                notes.setdefault((r["lang"], pair_name(r), r["method"]), [0, r["note"]])[0] += 1
        keys = sorted(set(stats) | set(notes), key=lambda k: (langs.index(k[0]) if k[0] in langs else 99, k[1:]))
        main_langs = set(langs) - set(spec.cross_lingual.langs)
        items.append(_table("Matching accuracy per language, pair and method",
                            ["lang", "pair", "method", "seeds", "mean", "min", "max", "chance", "note"],
                            [(f"{k[0]} (main)" if k[0] in main_langs else k[0], k[1], k[2],
                              stats[k]["seeds"] if k in stats else 0,
                              *((stats[k][c] for c in ("mean", "min", "max", "chance")) if k in stats else (None,) * 4),
                              f"skipped ({notes[k][0]} rows): {skip_reason(notes[k][1])}" if k in notes else None)
                             for k in keys],
                            note=(f"A skipped row's note in full: {next(iter(notes.values()))[1]}" if notes else "")))
    else:
        items.append(_missing(d, bool(spec and spec.cross_lingual)))
    sections.append(Section("Cross-lingual", items, intro="Matching with the captions in other languages (the main "
                            "language next to them); English-only text encoders are skipped, with the reason."))

    # -- Cross-domain --
    items = []
    fig = _figure_item(plots, "cross_domain.png", "Cross-domain vs same-domain matching",
                       "base domain -> query domain; mean over pairs, error bars min-max over seeds")
    if fig:
        items.append(fig)
    cross, ref, routes, _ = _cross_domain_data(d)
    if cross:
        stats = over_seeds(cross, lambda r: (route(r), r["lang"], pair_name(r), r["method"]))
        stats.update(over_seeds(ref, lambda r: (f"{r['domain']}->{r['domain']}", r["lang"], pair_name(r), r["method"])))
        items.append(_table("Matching accuracy per domain route, pair and method",
                            ["route", "lang", "pair", "method", "seeds", "mean", "min", "max", "chance"],
                            [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                             for k, st in sorted(stats.items(), key=lambda kv: (
                                 routes.index(kv[0][0]) if kv[0][0] in routes else 99, kv[0][1:]))],
                            note="A same-domain route (d->d) is the main grid's result for that domain."))
    else:
        items.append(_missing(d, bool(spec and spec.cross_domain)))
    sections.append(Section("Cross-domain", items, intro="Matching with the base pairs from one visual domain and the "
                            "queries from another, next to the same-domain result."))

    # -- Classification --
    items = []
    fig = _figure_item(plots, "classification.png", "Zero-shot classification",
                       "mean over seeds, error bars min-max over seeds; dashed: chance, dotted: majority class")
    if fig:
        items.append(fig)
    if d.classification:
        stats = over_seeds(d.classification, lambda r: (r["label_field"], r["template_set"], r["dataset"], pair_name(r),
                                                        r["method"]), extra=("chance", "majority", "n_classes", "n"))
        items.append(_table("Classification accuracy over seeds",
                            ["label field", "templates", "dataset", "pair", "method", "classes", "n", "seeds", "mean",
                             "min", "max", "chance", "majority"],
                            [(*k, _int(st["n_classes"]), _int(st["n"]), st["seeds"], st["mean"], st["min"], st["max"],
                              st["chance"], st["majority"])
                             for k, st in sorted(stats.items(), key=lambda kv: _sort_key(kv[0]))]))
        notes = [r for r in d.classification if r["accuracy"] is None]
        if notes:
            items.append(Table("Classification rows without an accuracy", ["label field", "pair", "method", "seed", "note"],
                               [(r["label_field"], pair_name(r), r["method"], r["seed"], r["note"]) for r in notes]))
    else:
        items.append(_missing(d, bool(spec and spec.classification)))
    sections.append(Section("Classification", items, intro="Zero-shot classification of the images by the emoji "
                            "category (label) or subcategory (sublabel), through class prompts."))

    # -- Concepts --
    items = []
    if d.concepts:
        fig = _figure_item(plots, "concepts.png", "Concept alignment by concept property")
        if fig is not None:
            items.append(fig)
        items.append(Table("Concept alignment (k-fold; hit: any alias of the concept in the top k)",
                           ["pair", "mapping", "retrieval", "seed", "concepts", "aliases", "P@1", "P@10", "P@100", "note"],
                           [(pair_name(r), r["mapping"], r["retrieval"], r["seed"], r["n_concepts"], r["n_aliases"],
                             r["p_at_1"], r["p_at_10"], r["p_at_100"], r["note"]) for r in d.concepts]))
        items.append(Table("P@k by concept property (quantile bins)",
                           ["pair", "mapping", "retrieval", "property", "bin", "low", "high", "n", "missing", "P@1",
                            "P@10", "P@100", "note"],
                           [(pair_name(r), r["mapping"], r["retrieval"], r["property"], r["bin"], r["low"], r["high"],
                             r["n"], r["n_missing"], r["p_at_1"], r["p_at_10"], r["p_at_100"], r["note"])
                            for r in d.concept_breakdown]))
    else:
        items.append(_missing(d, bool(spec and spec.concepts)))
    sections.append(Section("Concepts", items, intro="Concept alignment (Li et al.): each concept's mean image "
                            "embedding mapped by Procrustes onto its aliases' text embeddings, k-fold over concepts; "
                            "random-orthogonal and shuffled-dictionary maps are the baselines."))

    # -- Runs / Data --
    items = []
    rej = [(ds, r["stage"], r["n"]) for ds, rs in d.rejects.items() for r in rs]
    totals = [(ds, "all stages", sum(r["n"] for r in rs)) for ds, rs in d.rejects.items()]
    items.append(Table("Rejected items per data set", ["dataset", "stage", "items"], rej + totals,
                       note="vlalign query \"select * from rejects\" lists them with the reason."))
    counts = {"cka": len(d.cka), "matching": len(d.matching), "retrieval": len(d.retrieval),
              "classification": len(d.classification), "concepts": len(d.concepts),
              "concept_breakdown": len(d.concept_breakdown)}
    cells = {r["table_name"]: r["cells"] for r in d.run_cells}
    items.append(Table("Result tables of the run", ["table", "cells", "rows shown"],
                       [(t, cells.get(t, 0), n) for t, n in counts.items()],
                       note="rows shown: distinct results (a result that two cells hold is counted once)."))
    rec = d.record or {}
    items.append(Table("Run record", ["field", "value"],
                       [(k, None if rec.get(k) is None else str(rec.get(k)))
                        for k in ("run_id", "status", "flow", "started_at", "finished_at", "cells_total", "cells_done",
                                  "cells_computed", "error", "spec")]))
    sections.append(Section("Runs and data", items))
    return sections


def _int(x) -> int | None:
    return None if x is None else int(round(x))


def _xlabel(x) -> object:
    if isinstance(x, tuple):
        return f"{x[0]}{' + stretch' if x[1] else ''}"
    return x


def _sort_key(k: tuple) -> tuple:
    return tuple((0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v)) for v in k)
