"""Feature-pair attributions with integrated Jacobians (vlalign.methods.attribution: the math; the towers in
vlalign.encoders.differentiable, the explanation of items in vlalign.engine.explain).

Toy models with closed-form attributions run always; the real-encoder tests (mobilenetv2 x minilm-l6,
offline weights) skip when those encoders are not installed. Kept small: ~30 s on 2 otherwise idle CPU cores."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import emoji_names, emoji_pngs  # noqa: E402

from vlalign.datalake.schemas import ATTRIBUTIONS_SCHEMA  # noqa: E402
from vlalign.encoders import differentiable as D  # noqa: E402
from vlalign.engine import explain as E  # noqa: E402
from vlalign.methods import attribution as X  # noqa: E402
from vlalign.report.explain_figure import plot_explanation  # noqa: E402


# ------------------------------------------------------------------ toy models (closed form)
def _toy(seed=0, c=3, h=2, w=3, t=4, d=5, k=6):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(1, c, h, w, generator=g, dtype=torch.float64)
    b = torch.randn(1, t, d, generator=g, dtype=torch.float64)
    mf = torch.randn(k, c * h * w, generator=g, dtype=torch.float64)
    mg = torch.randn(k, t * d, generator=g, dtype=torch.float64)
    bf = torch.randn(k, generator=g, dtype=torch.float64)
    bg = torch.randn(k, generator=g, dtype=torch.float64)
    masks = torch.zeros(t, t, d, dtype=torch.float64)
    masks[torch.arange(t), torch.arange(t)] = 1.0
    return a, b, mf, mg, bf, bg, masks


def _group_channels(z):
    return z.sum(dim=1).reshape(z.shape[0], -1)


def _closed_form(da, db, mf, mg):
    """A[p, t] = sum_{i in p, j in t} da_i (Mf^T Mg)_ij db_j for a (C, H, W) and b (T, D) layout."""
    c, h, w = da.shape[1:]
    t, d = db.shape[1:]
    full = (da.reshape(-1)[:, None] * (mf.T @ mg) * db.reshape(-1)[None, :]).numpy()  # (C*H*W, T*D)
    return full.reshape(c, h * w, t, d).sum(axis=(0, 3))


@pytest.mark.parametrize("steps,rule", [(1, "midpoint"), (3, "gauss"), (5, "graded")])
@pytest.mark.parametrize("zero_ref", [True, False])
def test_bilinear_toy_matches_closed_form(steps, rule, zero_ref):
    a, b, mf, mg, bf, bg, masks = _toy()
    r_a = torch.zeros_like(a) if zero_ref else 0.3 * torch.ones_like(a)
    r_b = torch.zeros_like(b) if zero_ref else -0.2 * torch.ones_like(b)

    def f(x):
        return x.reshape(x.shape[0], -1) @ mf.T + bf

    def g(y):
        return y.reshape(y.shape[0], -1) @ mg.T + bg

    attr, (fa, fr, gb, gr) = X.integrated_pair_attributions(f, g, a, r_a, b, r_b, _group_channels, masks,
                                                           steps=steps, rule=rule, chunk=5)
    expect = _closed_form(a - r_a, b - r_b, mf, mg)
    assert attr.shape == (6, 4)
    np.testing.assert_allclose(attr, expect, rtol=1e-10, atol=1e-10)
    target = fa @ gb - fr @ gb - fa @ gr + fr @ gr
    assert abs(attr.sum() - target) < 1e-9 * max(1.0, abs(target))


def test_quadratic_toy_is_exact_with_midpoint():
    # f(x) = Mf (x * x): J_f is linear along the path, so the midpoint rule integrates it exactly at any step count
    a, b, mf, mg, bf, bg, masks = _toy(seed=1)
    r_a, r_b = torch.zeros_like(a), torch.zeros_like(b)

    def f(x):
        return (x * x).reshape(x.shape[0], -1) @ mf.T

    def g(y):
        return y.reshape(y.shape[0], -1) @ mg.T

    for steps in (1, 2, 5):
        attr, (fa, fr, gb, gr) = X.integrated_pair_attributions(f, g, a, r_a, b, r_b, _group_channels, masks,
                                                               steps=steps, rule="midpoint")
        # closed form: integral of J_f(alpha a) a dalpha = Mf (a * a), split per input feature
        expect = _closed_form(a * a, b, mf, mg)
        np.testing.assert_allclose(attr, expect, rtol=1e-10, atol=1e-10)


def test_nonlinear_toy_converges():
    a, b, mf, mg, bf, bg, masks = _toy(seed=2)
    r_a, r_b = torch.zeros_like(a), torch.zeros_like(b)

    def f(x):
        return torch.tanh(x.reshape(x.shape[0], -1) @ mf.T)

    def g(y):
        return torch.nn.functional.gelu(y.reshape(y.shape[0], -1) @ mg.T)

    errs = {}
    for rule in X.RULES:
        for steps in (2, 8, 32):
            attr, (fa, fr, gb, gr) = X.integrated_pair_attributions(f, g, a, r_a, b, r_b, _group_channels,
                                                                   masks, steps=steps, rule=rule)
            errs[rule, steps] = abs(attr.sum() - (fa - fr) @ (gb - gr))
    assert errs["midpoint", 2] > errs["midpoint", 8] > errs["midpoint", 32]
    assert errs["midpoint", 32] < 1e-2 * abs((fa - fr) @ (gb - gr))
    assert errs["gauss", 8] < errs["midpoint", 8]


def test_quadrature_rules():
    for rule in X.RULES:
        x, w = X.quadrature(7, rule)
        assert np.isclose(w.sum(), 1.0) and (x > 0).all() and (x < 1).all()
        assert np.isclose((w * x).sum(), 0.5, atol=0 if rule != "graded" else 1e-2)  # exact for linear integrands
    x, w = X.quadrature(8, "graded")
    np.testing.assert_allclose(x, ((np.arange(8) + 0.5) / 8) ** 2)  # dense near the reference
    x, w = X.quadrature(7, "gauss")
    assert np.isclose((w * x**13).sum(), 1 / 14)  # Gauss-Legendre: exact up to degree 2N - 1
    with pytest.raises(ValueError):
        X.quadrature(0)
    with pytest.raises(ValueError):
        X.quadrature(4, "trapezoid")


def test_table_and_top_pairs_on_a_synthetic_explanation(tmp_path):
    attr = np.zeros((6, 3))
    attr[4, 1] = 2.0  # row 1, col 1 of a 2x3 grid, token "cat"
    attr[0, 2] = -1.0
    attr[5, 0] = 5.0  # a special token: left out by default
    ex = X.Explanation(attributions=attr, grid=(2, 3), tokens=["[CLS]", "cat", "[SEP]"], score=0.5, s_ra_b=0.1,
                       s_a_rb=0.1, s_ra_rb=0.0, residual=attr.sum() - 0.3, seconds=0.0, steps=4, rule="midpoint",
                       vision="v", text="t", vision_layer=4, text_layer=0, caption="cat",
                       image=np.full((24, 36, 3), 200, np.uint8))
    assert X.top_pairs(ex, 1) == [(1, 1, "cat", 2.0)]
    assert X.top_pairs(ex, 1, special=True) == [(1, 2, "[CLS]", 5.0)]
    assert X.top_pairs(ex, 1, by="negative", special=True) == [(0, 0, "[SEP]", -1.0)]
    tab = E.explanation_table(ex, "google/en/1f431")
    assert tab.schema == ATTRIBUTIONS_SCHEMA and tab.num_rows == 18
    row = [r for r in tab.to_pylist() if r["attribution"] == 2.0][0]
    assert (row["token"], row["token_index"], row["row"], row["col"]) == ("cat", 1, 1, 1)
    assert ex.token_maps()[1, 1, 1] == 2.0
    png = plot_explanation(ex, None, tmp_path / "x.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ real encoders
def _have(*names):
    from vlalign.encoders import get_encoder, is_available

    return all(is_available(get_encoder(n))[0] for n in names)


real = pytest.mark.skipif(not _have("mobilenetv2", "minilm-l6"), reason="mobilenetv2 / minilm-l6 not installed")


@pytest.fixture(scope="module")
def cat():
    png = dict(emoji_pngs(2000))["1f431"]
    return png, emoji_names()["1f431"]


@pytest.fixture(scope="module")
def base_pairs():
    from vlalign.encoders import load_encoder

    pngs = emoji_pngs(48)
    names = emoji_names()
    v = load_encoder("mobilenetv2", device="cpu", threads=2).encode([p for _, p in pngs])
    t = load_encoder("minilm-l6", device="cpu", threads=2).encode([names[e] for e, _ in pngs])
    return v, t


@real
def test_towers_reproduce_the_encoders(cat):
    from vlalign.encoders import load_encoder

    png, caption = cat
    venc = load_encoder("mobilenetv2", device="cpu", threads=2)
    head, tail, li = D.vision_parts(venc, None)
    with torch.no_grad():
        got = tail(head(venc._backend.prepare([png]))).numpy()
    np.testing.assert_allclose(got, venc.encode([png]), atol=1e-4)
    tenc = load_encoder("minilm-l6", device="cpu", threads=2)
    for layer in (0, 3, 5):
        tower = D.TextTower(tenc, layer)
        b, tokens, emb = tower.prepare(caption)
        with torch.no_grad():
            again = tower(b.expand(2, *b.shape[1:])).numpy()
        np.testing.assert_allclose(emb.numpy()[0], tenc.encode([caption])[0], atol=1e-5)
        np.testing.assert_allclose(again, np.repeat(emb.numpy(), 2, axis=0), atol=1e-5)
    assert tokens == ["[CLS]", "cat", "face", "[SEP]"]
    with pytest.raises(ValueError, match="text_layer"):
        D.TextTower(tenc, 6)  # the last layer's output: a zero reference has no normalised mean
    assert D.TextTower(tenc, -1).layer == 5
    with pytest.raises(ValueError, match="vision_layer"):
        D.vision_parts(venc, 7)


@real
def test_completeness_on_real_encoders(cat, base_pairs):
    png, caption = cat
    exs = {steps: E.explain_pair(png, caption, base_pairs=base_pairs, steps=steps, threads=2)
           for steps in dict.fromkeys((4, 16, 64, X.DEFAULT_STEPS))}
    rel = {steps: ex.relative_residual for steps, ex in exs.items()}
    ex = exs[X.DEFAULT_STEPS]
    assert rel[4] > rel[16] > rel[64] > 0, rel
    assert rel[X.DEFAULT_STEPS] < 1e-2, rel
    # shapes and fields (defaults: the last block, 7x7; the last transformer layer's input)
    assert ex.attributions.shape == (7 * 7, 4) and ex.grid == (7, 7)
    assert (ex.vision_layer, ex.text_layer, ex.rule, ex.steps) == (6, 5, "graded", X.DEFAULT_STEPS)
    assert ex.tokens == ["[CLS]", "cat", "face", "[SEP]"] and ex.mapped
    assert np.isfinite(ex.attributions).all()
    assert ex.image.shape == (224, 224, 3) and ex.image.dtype == np.uint8
    assert abs(ex.attributions.sum() - ex.target - ex.residual) < 1e-9
    assert ex.score == pytest.approx(ex.s_ra_b + ex.s_a_rb - ex.s_ra_rb + ex.target)
    # an earlier block: a 14x14 grid
    ex14 = E.explain_pair(png, caption, base_pairs=base_pairs, steps=2, vision_layer=4, text_layer=3, threads=2)
    assert ex14.grid == (14, 14) and ex14.attributions.shape == (196, 4) and ex14.text_layer == 3
    # a white-image reference and the normalised (cosine) score
    exw = E.explain_pair(png, caption, base_pairs=base_pairs, steps=16, vision_reference="white",
                         normalize_image=True, threads=2)
    assert -1 <= exw.score <= 1 and exw.relative_residual < 5e-2 and exw.vision_reference == "white"


@real
def test_aligned_needs_equal_dims(cat):
    png, caption = cat
    with pytest.raises(ValueError, match="base_pairs"):
        E.explain_pair(png, caption, steps=2)


@real
def test_explain_items_writes_png_and_table(tmp_path):
    import pyarrow.parquet as pq

    from vlalign.report.explain_figure import plot_explanation

    table, expls = E.explain_items(["google/en/1f431"], base_size=16, steps=4, out_dir=tmp_path, threads=2,
                                   plot=plot_explanation)
    assert table.schema == ATTRIBUTIONS_SCHEMA and table.num_rows == 49 * 4
    assert set(table["item_id"].to_pylist()) == {"google/en/1f431"} and expls[0].mapped
    assert (tmp_path / "google_en_1f431.png").read_bytes()[:4] == b"\x89PNG"
    assert pq.read_table(tmp_path / "explanations.parquet").equals(table)
    with pytest.raises(ValueError, match="domain/lang/emoji"):
        E.explain_items(["1f431"], base_size=0)
    with pytest.raises(ValueError, match="no emoji item"):
        E.explain_items(["google/en/nope"], base_size=0)


def test_cli_explain_prints_the_residual_and_writes_png_and_parquet(tmp_path):
    """`vlalign explain`: the completeness residual per item, the top pairs, a PNG and the Parquet table."""
    import pyarrow.parquet as pq

    from vlalign.cli.main import main

    out = tmp_path / "ex"
    lake = tmp_path / "lake"
    code = main(["explain", "--item", "google/en/1f431", "--base-size", "32", "--steps", "8", "--show", "2",
                 "--out", str(out), "--lake", str(lake)])
    assert code == 0
    from vlalign.datalake.catalog import query
    from vlalign.datalake.store import Lake

    rows = query(Lake.open(lake), "select run_id, item_id, count(*) n, sum(attribution) s, any_value(score) sc, "
                 "any_value(residual) r from attributions group by all").to_pylist()
    assert len(rows) == 1 and rows[0]["item_id"] == "google/en/1f431" and rows[0]["run_id"].startswith("explain-")
    assert rows[0]["n"] > 0
    assert (out / "google_en_1f431.png").stat().st_size > 10_000
    t = pq.read_table(out / "explanations.parquet")
    assert t.num_rows > 0 and set(t["item_id"].to_pylist()) == {"google/en/1f431"}
    assert main(["explain", "--dataset", "coco", "--item", "x", "--out", str(out)]) == 2  # a clear error, no traceback
