"""The README's numbers come from a run: its results block names the default spec's run id and the engine
versions that computed it, and is replaced (never edited) by scripts/readme_results.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlalign.engine.spec import load_spec
from vlalign.report.readme import END, engine_versions, parse_block, replace_block

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_results_block_is_the_default_runs_under_the_current_engine():
    header, body = parse_block(README.read_text())
    run_id = load_spec(None).default_run_id
    assert header.pop("run") == run_id, "the README's results come from another spec: make run, then " \
                                        "python scripts/readme_results.py"
    assert header == engine_versions(), "the engine changed since the README's results were made: make run, then " \
                                        "python scripts/readme_results.py"
    assert f"run {run_id}" in body and "CKA" in body and "matching" in body


def test_replace_block_swaps_exactly_the_block():
    text = "intro\n<!-- results:begin run=a x=1 -->\nold numbers\n" + END + "\noutro\n"
    new = replace_block(text, "<!-- results:begin run=b x=2 -->\nnew numbers\n" + END)
    assert new == "intro\n<!-- results:begin run=b x=2 -->\nnew numbers\n" + END + "\noutro\n"
    assert parse_block(new) == ({"run": "b", "x": "2"}, "new numbers\n")
    with pytest.raises(ValueError, match="exactly one results block"):
        parse_block(text + text)
