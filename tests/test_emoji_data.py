"""Tests for the embedded emoji data set (data/emoji/*.parquet, aliases.parquet included) and its builder.

The committed Parquet files are checked directly. The build itself needs npm
network access and is not run here; its pure table-building functions are run on
a tiny fake ``package/`` folder tree instead.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "emoji"
LANGS = {"en", "de", "es", "fr", "it", "ja", "ko", "pl", "ru", "zh"}
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_emoji", ROOT / "data" / "build_emoji.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_emoji"] = mod
    spec.loader.exec_module(mod)
    return mod


build_emoji = _load_builder()


# --------------------------------------------------------------------------------------
# Committed tables
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> pa.Table:
    return pq.read_table(DATA / "images.parquet")


@pytest.fixture(scope="module")
def captions() -> pa.Table:
    return pq.read_table(DATA / "captions.parquet")


@pytest.fixture(scope="module")
def emoji() -> pa.Table:
    return pq.read_table(DATA / "emoji.parquet")


@pytest.fixture(scope="module")
def aliases() -> pa.Table:
    return pq.read_table(DATA / "aliases.parquet")


def test_schemas(images, captions, emoji, aliases):
    assert images.schema.names == ["emoji_id", "domain", "png"]
    assert images.schema.field("png").type == pa.binary()
    assert captions.schema.names == ["emoji_id", "lang", "caption"]
    assert emoji.schema.names == ["emoji_id", "name", "category", "subcategory", "sort_order"]
    assert pa.types.is_integer(emoji.schema.field("sort_order").type)
    assert aliases.schema.names == ["emoji_id", "lang", "alias", "kind"]
    for t in (images, captions, emoji, aliases):
        for f in t.schema:
            if f.name != "png" and f.name != "sort_order":
                assert f.type == pa.string()
            assert t.column(f.name).null_count == 0


@pytest.mark.parametrize("name", ["images", "captions", "emoji", "aliases"])
def test_metadata_and_compression(name):
    path = DATA / f"{name}.parquet"
    meta = pq.read_schema(path).metadata
    assert meta[b"vlalign.dataset"] == b"emoji"
    sources = json.loads(meta[b"vlalign.sources"])
    assert sources == [
        "emoji-datasource-google@16.0.0",
        "emoji-datasource-twitter@16.0.0",
        "emojibase-data@17.0.0",
    ]
    md = pq.ParquetFile(path).metadata
    for rg in range(md.num_row_groups):
        for c in range(md.num_columns):
            assert md.row_group(rg).column(c).compression == "ZSTD"


def test_total_size_reasonable():
    total = sum((DATA / f"{n}.parquet").stat().st_size for n in ("images", "captions", "emoji", "aliases"))
    assert total < 15_000_000


def test_counts(images, captions, emoji):
    assert emoji.num_rows == 1906
    assert images.num_rows == 3812
    assert set(images.column("domain").to_pylist()) == {"google", "twitter"}
    assert captions.num_rows == 1906 * len(LANGS)


def test_unique_keys(images, captions, emoji):
    ids = emoji.column("emoji_id").to_pylist()
    assert len(set(ids)) == len(ids)
    img_keys = list(zip(images.column("emoji_id").to_pylist(), images.column("domain").to_pylist()))
    assert len(set(img_keys)) == len(img_keys)
    cap_keys = list(zip(captions.column("emoji_id").to_pylist(), captions.column("lang").to_pylist()))
    assert len(set(cap_keys)) == len(cap_keys)
    orders = emoji.column("sort_order").to_pylist()
    assert len(set(orders)) == len(orders)


def test_ids_lowercase_and_consistent(images, captions, emoji):
    ids = set(emoji.column("emoji_id").to_pylist())
    assert all(i == i.lower() and i.strip() == i for i in ids)
    for domain in ("google", "twitter"):
        mask = [d == domain for d in images.column("domain").to_pylist()]
        assert set(images.filter(pa.array(mask)).column("emoji_id").to_pylist()) == ids
    assert set(captions.column("emoji_id").to_pylist()) == ids


def test_no_skin_tones_no_component(emoji):
    assert "Component" not in set(emoji.column("category").to_pylist())
    for eid in emoji.column("emoji_id").to_pylist():
        assert not SKIN_TONES & set(eid.split("-")), eid


def test_categories(emoji):
    cats = set(emoji.column("category").to_pylist())
    assert cats == {
        "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
        "Activities", "Objects", "Symbols", "Flags",
    }
    assert all(s for s in emoji.column("subcategory").to_pylist())


def test_languages_and_english_captions(captions, emoji):
    langs = captions.column("lang").to_pylist()
    assert set(langs) == LANGS
    en = {e for e, lang in zip(captions.column("emoji_id").to_pylist(), langs) if lang == "en"}
    assert en == set(emoji.column("emoji_id").to_pylist())
    assert all(c and c == c.strip() for c in captions.column("caption").to_pylist())
    cap = {(e, lang): c for e, lang, c in zip(
        captions.column("emoji_id").to_pylist(), langs, captions.column("caption").to_pylist())}
    assert cap[("1f600", "en")] == "grinning face"
    assert cap[("263a-fe0f", "en")] == "smiling face"


def test_sorted(images, captions, emoji):
    order = dict(zip(emoji.column("emoji_id").to_pylist(), emoji.column("sort_order").to_pylist()))
    so = emoji.column("sort_order").to_pylist()
    assert so == sorted(so)
    ik = [(d, order[e]) for d, e in zip(images.column("domain").to_pylist(), images.column("emoji_id").to_pylist())]
    assert ik == sorted(ik)
    ck = [(lang, order[e]) for lang, e in zip(captions.column("lang").to_pylist(), captions.column("emoji_id").to_pylist())]
    assert ck == sorted(ck)


def test_png_decode_64(images):
    for i, png in enumerate(images.column("png").to_pylist()):
        assert png[:8] == b"\x89PNG\r\n\x1a\n", i
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG"
            im.load()
            assert im.size == (64, 64), i


def test_domains_differ(images):
    # Noto and Twemoji art for the same emoji are different files
    rows = images.to_pylist()
    by = {}
    for r in rows:
        by.setdefault(r["emoji_id"], {})[r["domain"]] = r["png"]
    assert sum(v["google"] == v["twitter"] for v in by.values()) == 0


# Counts of aliases.parquet, from the data (see data/README.md "Aliases").
ALIAS_COUNTS = {"cldr": 1906, "short_name": 1066, "keyword": 9844}
KIND_ORDER = {"cldr": 0, "short_name": 1, "keyword": 2}


def test_alias_counts(aliases, emoji):
    kinds = aliases.column("kind").to_pylist()
    assert {k: kinds.count(k) for k in KIND_ORDER} == ALIAS_COUNTS
    assert aliases.num_rows == sum(ALIAS_COUNTS.values())
    assert set(aliases.column("lang").to_pylist()) == {"en"}
    assert set(aliases.column("emoji_id").to_pylist()) == set(emoji.column("emoji_id").to_pylist())


def test_aliases_cldr_is_english_caption(aliases, captions):
    en = {e: c for e, lang, c in zip(captions.column("emoji_id").to_pylist(), captions.column("lang").to_pylist(),
                                     captions.column("caption").to_pylist()) if lang == "en"}
    cldr = [(e, a) for e, a, k in zip(aliases.column("emoji_id").to_pylist(), aliases.column("alias").to_pylist(),
                                      aliases.column("kind").to_pylist()) if k == "cldr"]
    assert len(cldr) == len(en)  # exactly one per emoji
    assert all(a == " ".join(en[e].lower().split()) for e, a in cldr)


def test_aliases_normalised_unique_sorted(aliases, emoji):
    rows = aliases.to_pylist()
    assert all(r["alias"] and r["alias"] == " ".join(r["alias"].lower().split()) for r in rows)
    assert not any("_" in r["alias"] for r in rows if r["kind"] == "short_name")
    keys = [(r["emoji_id"], r["alias"]) for r in rows]
    assert len(set(keys)) == len(keys)  # deduplicated per emoji
    order = dict(zip(emoji.column("emoji_id").to_pylist(), emoji.column("sort_order").to_pylist()))
    sk = [(order[r["emoji_id"]], KIND_ORDER[r["kind"]]) for r in rows]
    assert sk == sorted(sk)
    by = {}
    for r in rows:
        by.setdefault(r["emoji_id"], []).append((r["kind"], r["alias"]))
    assert by["1f600"][0] == ("cldr", "grinning face")
    assert ("short_name", "grinning") in by["1f600"]
    assert by["1f44d"][:3] == [("cldr", "thumbs up"), ("short_name", "+1"), ("short_name", "thumbsup")]


# --------------------------------------------------------------------------------------
# Builder on a fake folder tree
# --------------------------------------------------------------------------------------


def _png(path: Path, color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (64, 64), color).save(path, format="PNG")


def _rec(unified, name, category, sort_order, *, g=True, t=True, skins=None, short_names=None):
    r = {
        "name": name, "unified": unified, "image": unified.lower() + ".png",
        "short_names": short_names or [name.lower()],
        "category": category, "subcategory": "sub-" + category.lower().split()[0], "sort_order": sort_order,
        "has_img_google": g, "has_img_twitter": t,
    }
    if skins:
        r["skin_variations"] = skins
    return r


@pytest.fixture()
def fake_tree(tmp_path):
    skin = {"1F3FB": {"unified": "1F44B-1F3FB", "image": "1f44b-1f3fb.png", "has_img_google": True,
                      "has_img_twitter": True}}
    records = [
        _rec("1F600", "GRINNING FACE", "Smileys & Emotion", 3, short_names=["grinning", "Grinning_Face", "grin_"]),
        _rec("263A-FE0F", "WHITE SMILING FACE", "Smileys & Emotion", 1),  # FE0F only in datasource
        _rec("1F44B", "WAVING HAND SIGN", "People & Body", 2, skins=skin),  # base kept, skin dropped
        _rec("1F3FB", "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "Component", 4),  # dropped
        _rec("1F431", "CAT FACE", "Animals & Nature", 5),  # no en label -> fallback
        _rec("1F436", "DOG FACE", "Animals & Nature", 6, g=False),  # no google image -> dropped
        _rec("1F42D", "MOUSE FACE", "Animals & Nature", 7),  # twitter file missing -> dropped
    ]
    dirs = {}
    for domain, color in (("google", (255, 0, 0, 255)), ("twitter", (0, 0, 255, 255))):
        pkg = tmp_path / domain / "package"
        pkg.mkdir(parents=True)
        (pkg / "emoji.json").write_text(json.dumps(records))
        for r in records:
            if domain == "twitter" and r["unified"] == "1F42D":
                continue
            if r[f"has_img_{domain}"]:
                _png(pkg / "img" / domain / "64" / r["image"], color)
        _png(pkg / "img" / domain / "64" / "1f44b-1f3fb.png", color)
        dirs[domain] = pkg
    eb = tmp_path / "emojibase" / "package"
    labels = {
        "en": [("1F600", "grinning face"), ("263A", "smiling face"), ("1F44B", "waving hand"),
               ("1F3FB", "light skin tone"), ("1F436", "dog face"), ("1F42D", "mouse face")],
        "de": [("1F600", "grinsendes Gesicht"), ("263A", "lächelndes Gesicht")],
        "ja": [("1F600-FE0F", "にっこり笑う")],  # FE0F only in emojibase
    }
    for lang, items in labels.items():
        (eb / lang).mkdir(parents=True)
        data = [{"label": lab, "hexcode": h, "emoji": "", "type": 1, "version": 1} for h, lab in items]
        if lang == "en":
            data[2]["skins"] = [{"label": "waving hand: light skin tone", "hexcode": "1F44B-1F3FB"}]
            data[0]["tags"] = ["face", " Grin ", "grinning", "smile"]
            data[2]["tags"] = ["wave"]
        (eb / lang / "data.json").write_text(json.dumps(data, ensure_ascii=False))
    return dirs, eb


def test_strip_fe0f():
    assert build_emoji.strip_fe0f("263a-fe0f") == "263A"
    assert build_emoji.strip_fe0f("1F441-FE0F-200D-1F5E8-FE0F") == "1F441-200D-1F5E8"
    assert build_emoji.strip_fe0f("1F600") == "1F600"


def test_build_tables_fake(fake_tree):
    dirs, eb = fake_tree
    res = build_emoji.build_tables(dirs, eb, langs=("en", "de", "ja", "ko"))
    assert [r["emoji_id"] for r in res.emoji] == ["263a-fe0f", "1f44b", "1f600", "1f431"]
    assert [r["sort_order"] for r in res.emoji] == [1, 2, 3, 5]
    assert res.emoji[0] == {"emoji_id": "263a-fe0f", "name": "WHITE SMILING FACE",
                            "category": "Smileys & Emotion", "subcategory": "sub-smileys", "sort_order": 1}
    assert [(r["domain"], r["emoji_id"]) for r in res.images] == [
        (d, e) for d in ("google", "twitter") for e in ("263a-fe0f", "1f44b", "1f600", "1f431")
    ]
    for r in res.images:
        assert r["png"] == (dirs[r["domain"]] / "img" / r["domain"] / "64" / (r["emoji_id"] + ".png")).read_bytes()
    caps = [(r["lang"], r["emoji_id"], r["caption"]) for r in res.captions]
    assert caps == [
        ("de", "263a-fe0f", "lächelndes Gesicht"),
        ("de", "1f600", "grinsendes Gesicht"),
        ("en", "263a-fe0f", "smiling face"),
        ("en", "1f44b", "waving hand"),
        ("en", "1f600", "grinning face"),
        ("en", "1f431", "cat face"),  # fallback: datasource name lower-cased
        ("ja", "1f600", "にっこり笑う"),
    ]
    assert res.stats["en_fallbacks"] == ["1f431"]
    assert res.stats["captions_per_lang"] == {"de": 2, "en": 4, "ja": 1, "ko": 0}
    als = [(r["emoji_id"], r["lang"], r["alias"], r["kind"]) for r in res.aliases]
    assert als == [
        ("263a-fe0f", "en", "smiling face", "cldr"),
        ("263a-fe0f", "en", "white smiling face", "short_name"),
        ("1f44b", "en", "waving hand", "cldr"),
        ("1f44b", "en", "waving hand sign", "short_name"),
        ("1f44b", "en", "wave", "keyword"),
        ("1f600", "en", "grinning face", "cldr"),
        ("1f600", "en", "grinning", "short_name"),  # "grinning_face" repeats the cldr alias: dropped
        ("1f600", "en", "grin", "short_name"),  # "grin_": '_' read as a space, stripped
        ("1f600", "en", "face", "keyword"),  # " Grin " and "grinning" repeat earlier aliases: dropped
        ("1f600", "en", "smile", "keyword"),
        ("1f431", "en", "cat face", "cldr"),  # the English caption, here the fallback
    ]
    assert res.stats["aliases_per_kind"] == {"cldr": 4, "short_name": 4, "keyword": 3}


def test_aliases_without_english_captions(fake_tree):
    dirs, eb = fake_tree
    res = build_emoji.build_tables(dirs, eb, langs=("de",))
    assert {r["lang"] for r in res.captions} == {"de"}
    assert [r["alias"] for r in res.aliases if r["kind"] == "cldr"] == [
        "smiling face", "waving hand", "grinning face", "cat face"]
    assert res.stats["en_fallbacks"] == [] and res.stats["captions_per_lang"] == {"de": 2}


def test_write_fake_deterministic(fake_tree, tmp_path):
    dirs, eb = fake_tree
    outs = []
    for k in range(2):
        res = build_emoji.build_tables(dirs, eb)
        tables = build_emoji.to_arrow(res)
        out = tmp_path / f"out{k}"
        for name, t in tables.items():
            build_emoji.write_parquet_atomic(t, out / f"{name}.parquet")
        assert sorted(p.name for p in out.iterdir()) == [
            "aliases.parquet", "captions.parquet", "emoji.parquet", "images.parquet"]
        outs.append(out)
    for name in ("images", "captions", "emoji", "aliases"):
        assert (outs[0] / f"{name}.parquet").read_bytes() == (outs[1] / f"{name}.parquet").read_bytes()
        a = pq.read_table(outs[0] / f"{name}.parquet")
        b = pq.read_table(outs[1] / f"{name}.parquet")
        assert a.equals(b, check_metadata=True)
        assert a.schema.metadata[b"vlalign.dataset"] == b"emoji"
    assert pq.read_table(outs[0] / "images.parquet").num_rows == 8
    assert pq.read_table(outs[0] / "aliases.parquet").num_rows == 11
