"""Engine versions: each cell kind's version is a digest of the code of the modules that compute it
(ENGINE_MODULES), continued by ENGINE_LINEAGE through changes of code that compute the same numbers. A cell's
identity holds its kind's version, so a change of that code makes new cells and a rerun computes them."""

from __future__ import annotations

import ast
import functools
import importlib.util

from vlalign.datalake.digest import digest_values

# The modules whose code a cell kind's results depend on. analysis holds the pairing and splitting code
# every kind shares; the cka kind needs none of the matching modules, and the matching kind none of cka.
ENGINE_MODULES: dict[str, tuple[str, ...]] = {
    "cka": ("vlalign.methods.kernels", "vlalign.methods.cka", "vlalign.methods.blockwise", "vlalign.methods.measures",
            "vlalign.engine.analysis", "vlalign.engine.alignment", "vlalign.methods.registry",
            "vlalign.methods.knn_measures", "vlalign.methods.geometry_measures", "vlalign.methods.calibration"),
    "matching": ("vlalign.methods.kernels", "vlalign.methods.matching", "vlalign.methods.retrieval",
                 "vlalign.methods.baselines", "vlalign.methods.preprocess", "vlalign.engine.analysis"),
    "concepts": ("vlalign.methods.kernels", "vlalign.methods.concepts", "vlalign.datasets.wordprops",
                 "vlalign.engine.analysis"),
    "classification": ("vlalign.methods.kernels", "vlalign.methods.matching", "vlalign.methods.retrieval",
                       "vlalign.methods.baselines", "vlalign.methods.preprocess", "vlalign.methods.classify",
                       "vlalign.engine.analysis"),
}

# Engine versions that outlive a change of code that computes the same numbers. Before 0.2 a version was
# the digest of the engine modules' names and raw source, so moving a file, an import or a comment moved it.
# Since 0.2 it is the digest of the code itself (:func:`code_fingerprint`); where a fingerprint is listed
# here, its kind keeps the older version, so the cells of lakes made before stay valid. Add a line only for
# a change that is shown to compute identical numbers (the default run on an older lake computes 0 cells,
# tests/test_engine_version.py); any other change to the math moves the version by itself.
ENGINE_LINEAGE: dict[str, dict[str, str]] = {
    # 0.2: the library moved into subpackages (vlalign.methods, .engine, ...); same code, same numbers. Then cells
    # carry the Lake they read (cell.lake) instead of its root (Lake.open(cell.lake_root)); same numbers.
    # Then cka's code moved to engine.alignment, compute_cell to engine.scoring: the other kinds lost definitions
    # they never ran, same code, same numbers (cka itself moved on: its rows gained the layer columns).
    "cka": {"14d54e47da1f07c7": "17818ab91b23ca6f", "6e6fbe4c9ecce2e2": "17818ab91b23ca6f",
            # then layer pairs, more measures and calibration made cka 8581d09b537f8a58 (its rows changed); then
            # issue #20: RBF CKA and its bootstrap above blockwise.DENSE_MAX_N = 5,000 samples (or with block_rows)
            # visit the Grams by tiles (vlalign.methods.blockwise), and mutual_knn above measures.EXACT_MAX_N =
            # 100,000 samples is approximate; below those sizes the code that runs is unchanged and gives the same
            # bytes. RBF cells above 5,000 samples computed before may differ at rounding (~1e-15).
            "5ea23c8f8bbbf51c": "8581d09b537f8a58"},
    "matching": {"65073459268047d0": "3532328c6e6cfc73", "8c9cb0400243690d": "3532328c6e6cfc73", "026a34990cc2cd5f": "3532328c6e6cfc73"},
    "concepts": {"33f6c3e745c012c3": "479703d750b94290", "b059ee0b44315201": "479703d750b94290", "669a867e1ac9cbf2": "479703d750b94290"},
    "classification": {"abbcb5a4a3b99972": "e321d8a624e7e986", "d46f7cc6b1348f47": "e321d8a624e7e986",
                       "26224a1b23eb1948": "e321d8a624e7e986"},
}


def _code_of(tree: ast.Module) -> list[str]:
    """The top-level definitions of a module as normalised code: no imports, docstrings or comments, so
    that where a definition lives and how it is imported is not part of it. Sorted by name."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        for sub in ast.walk(node):
            body = getattr(sub, "body", None)
            if (isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                sub.body = body[1:] or [ast.Pass()]
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sub.body = [b for b in sub.body if not isinstance(b, (ast.Import, ast.ImportFrom))] or [ast.Pass()]
        out.append(ast.dump(node, annotate_fields=False))
    return sorted(out)


@functools.lru_cache(maxsize=None)
def code_fingerprint(kind: str) -> str:
    """A digest of the code of the modules that compute cells of ``kind`` (see ENGINE_MODULES), independent of
    which module holds a definition, of imports, docstrings and comments."""
    code = []
    for mod in ENGINE_MODULES[kind]:
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.origin:
            raise RuntimeError(f"engine module {mod} not found")
        with open(spec.origin, "rb") as f:
            code += _code_of(ast.parse(f.read()))
    return digest_values(sorted(code))


def engine_version(kind: str) -> str:
    """The version of the code that computes cells of ``kind``: its :func:`code_fingerprint`, or the older
    version that fingerprint continues (ENGINE_LINEAGE)."""
    fp = code_fingerprint(kind)
    return ENGINE_LINEAGE[kind].get(fp, fp)
