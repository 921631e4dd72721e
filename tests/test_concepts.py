"""Tests of vlalign.methods.concepts (concept alignment, Li et al.) and vlalign.datasets.wordprops.

References are written plainly (Python loops over rows and aliases) and compared with the vectorised code on
small data. The planted data (``planted``): sources and aliases are isometric copies of one unit-norm latent
set, so the aliases are an exact rotation of the sources once both sides are reduced to their principal
directions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlalign.datasets import wordprops as wp
from vlalign.methods import concepts as cc

# --------------------------------------------------------------------------------------------------------------
# Plain references
# --------------------------------------------------------------------------------------------------------------


def _cos(a, b):
    na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def ref_nn(src, tgt):
    return [[_cos(s, t) for t in tgt] for s in src]


def ref_csls(src, tgt, k):
    cos = ref_nn(src, tgt)
    m, a = len(src), len(tgt)
    r_t = [sum(sorted(cos[i], reverse=True)[: min(k, a)]) / min(k, a) for i in range(m)]
    r_s = [sum(sorted((cos[i][j] for i in range(m)), reverse=True)[: min(k, m)]) / min(k, m) for j in range(a)]
    return [[2 * cos[i][j] - r_t[i] - r_s[j] for j in range(a)] for i in range(m)]


def ref_hits(scores, alias_concept, query_concept, ks):
    """Sort each row by (-score, alias index); hit at k if any own alias is among the first k."""
    out = {k: [] for k in ks}
    ranks = []
    for i, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        pos = [p for p, j in enumerate(order) if alias_concept[j] == query_concept[i]]
        r = pos[0] if pos else len(row)
        ranks.append(r)
        for k in ks:
            out[k].append(any(alias_concept[j] == query_concept[i] for j in order[:k]))
    return out, ranks


def ref_dispersion(x):
    n = len(x)
    if n == 1:
        return 0.0
    d = [1 - _cos(x[i], x[j]) for i in range(n) for j in range(i + 1, n)]
    return sum(d) / len(d)


def planted(c=200, d1=16, d2=24, aliases=1, noise=0.0, seed=0):
    """Unit-norm latent z (c, r), r = min(d1, d2); sources x = z P1, aliases y = z P2 (+ noise), with P1 (r, d1)
    and P2 (r, d2) having orthonormal rows: y is an exact isometric copy of x (a rotation after PCA to r)."""
    rng = np.random.default_rng(seed)
    r = min(d1, d2)
    z = rng.standard_normal((c, r))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    p1 = np.linalg.qr(rng.standard_normal((d1, r)))[0].T
    p2 = np.linalg.qr(rng.standard_normal((d2, r)))[0].T
    alias_concept = np.repeat(np.arange(c), aliases)
    emb = z[alias_concept] @ p2 + noise * rng.standard_normal((c * aliases, d2))
    return z @ p1, emb, alias_concept


# --------------------------------------------------------------------------------------------------------------
# Scores and ranking against the references
# --------------------------------------------------------------------------------------------------------------


def test_nn_and_csls_scores_match_reference():
    rng = np.random.default_rng(1)
    src, tgt = rng.standard_normal((7, 5)), rng.standard_normal((13, 5))
    np.testing.assert_allclose(cc.retrieval_scores(src, tgt, "nn"), ref_nn(src.tolist(), tgt.tolist()), atol=1e-12)
    for k in (1, 3, 10, 50):  # 10 > m = 7 and 50 > A = 13: K clipped to the set size
        np.testing.assert_allclose(
            cc.retrieval_scores(src, tgt, "csls", csls_k=k), ref_csls(src.tolist(), tgt.tolist(), k), atol=1e-12
        )


def test_hits_match_reference_with_ties():
    rng = np.random.default_rng(2)
    m, a, c = 9, 30, 12
    scores = rng.integers(0, 4, size=(m, a)).astype(float)  # many ties: the index tie-break decides
    alias_concept = np.concatenate([np.arange(c), rng.integers(0, c, a - c)])
    query = rng.integers(0, c, m)
    ks = (1, 2, 5, 10, 30)
    hits, rank = cc.hits_at_k(scores, alias_concept, query, ks)
    ref, ref_rank = ref_hits(scores.tolist(), alias_concept.tolist(), query.tolist(), ks)
    assert rank.tolist() == ref_rank
    for k in ks:
        assert hits[k].tolist() == ref[k]


def test_concept_alignment_matches_plain_pipeline():
    """The whole protocol on small random data against a plain re-implementation (fits reused, ranking and
    P@k by loops), for both retrievals."""
    rng = np.random.default_rng(3)
    c, d1, d2 = 25, 6, 4
    image = rng.standard_normal((c, d1))
    alias_concept = np.concatenate([np.arange(c), rng.integers(0, c, 15)])
    emb = rng.standard_normal((alias_concept.size, d2))
    ks = (1, 3, 10)
    for retrieval in ("nn", "csls"):
        res = cc.concept_alignment(image, emb, alias_concept, retrieval=retrieval, folds=4, seed=5, ks=ks, csls_k=3)
        perm = np.random.default_rng(5).permutation(c)
        unit = [list(v / np.linalg.norm(v)) for v in emb]
        hits = {k: [None] * c for k in ks}
        for f, test in enumerate(np.array_split(perm, 4)):
            train = [i for i in range(c) if i not in set(test.tolist())]
            targets = []
            for i in train:
                rows = [unit[j] for j in range(len(unit)) if alias_concept[j] == i]
                targets.append([sum(col) / len(rows) for col in zip(*rows)])
            mp = cc.procrustes_fit(image[train], np.array(targets))
            src = mp.apply(image[test]).tolist()
            tgt = mp.target(np.array(unit)).tolist()
            scores = ref_nn(src, tgt) if retrieval == "nn" else ref_csls(src, tgt, 3)
            h, _ = ref_hits(scores, alias_concept.tolist(), test.tolist(), ks)
            for k in ks:
                for t, v in zip(test.tolist(), h[k]):
                    hits[k][t] = v
        for k in ks:
            assert res.hits[k].tolist() == hits[k]
            assert res.p_at_k[k] == pytest.approx(sum(hits[k]) / c)
        assert res.n_concepts == c and res.n_aliases == alias_concept.size


def test_concept_targets_mean_of_unit_aliases():
    emb = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    t = cc.concept_targets(emb, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(t, [[0.3, 0.9], [1.0, 0.0]])


# --------------------------------------------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------------------------------------------


def test_procrustes_map_conventions():
    x, emb, _ = planted(c=40, d1=5, d2=5)
    m = cc.procrustes_fit(x, emb)  # equal dims, no dim: no PCA
    assert m.src_basis is None and m.dst_basis is None and m.dim == 5
    np.testing.assert_allclose(m.rotation @ m.rotation.T, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(m.apply(x), m.target(emb), atol=1e-10)  # exact rotation recovered
    m3 = cc.procrustes_fit(x, emb, dim=3)
    assert m3.src_basis.shape == (5, 3) and m3.apply(x).shape == (40, 3)
    np.testing.assert_allclose(m3.target(emb).mean(axis=0), 0, atol=1e-12)  # centred by the training mean
    xd, ed, _ = planted(c=40, d1=6, d2=9)
    md = cc.procrustes_fit(xd, ed)  # dims differ: PCA to k = min(6, 9, 39) = 6
    assert md.dim == 6 and md.dst_basis.shape == (9, 6)


def test_procrustes_agrees_with_baseline_scores():
    from vlalign.methods.baselines import cosine_similarity_matrix, procrustes_scores

    rng = np.random.default_rng(4)
    bx, by = rng.standard_normal((30, 8)), rng.standard_normal((30, 5))
    qx, qy = rng.standard_normal((6, 8)), rng.standard_normal((7, 5))
    m = cc.procrustes_fit(bx, by)
    np.testing.assert_allclose(cosine_similarity_matrix(m.apply(qx), m.target(qy)),
                               procrustes_scores(bx, by, qx, qy), atol=1e-10)


@pytest.mark.parametrize("n,d,k", [(60, 12, 12), (60, 12, 5), (10, 30, 9), (10, 30, 4)])
def test_gram_pca_equals_svd_pca(n, d, k):
    from vlalign.methods.baselines import _pca_basis

    rng = np.random.default_rng(n + d + k)
    z = rng.standard_normal((n, d)) * np.linspace(3, 1, d)  # distinct variances
    z -= z.mean(axis=0)
    np.testing.assert_allclose(cc._pca_basis_gram(z, k), _pca_basis(z, k), atol=1e-8)


def test_random_orthogonal_is_haar_and_seeded():
    x, emb, _ = planted(c=50, d1=7, d2=9)
    a = cc.random_orthogonal_fit(x, emb, seed=3)
    b = cc.random_orthogonal_fit(x, emb, seed=3)
    c = cc.random_orthogonal_fit(x, emb, seed=4)
    np.testing.assert_array_equal(a.rotation, b.rotation)
    assert not np.allclose(a.rotation, c.rotation)
    np.testing.assert_allclose(a.rotation.T @ a.rotation, np.eye(7), atol=1e-12)
    p = cc.procrustes_fit(x, emb)
    np.testing.assert_array_equal(a.src_basis, p.src_basis)  # same centring and PCA
    # Haar: E[trace(R)] = 0 and E[R_11^2] = 1/k
    rs = np.stack([cc.haar_orthogonal(4, s) for s in range(2000)])
    assert abs(np.trace(rs, axis1=1, axis2=2).mean()) < 0.1
    assert (rs[:, 0, 0] ** 2).mean() == pytest.approx(0.25, abs=0.03)


# --------------------------------------------------------------------------------------------------------------
# The planted rotation: Procrustes recovers it, the controls do not
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d1,d2", [(16, 16), (16, 24), (24, 16)])
@pytest.mark.parametrize("retrieval", ["nn", "csls"])
def test_procrustes_recovers_planted_rotation(d1, d2, retrieval):
    x, emb, ac = planted(c=200, d1=d1, d2=d2)
    res = cc.concept_alignment(x, emb, ac, retrieval=retrieval)
    assert res.p_at_k == {1: 1.0, 10: 1.0, 100: 1.0}
    assert (res.rank == 0).all()


def test_procrustes_with_several_noisy_aliases():
    x, emb, ac = planted(c=200, d1=16, d2=24, aliases=3, noise=0.02)
    res = cc.concept_alignment(x, emb, ac)
    assert res.p_at_k[1] >= 0.95 and res.n_aliases == 600


@pytest.mark.parametrize("mapping", ["random_orthogonal", "shuffled_dictionary"])
def test_controls_near_chance(mapping):
    """Chance with one alias per concept among C = 300: P@1 = 1/300, P@10 = 10/300 = 0.033, P@100 = 0.33.
    Under chance the hit counts are Binomial(300, p): P@1 <= 0.04 is > 10 sd above 1/300 (sd 0.0033),
    P@10 <= 0.10 is > 6 sd above 0.033 (sd 0.010), P@100 <= 0.45 is > 4 sd above 0.33 (sd 0.027), while the
    Procrustes map gets 1.0 on the same data. Averaged over 3 seeds (the folds and the random maps differ)."""
    x, emb, ac = planted(c=300, d1=16, d2=24)
    p = {k: np.mean([cc.concept_alignment(x, emb, ac, mapping=mapping, seed=s).p_at_k[k] for s in range(3)])
         for k in (1, 10, 100)}
    assert p[1] <= 0.04 and p[10] <= 0.10 and p[100] <= 0.45, p
    assert cc.concept_alignment(x, emb, ac, seed=1).p_at_k[1] == 1.0


# --------------------------------------------------------------------------------------------------------------
# Folds, determinism, validation
# --------------------------------------------------------------------------------------------------------------


def test_folds_each_concept_tested_once_never_trained_on(monkeypatch):
    x, emb, ac = planted(c=53, d1=6, d2=8)
    calls = []
    real = cc.procrustes_fit

    def spy(src, dst, dim=None):
        calls.append(src.copy())
        return real(src, dst, dim)

    seen_test = []
    real_rank = cc._best_rank

    def spy_rank(scores, alias_concept, query_concept):
        seen_test.append(np.asarray(query_concept).copy())
        return real_rank(scores, alias_concept, query_concept)

    monkeypatch.setattr(cc, "procrustes_fit", spy)
    monkeypatch.setattr(cc, "_best_rank", spy_rank)
    res = cc.concept_alignment(x, emb, ac, folds=5, seed=7)
    assert len(calls) == len(seen_test) == 5
    tested = np.concatenate(seen_test)
    assert sorted(tested.tolist()) == list(range(53))  # every concept tested exactly once
    for f, (train_src, test) in enumerate(zip(calls, seen_test)):
        assert (res.fold[test] == f).all()
        rows = {tuple(r) for r in np.round(train_src, 12)}
        assert len(rows) == 53 - test.size
        assert not any(tuple(r) in rows for r in np.round(x[test], 12))  # never in its own training fold
    assert sorted(np.bincount(res.fold).tolist()) == [10, 10, 11, 11, 11]
    np.testing.assert_array_equal(res.fold, cc.concept_folds(53, 5, 7))


def test_deterministic_by_seed():
    rng = np.random.default_rng(8)
    image, emb = rng.standard_normal((60, 10)), rng.standard_normal((90, 7))
    ac = np.concatenate([np.arange(60), rng.integers(0, 60, 30)])
    for mapping in cc.MAPPINGS:
        a = cc.concept_alignment(image, emb, ac, mapping=mapping, retrieval="csls", seed=2)
        b = cc.concept_alignment(image, emb, ac, mapping=mapping, retrieval="csls", seed=2)
        np.testing.assert_array_equal(a.rank, b.rank)
        np.testing.assert_array_equal(a.fold, b.fold)
    c = cc.concept_alignment(image, emb, ac, seed=3)
    assert not np.array_equal(c.fold, a.fold)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"mapping": "cca"}, "mapping"),
        ({"retrieval": "dot"}, "retrieval"),
        ({"folds": 1}, "folds"),
        ({"folds": 100}, "folds"),
        ({"ks": (0,)}, "ks"),
        ({"csls_k": 0}, "csls_k"),
        ({"seed": -1}, "seed"),
        ({"dim": 100}, "dim"),
    ],
)
def test_bad_options_name_the_argument(kwargs, name):
    x, emb, ac = planted(c=30, d1=4, d2=6)
    with pytest.raises(ValueError, match=name):
        cc.concept_alignment(x, emb, ac, **kwargs)


def test_bad_inputs_name_the_argument():
    x, emb, ac = planted(c=30, d1=4, d2=6)
    with pytest.raises(ValueError, match="alias_concept"):
        cc.concept_alignment(x, emb, ac[:-1] if ac.size > 1 else ac)
    with pytest.raises(ValueError, match="alias_concept"):
        cc.concept_alignment(x, emb, np.where(ac == 3, 4, ac))  # concept 3 has no alias
    with pytest.raises(ValueError, match="alias_concept"):
        cc.concept_alignment(x, emb, ac.astype(float))
    with pytest.raises(ValueError, match="image"):
        cc.concept_alignment(np.full_like(x, np.nan), emb, ac)
    with pytest.raises(ValueError, match="alias_emb"):
        cc.concept_alignment(x, emb[:, :, None], ac)
    with pytest.raises(ValueError, match="src and dst"):
        cc.procrustes_fit(x, emb[:-1])
    with pytest.raises(ValueError, match="x must have"):
        cc.procrustes_fit(x, emb).apply(emb)


def test_fast_enough_at_paper_scale():
    """C = 2000 concepts and A = 10000 aliases (the paper's scale for the concept x alias work), 5 folds, CSLS.
    d1 = 512 instead of 1280 keeps the PCA's eigendecomposition (the dominant, unavoidable cost: ~1-2 s per fold
    at 1280) out of the test's time. One BLAS thread: on a loaded 2-core machine OpenBLAS's two threads
    spin against each other (measured 30-45 s with 2 threads vs 5 s with 1 while other jobs ran). ~5 s; the
    bound is loose."""
    import time

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(9)
    c, a = 2000, 10000
    image = rng.standard_normal((c, 512))
    ac = np.concatenate([np.arange(c), rng.integers(0, c, a - c)])
    emb = rng.standard_normal((a, 384))
    with threadpool_limits(limits=1, user_api="blas"):
        t = time.perf_counter()
        res = cc.concept_alignment(image, emb, ac, retrieval="csls")
        assert time.perf_counter() - t < 60
    assert res.n_aliases == a and set(res.hits) == {1, 10, 100}


# --------------------------------------------------------------------------------------------------------------
# Dispersion and breakdown
# --------------------------------------------------------------------------------------------------------------


def test_dispersion_matches_reference():
    rng = np.random.default_rng(10)
    groups = [rng.standard_normal((n, 5)) for n in (1, 2, 3, 7)]
    groups.append(np.vstack([np.zeros((1, 5)), rng.standard_normal((3, 5))]))  # a zero row: cosine 0
    got = cc.dispersion(groups)
    np.testing.assert_allclose(got, [ref_dispersion(g.tolist()) for g in groups], atol=1e-12)
    assert got[0] == 0.0
    same = np.tile(rng.standard_normal((1, 5)), (4, 1))
    np.testing.assert_allclose(cc.dispersion([same, np.vstack([same[:1], -same[:1]])]), [0.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError, match=r"images_per_concept\[0\]"):
        cc.dispersion([np.zeros((0, 3))])


def ref_breakdown(values, hits, bins):
    finite = sorted(v for v in values if not math.isnan(v))
    edges = [float(np.quantile(finite, q)) for q in np.linspace(0, 1, bins + 1)]
    rows = []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        idx = []
        for i, v in enumerate(values):
            if math.isnan(v):
                continue
            # bin b holds lo <= v < hi, the last also v == hi; a value on an inner edge goes up
            inner = edges[1:-1]
            which = sum(1 for e in inner if v >= e)
            if which == b:
                idx.append(i)
        row = {"bin": b, "low": lo, "high": hi, "n": len(idx), "n_missing": sum(math.isnan(v) for v in values)}
        for k, h in hits.items():
            row[f"p_at_{k}"] = sum(h[i] for i in idx) / len(idx) if idx else float("nan")
        rows.append(row)
    return rows


def test_breakdown_matches_reference():
    rng = np.random.default_rng(11)
    c = 101
    values = rng.integers(0, 6, c).astype(float)  # many ties on the edges
    values[[3, 17, 50]] = np.nan
    hits = {k: rng.random(c) < p for k, p in ((1, 0.2), (10, 0.5), (100, 0.9))}
    for bins in (1, 3, 4):
        got = cc.breakdown(values, hits, bins=bins)
        ref = ref_breakdown(values.tolist(), {k: v.tolist() for k, v in hits.items()}, bins)
        assert len(got) == bins
        for g, r in zip(got, ref):
            assert g.keys() == r.keys()
            for key in r:
                if isinstance(r[key], float) and math.isnan(r[key]):
                    assert math.isnan(g[key])
                else:
                    assert g[key] == pytest.approx(r[key]), key
        assert sum(r["n"] for r in got) == c - 3 and got[0]["n_missing"] == 3


def test_breakdown_accepts_result_and_validates():
    x, emb, ac = planted(c=30, d1=4, d2=6)
    res = cc.concept_alignment(x, emb, ac)
    rows = cc.breakdown(np.arange(30.0), res)
    assert [r["n"] for r in rows] == [10, 10, 10]
    assert {"p_at_1", "p_at_10", "p_at_100"} <= rows[0].keys()
    with pytest.raises(ValueError, match="hits"):
        cc.breakdown(np.arange(29.0), res)
    with pytest.raises(ValueError, match="values"):
        cc.breakdown(np.full(30, np.nan), res)
    with pytest.raises(ValueError, match="bins"):
        cc.breakdown(np.arange(30.0), res, bins=0)


# --------------------------------------------------------------------------------------------------------------
# Word properties
# --------------------------------------------------------------------------------------------------------------


def test_word_frequency():
    wordfreq = pytest.importorskip("wordfreq", reason="wordfreq not installed (requirements/base.txt)")
    f = wp.word_frequency(["the", "face", "grinning face", "qzxjvbnmw", ""])
    assert f[0] == pytest.approx(wordfreq.zipf_frequency("the", "en")) and f[0] > 7
    assert 4 < f[1] < f[0]
    assert f[2] == pytest.approx(wordfreq.zipf_frequency("grinning face", "en")) and 0 < f[2] < f[1]
    assert np.isnan(f[3]) and np.isnan(f[4])  # unknown: NaN by default
    assert wp.word_frequency(["qzxjvbnmw"], unknown=0.0)[0] == 0.0
    with pytest.raises(ValueError, match="phrases"):
        wp.word_frequency("face")


def _fake_wordnet(d):
    header = "  1 This software and database is being provided to you, the LICENSEE, by\n"
    files = {
        "index.noun": ["face n 13 5 @ ~ #p %p + 13 1 05600637", "ice_cream n 1 2 @ ~ 1 0 07615569",
                       "hand n 14 8 @ ~ 14 2 05564590"],
        "index.verb": ["face v 9 2 @ ~ 9 4 02457233"],
        "index.adj": ["grinning a 1 1 & 1 0 01000000"],
        "index.adv": [],
    }
    for name, lines in files.items():
        (d / name).write_text(header + "".join(line + "\n" for line in lines))


def test_polysemy_on_fake_index(tmp_path, monkeypatch):
    _fake_wordnet(tmp_path)
    monkeypatch.setenv(wp.WORDNET_ENV, str(tmp_path))
    assert wp.wordnet_available()
    got = wp.polysemy(["Face", "grinning face", "ice cream", "flag: face.", "hands", "qzx", ""])
    np.testing.assert_array_equal(got[:4], [22, 22, 1, 22])  # noun 13 + verb 9; last word; phrase as one lemma
    assert np.isnan(got[4:]).all()  # no lemmatisation; unknown -> NaN
    monkeypatch.setenv(wp.WORDNET_ENV, str(tmp_path / "absent"))
    assert not wp.wordnet_available() and wp.polysemy(["face"]) is None


@pytest.mark.skipif(not wp.wordnet_available(), reason=f"WordNet index files not found in {wp.wordnet_dir()} "
                    "(apt-get install -y wordnet-base, or set VLALIGN_WORDNET_DIR)")
def test_polysemy_real_wordnet():
    got = wp.polysemy(["face", "ice cream", "grinning face", "dog", "qzxjvbnmw"])
    # WordNet 3.0: face = 13 noun + 9 verb synsets; ice_cream 1 noun; dog 7 noun + 1 verb
    assert got[:4].tolist() == [22, 1, 22, 8]
    assert np.isnan(got[4])
