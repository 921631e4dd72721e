"""The query that gives each long table of the page, shown under it as a ``vlalign query "..."`` line: SQL over
the lake's views with this run's values written in as SQL literals. Only shown, never run by the report (the
report reads its rows through sql/report_*.sql, parameters bound).

A template names its values $like_this (:func:`shown` writes them in); the matching and retrieval templates
average the rows of each seed first and then over the seeds, as the report's tables do
(vlalign.report.rows.over_seeds), a result that two cells hold counted once.
"""

from __future__ import annotations

import re

from vlalign.report.plan import Plan


class Raw(str):
    """A piece of SQL written into a template as it is (a condition, a list of columns), not as a literal."""


MATCHING_ONCE = """SELECT DISTINCT dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder,
  method, base_size, query_size, base_selection, stretch, protocol, seed, accuracy, chance FROM matching
  WHERE run_id = $run_id AND accuracy IS NOT NULL AND $where"""

# a matching table's rows: $keys (columns), mean, min and max over seeds of the seed's mean accuracy, in %
MATCHING = f"""SELECT $keys, count(*) AS seeds, round(100 * avg(a), 1) AS mean_pct, round(100 * min(a), 1) AS min_pct,
  round(100 * max(a), 1) AS max_pct, round(100 * avg(c), 2) AS chance_pct
FROM (SELECT $keys, seed, avg(accuracy) AS a, avg(chance) AS c FROM ({MATCHING_ONCE}) GROUP BY ALL)
GROUP BY ALL ORDER BY $order"""

RETRIEVAL = """SELECT $keys, count(*) AS seeds, round(100 * avg(r1), 1) AS r1_pct, round(100 * avg(r5), 1) AS r5_pct,
  round(100 * avg(r10), 1) AS r10_pct
FROM (SELECT $keys, seed, avg(r1) AS r1, avg(r5) AS r5, avg(r10) AS r10 FROM (
  SELECT DISTINCT dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method, direction,
    base_size, query_size, base_selection, stretch, seed, r1, r5, r10 FROM retrieval
  WHERE run_id = $run_id AND r1 IS NOT NULL AND $where) GROUP BY ALL)
GROUP BY ALL ORDER BY r1_pct DESC"""

CLASSIFICATION = """SELECT label_field, template_set, dataset, vision_encoder, text_encoder, method, count(*) AS seeds,
  round(100 * avg(a), 1) AS mean_pct, round(100 * avg(c), 1) AS chance_pct, round(100 * avg(m), 1) AS majority_pct
FROM (SELECT label_field, template_set, dataset, vision_encoder, text_encoder, method, seed, avg(accuracy) AS a,
        avg(chance) AS c, avg(majority) AS m
      FROM (SELECT DISTINCT dataset, domain, lang, vision_encoder, text_encoder, label_field, template_set, method,
              seed, accuracy, chance, majority FROM classification WHERE run_id = $run_id AND accuracy IS NOT NULL)
      GROUP BY ALL)
GROUP BY ALL ORDER BY label_field, mean_pct DESC"""

CKA_ROWS = """SELECT dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased, n, round(value, 3) AS cka,
  round(shuffled_value, 3) AS shuffled, round(ci_low, 3) AS ci_low, round(ci_high, 3) AS ci_high, seed, note
FROM cka WHERE run_id = $run_id AND coalesce(vision_layer, -1) = -1 AND coalesce(text_layer, -1) = -1 ORDER BY value DESC"""

CONCEPT_BREAKDOWN = """SELECT DISTINCT vision_encoder, text_encoder, mapping, retrieval, property, bin, low, high, n,
  n_missing, round(100 * p_at_1, 1) AS p1_pct, round(100 * p_at_10, 1) AS p10_pct, round(100 * p_at_100, 1) AS p100_pct
FROM concept_breakdown WHERE run_id = $run_id
ORDER BY vision_encoder, text_encoder, mapping, retrieval, property, bin"""


def literal(v) -> str:
    """``v`` as an SQL literal: 'text' (quotes doubled), true/false, NULL, a number, or (a, b, ...) for a list."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return "(" + ", ".join(literal(x) for x in (sorted(v, key=str) if isinstance(v, (set, frozenset)) else v)) + ")"
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def shown(template: str, **values) -> str:
    """``template`` with each $name replaced by ``literal(values[name])``, on one line."""
    sql = re.sub(r"\$(\w+)", lambda m: literal(values[m.group(1)]), template)
    return " ".join(sql.split())


def _in(column: str, values) -> str:
    return f"{column} IN {literal(list(values))}"


def selection(plan: Plan, langs: tuple = ()) -> Raw:
    """The condition that picks the rows of the main grid's data sets, domains and languages (and ``langs``),
    same domain at both ends (vlalign.report.plan.Plan.main_selection)."""
    spec = plan.spec
    if spec is None:
        return Raw("base_domain = query_domain")
    sets = []
    for ds in spec.datasets:
        cond = [f"dataset = {literal(ds.name)}"]
        if ds.domains:
            cond.append(_in("domain", ds.domains))
        if ds.langs:
            cond.append(_in("lang", [*ds.langs, *(lg for lg in langs if lg not in ds.langs)]))
        sets.append("(" + " AND ".join(cond) + ")")
    return Raw(f"base_domain = query_domain AND ({' OR '.join(sets)})")


def _settings(spec) -> list[str]:
    return [_in("base_size", spec.base_size), _in("query_size", spec.query_size),
            _in("base_selection", spec.base_selection), _in("stretch", spec.stretch)]


def main_grid(plan: Plan) -> Raw:
    """The condition that picks the main grid's rows (vlalign.report.plan.Plan.is_main)."""
    spec = plan.spec
    if spec is None:
        return selection(plan)
    return Raw(" AND ".join([selection(plan), *_settings(spec), _in("seed", spec.seeds),
                             _in("vision_encoder", spec.vision_encoders), _in("text_encoder", spec.text_encoders)]))


def cross_lingual(plan: Plan) -> Raw:
    """The rows of the cross-lingual study and of its main-language reference (Plan.is_cross_lingual)."""
    cl, spec = plan.spec.cross_lingual, plan.spec
    return Raw(" AND ".join([selection(plan, tuple(cl.langs)), *_settings(spec), _in("seed", cl.seeds or spec.seeds),
                             _in("vision_encoder", cl.vision_encoders or spec.vision_encoders),
                             _in("text_encoder", cl.text_encoders or spec.text_encoders)]))


def cross_domain(plan: Plan) -> Raw:
    """The cross-domain rows and their same-domain reference (Plan.is_cross_domain, .cross_domain_reference)."""
    cd, spec = plan.spec.cross_domain if plan.spec else None, plan.spec
    if cd is None:
        return Raw("base_domain <> query_domain")
    ends = sorted({dom for pair in plan.cross_domain_routes() for dom in pair})
    ref = " AND ".join([main_grid(plan), _in("domain", ends), _in("seed", cd.seeds or spec.seeds),
                        _in("vision_encoder", cd.vision_encoders or spec.vision_encoders),
                        _in("text_encoder", cd.text_encoders or spec.text_encoders)])
    return Raw(f"(base_domain <> query_domain OR ({ref}))")


def curve_rows(plan: Plan) -> Raw:
    """The rows of the curves and the ablation (Plan.curve_kinds): the curves' pairs, methods and seeds in the main
    grid's selection, at the base sizes (the rest of the setting the spec's first), the query sizes, or the
    ablation's selections and stretches (the first sizes)."""
    cv, spec, f = plan.spec.curves, plan.spec, plan.first
    first = {"base_size": f.base_size, "query_size": f.query_size, "base_selection": f.base_selection,
             "stretch": f.stretch}

    def fixed(*cols: str) -> str:
        return " AND ".join(f"{c} = {literal(first[c])}" for c in cols)

    points = [f"({_in('base_size', cv.base_sizes)} AND {fixed('query_size', 'base_selection', 'stretch')})",
              f"({_in('query_size', cv.query_sizes)} AND {fixed('base_size', 'base_selection', 'stretch')})"]
    if cv.ablation:
        points.append(f"({fixed('base_size', 'query_size')} AND {_in('base_selection', ['random', 'kmeans_image'])})")
    return Raw(" AND ".join([selection(plan), _in("seed", cv.seeds), _in("method", cv.methods),
                             _in("vision_encoder", cv.vision_encoders or spec.vision_encoders[:1]),
                             _in("text_encoder", cv.text_encoders or spec.text_encoders[:1]),
                             "(" + " OR ".join(points) + ")"]))
