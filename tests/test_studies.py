"""The paper's studies at the library level: how cross-domain splits are drawn, the protocol's named settings,
which text encoders run in which language, and which cells a spec with every study plans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from vlalign.datalake.store import Lake
from vlalign.datasets.prompts import label_text, prompt_items, prompts_dataset
from vlalign.engine.analysis import Paired, make_split, seeded_order
from vlalign.engine.cells import ClassifyCell, Embeddings, MatchCell, Protocol, english_only_reason, plan_cells
from vlalign.engine.spec import DEFAULT_SPEC, PROTOCOLS, parse_spec
from vlalign.methods.preprocess import select_base, stretch


def _pairs_file(tmp_path, name, ids, caps):
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({"image_id": ids, "caption_ids": [list(c) for c in caps], "n_captions": [len(c) for c in caps],
                             "label": ["a"] * len(ids), "sublabel": ["b"] * len(ids)}), path)
    return str(path)


def _emb(name="e", part="p"):
    return Embeddings(name, f"{name}__mean", part, (), f"digest-{name}-{part}")


def _cell(tmp_path, pairs_path, **kw):
    common = dict(lake=Lake.open(tmp_path), dataset="d", domain="q", lang="en", pairs_path=pairs_path,
                  pairs_digest="x", vision=_emb("v", "q"), text=_emb("t", "en"))
    return MatchCell(**{**common, **kw})


def _paired(ids, caps, seed, d=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(ids), d))
    return Paired(list(ids), [tuple(c) for c in caps], {"label": ["a"] * len(ids)}, x, x @ rng.normal(size=(d, 4)))


def test_same_domain_split_is_the_seeded_order_cut_after_the_queries(tmp_path):
    ids = [f"img{k:03d}" for k in range(60)]
    caps = [(f"cap{k:03d}",) for k in range(60)]
    path = _pairs_file(tmp_path, "p", ids, caps)
    data = _paired(ids, caps, 0)
    cell = _cell(tmp_path, path, base_size=10, query_size=20, base_selection="random", stretch=False, seed=3)
    split = make_split(cell, data)
    order = seeded_order(path, ids, 3)
    assert list(split.query) == order[:20]
    pool = np.asarray(order[20:])
    assert list(split.base) == list(pool[select_base(data.x[pool], data.y[pool], 10, method="random", seed=3)])
    assert np.array_equal(split.x_base, data.x[split.base]) and np.array_equal(split.y_query, data.y[split.query])


def test_cross_domain_base_never_shares_an_image_or_a_caption_with_a_query(tmp_path):
    # the same 50 concepts in two styles: captions shared across domains, images not
    q_ids = [f"twitter/e{k}" for k in range(50)]
    b_ids = [f"google/e{k}" for k in range(50)]
    caps = [(f"en/e{k}",) for k in range(50)]
    qpath, bpath = _pairs_file(tmp_path, "q", q_ids, caps), _pairs_file(tmp_path, "b", b_ids, caps)
    query, base = _paired(q_ids, caps, 1), _paired(b_ids, caps, 2)
    cell = _cell(tmp_path, qpath, base_size=15, query_size=20, base_selection="kmeans_image", stretch=True, seed=0)
    split = make_split(cell, query, base, bpath)
    q_caps = {query.captions[i] for i in split.query}
    assert len(split.query) == 20 and len(split.base) == 15
    assert not q_caps & {base.captions[i] for i in split.base}  # no leak through a shared caption
    # the pool is the base selection's own seeded order without the queries' concepts
    pool = [i for i in seeded_order(bpath, b_ids, 0) if base.captions[i] not in q_caps]
    assert set(split.base) <= set(pool) and len(pool) == 30
    # stretching (scope 'selected'): the chosen base + queries, each side divided by its std over those rows
    sx = stretch(np.vstack([base.x[split.base], query.x[split.query]]))
    assert np.allclose(split.x_base, sx[:15]) and np.allclose(split.x_query, sx[15:])


def test_stretch_scope_pool_divides_by_the_std_of_the_whole_pool_before_selection(tmp_path):
    ids = [f"i{k:02d}" for k in range(40)]
    caps = [(f"c{k:02d}",) for k in range(40)]
    path = _pairs_file(tmp_path, "p", ids, caps)
    data = _paired(ids, caps, 5)
    cell = _cell(tmp_path, path, base_size=8, query_size=12, base_selection="kmeans_image", stretch=True, seed=1,
                 protocol=Protocol(stretch_scope="pool", kmeans_metric="cosine"))
    split = make_split(cell, data)
    order = seeded_order(path, ids, 1)
    everything = np.asarray(order)  # pool + queries: every pair here
    std = data.x[everything].std(axis=0)
    assert np.allclose(split.x_query, data.x[split.query] / std)
    pool = np.asarray(order[12:])
    chosen = select_base(data.x[pool] / std, data.y[pool] / data.y[everything].std(axis=0), 8,
                         method="kmeans_image", seed=1, metric="cosine")
    assert list(split.base) == list(pool[chosen])


def test_protocol_names_follow_the_presets():
    assert Protocol().name == "default"
    paper = PROTOCOLS["paper"]
    assert Protocol(**paper).name == "paper"
    assert Protocol(**{**paper, "kmeans_metric": "euclidean"}).name == "custom"
    assert Protocol(qap_restarts=3).name == "default"  # restarts are not a protocol choice


def test_english_only_encoders_are_skipped_outside_english_with_a_reason():
    assert english_only_reason("minilm-l6", "en") is None
    assert english_only_reason("e5-small", "ja") is None
    why = english_only_reason("minilm-l6", "de")
    assert why.startswith("skipped: text encoder minilm-l6 is English-only") and "'de'" in why
    assert english_only_reason("minilm-l6", "de", declared=("minilm-l6",)) is None
    assert "not known to be multilingual" in english_only_reason("st/all-roberta-large-v1", "fr")
    assert english_only_reason("st/paraphrase-multilingual-mpnet-base-v2", "fr") is None


def test_prompts_are_templates_over_labels():
    items = prompt_items({"label": ["Animals & Nature", "Flags"], "sublabel": ["animal-mammal"]},
                         ["an emoji of {label}", "{label}"])
    rows = items.to_pylist()
    assert len(rows) == 6 and len({r["caption_id"] for r in rows}) == 6
    assert {r["caption"] for r in rows if r["domain"] == "sublabel"} == {"an emoji of animal mammal", "animal mammal"}
    assert label_text("person_fencing-x") == "person fencing x"
    a = prompts_dataset("emoji", {"label": ["b", "a"]}, ["{label}"])
    assert a == prompts_dataset("emoji", {"label": ["a", "b"]}, ["{label}"]) != prompts_dataset("emoji", {"label": ["a"]}, ["{label}"])


def test_a_spec_with_every_study_plans_each_cell_once(tmp_path):
    doc = yaml.safe_load(DEFAULT_SPEC.read_text())
    doc["analyses"].pop("concepts")  # its cells need the concept dictionary's inputs (test_concepts.py plans them)
    spec = parse_spec(doc)
    lake = Lake.open(tmp_path)
    langs = ["en", *spec.cross_lingual.langs]
    pairs = {"emoji": {(d, lg): (f"{d}-{lg}.parquet", f"pd-{d}-{lg}") for d in ("google", "twitter") for lg in langs}}
    emb = {}
    for v in spec.vision_encoders:
        for d in ("google", "twitter"):
            emb[("emoji", v, d)] = _emb(v, d)
    for t in spec.text_encoders:
        for lg in langs:
            emb[("emoji", t, lg)] = _emb(t, lg)
    prompts = {("emoji", t): (_emb(t, "prompts"), "prompts.parquet", "digest") for t in spec.text_encoders}
    cells = plan_cells(spec, lake, pairs, emb, {"emoji": [("google", "en")]}, prompts)
    assert len({c.cell_id for c in cells}) == len(cells)
    kinds = {}
    for c in cells:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    n_pairs, n_seeds = len(spec.vision_encoders) * len(spec.text_encoders), len(spec.seeds)
    cka = spec.cka
    n_measures = (len(cka.kernels) * len(cka.debiased) + len(cka.mutual_knn) + len(cka.cknna) + len(cka.cycle_knn)
                  + len(cka.svcca) + len(cka.rsa))
    assert n_measures == 6  # linear x biased, debiased; mutual kNN, CKNNA, cycle kNN, RSA
    assert kinds["cka"] == n_pairs * n_measures
    assert kinds["classification"] == n_pairs * 2  # label, sublabel; one seed
    match = [c for c in cells if isinstance(c, MatchCell)]
    grid = [c for c in match if c.base is None and c.lang == "en" and c.baselines]
    assert len(grid) == n_pairs * n_seeds
    cross_domain = [c for c in match if c.base is not None]
    assert len(cross_domain) == 2 * 3 and {(c.base.domain, c.domain) for c in cross_domain} == {
        ("google", "twitter"), ("twitter", "google")}
    lingual = [c for c in match if c.lang != "en"]
    n_langs = len(spec.cross_lingual.langs)
    assert len(lingual) == n_langs * 3  # the languages x 3 text encoders (one vision encoder, one seed)
    skipped = [c for c in lingual if c.skip]
    assert {c.text.name for c in skipped} == {"minilm-l6", "wordllama"} and len(skipped) == 2 * n_langs
    curves = [c for c in match if c.base is None and c.lang == "en" and not c.baselines]
    # 5 base sizes + 4 query sizes + 4 ablation points, 3 seeds; the grid's own point (320/500, k-means,
    # stretched) is the grid's cell, so it appears in neither the base-size, query-size nor ablation lines
    n_points = len(spec.curves.base_sizes) + len(spec.curves.query_sizes) + 4  # + the 2 x 2 ablation
    assert len(curves) == (n_points - 3) * len(spec.curves.seeds)
    assert all(isinstance(c, ClassifyCell) for c in cells if c.kind == "classification")


def test_concept_dictionary_keeps_only_aliases_that_name_one_concept():
    from vlalign.datasets.prompts import alias_items, concept_dictionary, members_table
    from vlalign.datasets.readers import read_emoji

    items = read_emoji(langs=["en"]).items
    d = concept_dictionary("emoji", items, ["google", "twitter"])
    owners: dict[str, set] = {}
    for c, a, _ in d.aliases:
        owners.setdefault(a, set()).add(c)
    assert all(len(v) == 1 for v in owners.values())  # "face", "flag", ... name groups, not concepts
    assert "face" not in owners and "grinning face" in owners
    assert set(d.concepts) == {c for c, _, _ in d.aliases}
    members = members_table(d).to_pylist()
    assert {m["domain"] for m in members} == {"google", "twitter"}
    assert all(m["image_id"] == f"{m['domain']}/{m['concept']}" for m in members)
    rows = alias_items(d).to_pylist()
    assert len(rows) == len(d.aliases) and len({r["caption_id"] for r in rows}) == len(rows)
    # label-based data sets (ImageFolder-style): a concept per label, its alias the label read as text
    import pyarrow as pa

    t = pa.table({"image_id": ["a", "b", "c"], "domain": ["d"] * 3, "lang": ["en"] * 3, "caption": ["x"] * 3,
                  "label": ["golden_retriever", "golden_retriever", "tabby-cat"]})
    d2 = concept_dictionary("coco", t, None)
    assert d2.concepts == ["golden_retriever", "tabby-cat"]
    assert [a for _, a, _ in d2.aliases] == ["golden retriever", "tabby cat"]
