"""Sweep specs are validated before any work, with errors that name the key and what was expected."""

from __future__ import annotations

import copy

import pytest
import yaml

from vlalign.spec import DEFAULT_SPEC, SpecError, load_spec, parse_spec, validate_against_world


def base_doc():
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def test_default_spec_is_the_full_offline_grid():
    spec = load_spec()
    assert len(spec.vision_encoders) == 4 and len(spec.text_encoders) == 3
    assert spec.cka.kernels == ("linear", "rbf") and spec.cka.shuffled
    assert set(spec.matching) == {"qap", "local_cka"}
    assert [(s.base_size, s.query_size, s.base_selection, s.stretch) for s in spec.settings()] == [(320, 500, "kmeans_image", True)]


def test_run_id_is_a_function_of_the_spec():
    a, b = parse_spec(base_doc()), parse_spec(base_doc())
    assert a.default_run_id == b.default_run_id
    doc = base_doc()
    doc["seeds"] = [1]
    assert parse_spec(doc).default_run_id != a.default_run_id


def test_lists_make_a_grid():
    doc = base_doc()
    doc.update(base_size=[100, 320], seeds=[0, 1, 2], stretch=[True, False])
    assert len(parse_spec(doc).settings()) == 12


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(colour="red"), r"spec: unknown key\(s\) \['colour'\]"),
        (lambda d: d["analyses"].update(cka={"kernel": ["rbf"]}), r"analyses.cka: unknown key\(s\) \['kernel'\]"),
        (lambda d: d["datasets"][0].update(split="val"), r"datasets\[0\]: unknown key\(s\) \['split'\]"),
        (lambda d: d.update(seeds=[]), r"seeds: empty list"),
        (lambda d: d.update(base_size=[]), r"base_size: empty list"),
        (lambda d: d.update(base_selection="kmeans"), r"base_selection: unknown value 'kmeans'"),
        (lambda d: d["analyses"].update(matching=["hungarian"]), r"analyses.matching: unknown value 'hungarian'"),
        (lambda d: d.update(query_size="500"), r"query_size: expected an integer"),
        (lambda d: d.pop("text_encoders"), r"missing required key 'text_encoders'"),
        (lambda d: d["analyses"]["qap"].update(restarts=0), r"analyses.qap.restarts: expected an integer >= 1"),
        (lambda d: d.update(datasets=[{"name": "coco2017", "format": "coco"}]), r"format 'coco' needs 'annotations'"),
    ],
)
def test_invalid_specs_name_the_key(mutate, message):
    doc = copy.deepcopy(base_doc())
    mutate(doc)
    with pytest.raises(SpecError, match=message):
        parse_spec(doc)


def test_unknown_encoder_is_refused_before_work():
    doc = base_doc()
    doc["vision_encoders"] = ["mobilenetv2", "resnet9000"]
    with pytest.raises(SpecError, match="resnet9000"):
        validate_against_world(parse_spec(doc))


def test_text_encoder_given_as_vision_is_refused():
    doc = base_doc()
    doc["vision_encoders"] = ["minilm-l6"]
    with pytest.raises(SpecError, match="minilm-l6"):
        validate_against_world(parse_spec(doc))


def test_base_plus_query_larger_than_the_data_set_is_refused():
    doc = base_doc()
    doc.update(base_size=1500, query_size=500)
    with pytest.raises(SpecError, match=r"1500 \+ 500 = 2000 is larger than data set 'emoji' .*1906 pairs"):
        validate_against_world(parse_spec(doc))


def test_missing_spec_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)
