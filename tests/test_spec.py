"""Sweep specs are validated before any work, with errors that name the key and what was expected."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import make_coco
from hypothesis import given, settings
from hypothesis import strategies as st

from vlalign.cli.main import main
from vlalign.datalake.names import SAFE_NAME, check_name
from vlalign.engine.spec import DEFAULT_SPEC, SpecError, load_spec, parse_spec
from vlalign.engine.world import validate_against_world


def base_doc():
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def test_default_spec_is_the_full_offline_grid():
    spec = load_spec()
    assert len(spec.vision_encoders) == 3 and len(spec.text_encoders) == 3
    assert spec.cka.kernels == ("linear",) and spec.cka.shuffled  # rbf left out for time (the README says so)
    assert spec.cka.calibration.permutations == 200 and spec.cka.cknna and spec.cka.rsa
    assert set(spec.matching) == {"qap", "local_cka"}
    assert {(s.base_size, s.query_size, s.base_selection, s.stretch) for s in spec.settings()} == {(320, 500, "kmeans_image", True)}
    assert spec.seeds == (0, 1, 2)  # mean and spread over seeds, never a single seed
    assert spec.cka.debiased == (False, True) and spec.cka.mutual_knn == (10,) and spec.cka.bootstrap > 0
    assert spec.cross_domain and spec.cross_lingual and spec.classification and spec.curves  # every study
    assert spec.protocol == "default" and spec.protocol_settings["qap_kernel"] == "linear"


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
        (lambda d: d["datasets"][0].update(shuffle="yes"), r"datasets\[0\]: unknown key\(s\) \['shuffle'\]"),
        (lambda d: d["datasets"][0].update(split="val"), r"datasets\[0\]: format 'emoji' takes no 'split': it has no splits"),
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


def test_an_explain_study_on_a_static_text_encoder_is_refused_before_work():
    doc = base_doc()
    doc["analyses"]["explain"] = {"text_encoder": "wordllama"}
    with pytest.raises(SpecError, match=r"^analyses.explain.text_encoder: wordllama is not a sentence-transformers "
                                        r"model \(explanations differentiate through its transformer\); name one"):
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


# -- strict types, unknown keys, key paths in messages (the pydantic models) --------------------------


def _error(mutate) -> str:
    doc = copy.deepcopy(base_doc())
    mutate(doc)
    with pytest.raises(SpecError) as e:
        parse_spec(doc)
    return str(e.value)


def test_run_ids_do_not_depend_on_the_validator():
    """Run ids (name + digest of to_json()) are in users' lakes: these values predate the pydantic models."""
    minimal = {"name": "m", "datasets": [{"name": "emoji"}], "vision_encoders": "a", "text_encoders": "b",
               "analyses": {"cka": {"bootstrap": 0}}}  # bootstrap's default became 200: a spec that says 0 is the old one
    assert parse_spec(minimal).default_run_id == "m-45a729e776"
    coco = {
        "name": "tiny-sweep",
        "datasets": [{"name": "tiny", "format": "coco", "annotations": "/a/b.json", "images": "/a/img"}],
        "vision_encoders": ["mobilenetv2"], "text_encoders": ["minilm-l6", "wordllama"],
        # bootstrap: its default became 200 later; a spec that says 0 is the spec of that time
        "analyses": {"cka": {"kernels": ["linear", "rbf"], "bootstrap": 0}, "matching": ["qap", "local_cka"],
                     "retrieval": ["local_cka"], "baselines": ["linear_regression", "procrustes"], "qap": {"restarts": 8}},
        "base_size": 20, "query_size": 30, "base_selection": "kmeans_image", "stretch": True, "seeds": [0, 1, 2, 3, 4],
        "extraction": {"shard_size": 16},
    }
    assert parse_spec(coco).default_run_id == "tiny-sweep-0bb2fc58cc"
    doc = {**coco, "analyses": {**coco["analyses"], "cka": False}}
    assert parse_spec(doc).cka is None and parse_spec(doc).digest == "a6f88dcd6f"  # as computed by the code before the studies existed


@pytest.mark.parametrize("key", ["qap", "local_cka"])
def test_a_list_where_one_value_belongs_is_refused(key):
    # it used to run with the first kernel, silently
    message = _error(lambda d: d["analyses"].update({key: {"kernel": ["linear", "rbf"]}}))
    assert message == (
        f"analyses.{key}.kernel: expected 'linear' or 'rbf' (one value, not a list); got ['linear', 'rbf']"
    )


def test_unknown_keys_are_refused_at_every_level():
    def mutate(d):
        d["colour"] = "red"
        d["datasets"][0]["shuffle"] = "yes"
        d["analyses"]["qap"]["iterations"] = 5
        d["extraction"]["workers"] = 2

    lines = _error(mutate).splitlines()
    assert len(lines) == 4  # one line a problem, every problem
    assert any(line.startswith("spec: unknown key(s) ['colour']; allowed: ['analyses', ") for line in lines)
    assert ("datasets[0]: unknown key(s) ['shuffle']; allowed: ['annotations', 'domains', 'format', 'images', 'lang', "
            "'langs', 'name', 'split']") in lines
    assert "analyses.qap: unknown key(s) ['iterations']; allowed: ['kernel', 'restarts', 'tol']" in lines
    assert "extraction: unknown key(s) ['workers']; allowed: ['batch_size', 'shard_size']" in lines


@pytest.mark.parametrize(
    "mutate, line",
    [
        (lambda d: d.update(stretch="yes"), "stretch: expected true/false or a list of them; got 'yes'"),
        (lambda d: d.update(seeds=1.5), "seeds: expected an integer or a list of integers; got 1.5"),
        (lambda d: d.update(seeds=[0, 1.5]), "seeds: expected an integer or a list of integers; got 1.5"),
        (lambda d: d.update(seeds=[0, 1, 0]), "seeds: expected distinct values; got [0, 1, 0]"),
        (lambda d: d.update(base_size=True), "base_size: expected an integer >= 2 or a list of integers >= 2; got true"),
        (lambda d: d.update(base_size=[100, 1]), "base_size: expected an integer >= 2 or a list of integers >= 2; got 1"),
        (lambda d: d.update(query_size=0), "query_size: expected an integer >= 1 or a list of integers >= 1; got 0"),
        (lambda d: d["analyses"]["cka"].update(bootstrap=-1), "analyses.cka.bootstrap: expected an integer >= 0; got -1"),
        (lambda d: d["analyses"]["cka"].update(debiased="no"), "analyses.cka.debiased: expected true/false or a list of them; got 'no'"),
        (lambda d: d["analyses"]["cka"].update(kernels=["linear", "poly"]),
         "analyses.cka.kernels: unknown value 'poly'; expected one of ['linear', 'rbf']"),
        (lambda d: d["analyses"].update(cka=True),
         "analyses.cka: expected a mapping with keys ['bootstrap', 'calibration', 'cknna', 'cycle_knn', 'debiased', "
         "'kernels', 'mutual_knn', 'rsa', 'shuffled', 'svcca']; got true"),
        (lambda d: d["analyses"]["cka"].update(svcca=[1.5]),
         "analyses.cka.svcca: every kept-variance threshold must be in (0, 1]; got 1.5"),
        (lambda d: d["analyses"]["cka"].update(rsa="manhattan"),
         "analyses.cka.rsa: unknown value 'manhattan'; expected one of ['correlation', 'euclidean', 'cosine']"),
        (lambda d: d["analyses"]["qap"].update(restarts=0), "analyses.qap.restarts: expected an integer >= 1; got 0"),
        (lambda d: d["analyses"]["qap"].update(restarts="20"), "analyses.qap.restarts: expected an integer >= 1; got '20'"),
        (lambda d: d["analyses"]["local_cka"].update(kernel="poly"), "analyses.local_cka.kernel: expected 'linear' or 'rbf'; got 'poly'"),
        (lambda d: d["extraction"].update(batch_size=True), "extraction.batch_size: expected an integer >= 1; got true"),
        (lambda d: d["extraction"].update(shard_size=0), "extraction.shard_size: expected an integer >= 1; got 0"),
        (lambda d: d["datasets"][0].update(format="tfrecord"), "datasets[0].format: expected 'emoji', 'coco', 'karpathy', 'xtd', 'imagefolder', 'webdataset', "
         "'img2dataset' or 'hf-imagefolder'; got 'tfrecord'"),
        (lambda d: d["datasets"][0].update(langs=[]), "datasets[0].langs: empty list; expected one value or a non-empty list"),
        (lambda d: d["datasets"].append({"name": "c", "format": "coco", "annotations": 5, "images": "img"}),
         "datasets[1].annotations: expected a string; got 5"),
        (lambda d: d.update(datasets=[]), "datasets: expected a non-empty list; got []"),
        (lambda d: d.update(vision_encoders=[7]), "vision_encoders: expected a string or a list of strings; got 7"),
        (lambda d: d.update(datasets=[{"name": "emoji"}, {"name": "emoji"}]), "datasets: two entries have the same name 'emoji'"),
        (lambda d: d["analyses"].update(cka=None, matching=[], retrieval=[], baselines=[], cross_domain=False,
                                        cross_lingual=None, classification=False, curves=False, concepts=False,
                                        explain=False),
         "analyses: nothing to compute (cka is off, matching, retrieval, baselines are empty and no study is on)"),
        (lambda d: d["analyses"].update(matching=[]),
         "spec: analyses.explain explains the best-matched pairs of a matching cell: analyses.matching is empty"),
        (lambda d: d["analyses"].update(explain={"vision_encoder": "minilm-l6"}),
         "spec: analyses.explain.vision_encoder: 'minilm-l6' is not in the sweep's vision_encoders "
         "['mobilenetv2', 'efficientnet-lite0', 'efficientnet-lite1']"),
        (lambda d: d["analyses"].update(explain={"top": 0}), "analyses.explain.top: expected an integer >= 1; got 0"),
        (lambda d: d["analyses"].update(classification={"templates": ["an emoji"]}),
         "analyses.classification.templates: every template must contain {label}; got 'an emoji'"),
        (lambda d: d["analyses"].update(curves={"vision_encoders": ["vit-huge"]}),
         "spec: analyses.curves.vision_encoders: ['vit-huge'] are not in the sweep's vision_encoders "
         "['mobilenetv2', 'efficientnet-lite0', 'efficientnet-lite1']"),
        (lambda d: d.update(protocol="mine"), "protocol: expected 'default' or 'paper'; got 'mine'"),
        (lambda d: d.update(kmeans_metric="manhattan"), "kmeans_metric: expected 'euclidean' or 'cosine'; got 'manhattan'"),
    ],
)
def test_wrong_types_and_values_name_the_key_path(mutate, line):
    assert _error(mutate) == line


def test_every_problem_is_one_readable_line():
    def mutate(d):
        d.update(stretch="yes", seeds=1.5, base_size=True)
        d["analyses"]["cka"]["bootstrap"] = -1
        del d["name"]

    message = _error(mutate)
    lines = message.splitlines()
    assert len(lines) == 5 and "spec: missing required key 'name'" in lines
    assert all(":" in line and not line.startswith(" ") for line in lines)
    for noise in ("pydantic", "https://", "validation error", "Input should", "[type="):
        assert noise not in message


def test_the_file_is_named_on_every_line(tmp_path):
    p = tmp_path / "sweep.yaml"
    doc = base_doc()
    doc.update(seeds=1.5, stretch="yes")
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert str(e.value).splitlines() == [
        f"{p}: stretch: expected true/false or a list of them; got 'yes'",
        f"{p}: seeds: expected an integer or a list of integers; got 1.5",
    ]


def test_a_spec_that_is_not_a_mapping():
    with pytest.raises(SpecError, match=r"^spec: expected a mapping with keys \['analyses', .*; got null$"):
        parse_spec(None)


# -- safe names (vlalign.datalake.names) -------------------------------------------------------------------------

UNSAFE = ["../../../x", "a/b", "", ".hidden", "x y", "a..b", "-x", "_x", "x\n", "x" * 129, "a\\b", "é"]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_data_set_names_are_refused(name):
    message = _error(lambda d: d["datasets"][0].update(name=name))
    assert message.startswith(f"datasets[0].name: not a safe name, got {name!r}; use letters, digits, '.', '_' or '-'")


@pytest.mark.parametrize("name", UNSAFE + [5, None])
def test_unsafe_spec_names_are_refused(name):
    assert _error(lambda d: d.update(name=name)).startswith(f"name: not a safe name, got {name!r}; ")


@pytest.mark.parametrize("name", ["emoji", "coco2017-val_v2.1", "A", "9", "x" * 128])
def test_safe_names_pass(name):
    assert check_name(name, "data set name") == name
    doc = base_doc()
    doc["name"] = name
    doc["datasets"] = [{"name": name, "format": "coco", "annotations": "a.json", "images": "img"}]
    assert parse_spec(doc).datasets[0].name == name


def test_check_name_for_the_cli_and_the_lake():
    assert SAFE_NAME == r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
    with pytest.raises(ValueError) as e:
        check_name("../../../x", "run id")
    assert str(e.value) == (
        "run id: not a safe name, got '../../../x'; use letters, digits, '.', '_' or '-' "
        "(at most 128 characters, not starting with '.', '_' or '-', and without '..')"
    )


# -- `vlalign spec`: the JSON schema, and checking a file ------------------------------------------------


def test_vlalign_spec_schema(capsys):
    assert main(["spec", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    top = {"name", "datasets", "vision_encoders", "text_encoders", "analyses", "base_size", "query_size",
           "base_selection", "stretch", "seeds", "extraction", "protocol", "stretch_scope", "kmeans_metric",
           "vision_layers", "text_layers"}
    assert set(schema["properties"]) == top and set(base_doc()) <= top
    assert schema["title"] and schema["description"] and schema["additionalProperties"] is False
    assert all(p.get("description") for p in schema["properties"].values())
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    assert list(validator.iter_errors(base_doc())) == []
    doc = base_doc()
    doc["analyses"]["cka"] = False
    assert validator.is_valid(doc)
    for layers in ("all", [0, 3, -1], {"every": 2}):
        assert validator.is_valid({**base_doc(), "vision_layers": layers, "text_layers": layers})
    for mutate in (lambda d: d.update(vision_layers="first"), lambda d: d.update(text_layers={"every": 0}),
                   lambda d: d.update(colour="red"), lambda d: d["analyses"]["qap"].update(kernel=["linear", "rbf"]),
                   lambda d: d["datasets"][0].update(name="../x"), lambda d: d.update(seeds=[0, 0]),
                   lambda d: d.update(stretch="yes")):
        doc = base_doc()
        mutate(doc)
        assert not validator.is_valid(doc)


def test_vlalign_spec_checks_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(DEFAULT_SPEC.parents[2])  # the repository root
    assert main(["spec", "vlalign/sweeps/default.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "OK" in out and load_spec().default_run_id in out
    bad = tmp_path / "bad.yaml"
    doc = base_doc()
    doc["analyses"]["qap"]["kernel"] = ["linear", "rbf"]
    bad.write_text(yaml.safe_dump(doc))
    assert main(["spec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vlalign spec: error: {bad}: analyses.qap.kernel: expected 'linear' or 'rbf'")


def _tiny_coco_doc(tmp_path, **update) -> dict:
    ann, img = make_coco(tmp_path / "coco", n_images=12)
    doc = {"name": "tiny", "datasets": [{"name": "tiny", "format": "coco", "annotations": str(ann), "images": str(img)}],
           "vision_encoders": ["mobilenetv2"], "text_encoders": ["minilm-l6"], "base_size": 4, "query_size": 6}
    return {**doc, **update}


@pytest.mark.parametrize("case", ["vision encoder as text", "missing annotations", "base + query too large"])
def test_vlalign_spec_makes_every_check_of_vlalign_sweep(case, tmp_path, capsys):
    """`vlalign spec FILE` runs the checks `vlalign sweep FILE` runs before work starts (the same function):
    both refuse, exit code 2, with the same one-line error, and neither starts any work."""
    doc = _tiny_coco_doc(tmp_path)
    if case == "vision encoder as text":
        doc["text_encoders"] = ["minilm-l6", "mobilenetv2"]
        expected = ("vision_encoders/text_encoders: 1 text encoder name(s) cannot be used:\n"
                    "  - 'mobilenetv2' is a vision encoder, given as text")
    elif case == "missing annotations":
        missing = tmp_path / "nowhere" / "captions.json"
        doc["datasets"][0]["annotations"] = str(missing)
        expected = f"datasets[0]: data set 'tiny': annotations file '{missing}' does not exist"
    else:
        doc.update(base_size=8, query_size=6)
        expected = ("base_size + query_size: 8 + 6 = 14 is larger than data set 'tiny' "
                    "(domain tiny, lang en: 12 pairs)")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["spec", str(path)]) == 2
    spec_err = capsys.readouterr().err
    assert spec_err.startswith(f"vlalign spec: error: {expected}")
    assert main(["sweep", str(path), "--lake", str(tmp_path / "lake")]) == 2
    assert capsys.readouterr().err == spec_err.replace("vlalign spec:", "vlalign sweep:", 1)
    assert not (tmp_path / "lake").exists()


def test_vlalign_spec_accepts_what_vlalign_sweep_accepts(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_tiny_coco_doc(tmp_path)))
    assert main(["spec", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == (f"{path}: OK, run id {load_spec(path).default_run_id} (1 data set(s), 1 x 1 encoders, "
                   "1 setting(s))\n")


def test_the_default_classification_methods_keep_the_order_of_the_run_ids():
    """The spec takes the method names from vlalign.methods.classify; its default list is in the run id, in
    the order it has always had there (training-free methods first)."""
    from vlalign.methods.classify import CLASSIFY_METHODS

    doc = base_doc()
    doc["analyses"]["classification"] = {}
    spec = parse_spec(doc)
    assert set(spec.classification.methods) == set(CLASSIFY_METHODS)
    written = json.loads(spec.to_json())["classification"]["methods"]
    assert written == ["local_cka", "qap", "linear_regression", "relative", "procrustes"]


def test_protocol_presets_are_named_settings_and_explicit_keys_win():
    doc = base_doc()
    doc["analyses"]["qap"] = {"restarts": 5}
    default = parse_spec(doc)
    doc["protocol"] = "paper"
    paper = parse_spec(doc)
    assert default.protocol_settings == {"qap_kernel": "linear", "qap_tol": 0.03, "stretch_scope": "selected",
                                         "kmeans_metric": "euclidean", "linreg_intercept": True,
                                         "retrieval_ties": "against"}
    assert paper.protocol_settings == {"qap_kernel": "rbf", "qap_tol": 1e-5, "stretch_scope": "pool",
                                       "kmeans_metric": "cosine", "linreg_intercept": False,
                                       "retrieval_ties": "favour"}
    doc["analyses"]["qap"]["kernel"] = "linear"
    doc["kmeans_metric"] = "euclidean"
    mixed = parse_spec(doc)
    assert mixed.qap_kernel == "linear" and mixed.kmeans_metric == "euclidean" and mixed.stretch_scope == "pool"
    assert len({default.default_run_id, paper.default_run_id, mixed.default_run_id}) == 3


# ------------------------------------------------------------------ hostile spec files: one line, bounded time
def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    rows += [f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(rows) + "\n")
    assert path.stat().st_size < 700
    with pytest.raises(SpecError, match="more than 100,000 values once its YAML aliases are expanded"):
        load_spec(path)


@pytest.mark.parametrize("content, reason", [
    (b"[" * 100_000, "nested too deeply"),
    (b"name: x\n\xff\xfe\n", "not UTF-8 text"),
    (b"name: [unclosed\n", "not valid YAML"),
    (b"x" * (2 << 20), "a spec is at most"),
])
def test_unreadable_spec_files_get_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=reason) as e:
        load_spec(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                    max_leaves=30))
def test_any_document_gives_a_spec_or_a_spec_error(doc):
    """Random JSON-like documents (and random values under the real keys) never raise anything but SpecError."""
    for candidate in (doc, {"name": "x", "datasets": doc}, {"name": "x", "vision_encoders": doc, "analyses": doc}):
        try:
            parse_spec(candidate)
        except SpecError:
            pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_spec_or_a_spec_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "s.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError:
        pass
