"""The engine version (part of every cell id) follows the code that computes cells, not where it lives: moving a
definition between engine modules, or changing imports, docstrings or comments, keeps it; changing code moves it;
ENGINE_LINEAGE keeps an older version only for fingerprints listed there."""

from __future__ import annotations

import ast

import pytest

from vlalign.datalake.digest import digest_values
from vlalign.engine import cells, versions
from vlalign.engine.versions import ENGINE_LINEAGE, ENGINE_MODULES, _code_of, code_fingerprint, engine_version

ONE = '''"""Doc."""
import numpy as np
from vlalign.methods.kernels import gram_linear

X = 3


def f(a):
    """Doc of f."""
    import scipy  # lazy
    return a + X  # a comment


def g(b):
    return b * 2
'''

MOVED_A = '''"""Other doc."""
from vlalign.methods import kernels

X = 3


def f(a):
    return a + X
'''
MOVED_B = '''import numpy


def g(b):
    """g moved here."""
    return b * 2
'''


def _fp(*sources: str) -> str:
    return digest_values(sorted(c for s in sources for c in _code_of(ast.parse(s))))


def test_imports_docstrings_comments_and_moves_between_modules_keep_the_fingerprint():
    assert _fp(ONE) == _fp(MOVED_A, MOVED_B)


@pytest.mark.parametrize("change", [("return a + X", "return a - X"), ("X = 3", "X = 4"), ("b * 2", "b * 3"),
                                    ("def g(b):", "def g(b, c=1):")])
def test_a_change_of_code_moves_the_fingerprint(change):
    assert _fp(ONE) != _fp(ONE.replace(*change))


def test_each_kind_has_a_version_and_lineage_maps_only_listed_fingerprints(monkeypatch):
    for kind in ENGINE_MODULES:
        fp = code_fingerprint(kind)
        assert engine_version(kind) == ENGINE_LINEAGE[kind].get(fp, fp)
    # an unlisted fingerprint (code that changed) is its own version
    monkeypatch.setattr(versions, "code_fingerprint", lambda kind: "not-listed")
    assert engine_version("cka") == "not-listed"


def test_the_versions_of_this_engine():
    """Pinned: the matching, concepts and classification kinds keep the versions of the lakes made before the
    cka code moved to vlalign.engine.alignment (their code did not change: lineage entries); the cka kind moved
    on when its rows gained the layer columns, more measures and the calibration columns (a new version: old cka
    cells are recomputed once, with the same values and the new columns), kept it through the blockwise kernels,
    which run the same code below 5,000 samples (a lineage entry), and moved on when the null of the layer search
    left out pairs without a finite value."""
    assert engine_version("matching") == "3532328c6e6cfc73"
    assert engine_version("concepts") == "479703d750b94290"
    assert engine_version("classification") == "e321d8a624e7e986"
    assert engine_version("cka") == "0d3dc8fe2e23b3c1" != "17818ab91b23ca6f"
