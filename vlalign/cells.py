"""Analysis cells: the unit of work, of resume and of sharing between runs.

A cell is one computation with everything it depends on spelled out:

* a CKA cell: one (vision, text) encoder pair, one kernel, on one (data set, domain, language);
* a matching cell: one (vision, text) pair at one point of the settings grid, with every matching,
  retrieval and baseline method of the sweep.

A cell's identity is what it computes from and nothing else: its settings, the digest of the pairs table
it reads, the digests of the embeddings it reads (shard identities and content checksums) and the
version of the engine code that computes it (:func:`engine_version`). It never names a run. The cell's
result files are stored once, by that identity (``results/<table>/cell=<id>.parquet``), and every run that
needs the cell lists its id in the run's record. So a nightly rerun computes nothing, a spec with one more
encoder computes only the new pairs, and an edit to the math modules recomputes exactly the cells whose
kind uses them.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .digest import digest_json, digest_values
from .extract import ShardSpec
from .lake import Lake

# The modules whose source a cell kind's results depend on. analysis.py holds the pairing and splitting
# code both kinds share; the cka kind needs none of the matching modules, and the matching kind none of cka.py.
ENGINE_MODULES: dict[str, tuple[str, ...]] = {
    "cka": ("vlalign.kernels", "vlalign.cka", "vlalign.analysis"),
    "matching": ("vlalign.kernels", "vlalign.matching", "vlalign.retrieval", "vlalign.baselines",
                 "vlalign.preprocess", "vlalign.analysis"),
}


@functools.lru_cache(maxsize=None)
def engine_version(kind: str) -> str:
    """A digest of the source of the modules that compute cells of ``kind`` (see ENGINE_MODULES)."""
    sources = []
    for mod in ENGINE_MODULES[kind]:
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.origin:
            raise RuntimeError(f"engine module {mod} not found")
        with open(spec.origin, "rb") as f:
            sources += [mod, f.read()]
    return digest_values(sources)


@dataclass(frozen=True)
class Embeddings:
    """An encoder's embeddings of one part (a domain or a language): exactly the planned shards."""

    name: str  # catalog name, as it appears in result rows
    lake_name: str  # with pooling, as in lake paths
    part: str
    shards: tuple[ShardSpec, ...] = field(repr=False)
    digest: str = ""  # digest of the shards' identities and content checksums

    @classmethod
    def of(cls, lake: Lake, name: str, lake_name: str, part: str, shards: list[ShardSpec]) -> "Embeddings":
        """The reference to ``shards`` (already extracted), with a digest of what they hold."""
        shards = sorted(shards, key=lambda s: s.start)
        checksums = [(lake.read_metadata(s.path) or {}).get("checksum") for s in shards]
        digest = digest_json([[s.identity, c] for s, c in zip(shards, checksums)])
        return cls(name, lake_name, part, tuple(shards), digest)

    @property
    def identity(self) -> dict:
        return {"name": self.name, "lake_name": self.lake_name, "part": self.part, "digest": self.digest}


@dataclass(frozen=True)
class Cell:
    """What every cell shares: where it reads (not part of its identity) and the data it reads (part of it)."""

    lake_root: str
    dataset: str
    domain: str
    lang: str
    pairs_path: str
    pairs_digest: str
    vision: Embeddings
    text: Embeddings

    kind: ClassVar[str] = "cell"
    tables: ClassVar[tuple[str, ...]] = ()

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def identity(self) -> dict:
        return {
            "kind": self.kind, "engine": engine_version(self.kind), "dataset": self.dataset, "domain": self.domain,
            "lang": self.lang, "pairs": self.pairs_digest, "vision": self.vision.identity, "text": self.text.identity,
            "settings": self.settings(),
        }

    @functools.cached_property
    def cell_id(self) -> str:
        return digest_json(self.identity)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.dataset}/{self.domain}/{self.lang} {self.vision.name} x {self.text.name}"

    def paths(self) -> dict[str, str]:
        lake = Lake.open(self.lake_root)
        return {t: lake.result_path(t, self.cell_id) for t in self.tables}


@dataclass(frozen=True)
class CKACell(Cell):
    kernel: str = "linear"
    debiased: bool = False
    shuffled: bool = True
    bootstrap: int = 0
    seed: int = 0

    kind: ClassVar[str] = "cka"
    tables: ClassVar[tuple[str, ...]] = ("cka",)

    def settings(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "debiased": self.debiased, "shuffled": self.shuffled,
                "bootstrap": self.bootstrap, "seed": self.seed}


@dataclass(frozen=True)
class MatchCell(Cell):
    base_size: int = 0
    query_size: int = 0
    base_selection: str = "random"
    stretch: bool = False
    seed: int = 0
    matching: tuple[str, ...] = ()
    retrieval: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    qap_restarts: int = 20
    qap_kernel: str = "linear"
    local_cka_kernel: str = "linear"

    kind: ClassVar[str] = "matching"
    tables: ClassVar[tuple[str, ...]] = ("matching", "retrieval")

    def settings(self) -> dict[str, Any]:
        return {"base_size": self.base_size, "query_size": self.query_size, "base_selection": self.base_selection,
                "stretch": self.stretch, "seed": self.seed, "matching": list(self.matching),
                "retrieval": list(self.retrieval), "baselines": list(self.baselines), "qap_restarts": self.qap_restarts,
                "qap_kernel": self.qap_kernel, "local_cka_kernel": self.local_cka_kernel}


def cell_is_done(cell: Cell) -> bool:
    """Every result file of the cell exists and carries the cell's identity."""
    lake = Lake.open(cell.lake_root)
    return all((lake.read_metadata(p) or {}).get("identity") == cell.identity for p in cell.paths().values())


def plan_cells(spec, lake: Lake, pairs: dict, embeddings: dict) -> list[Cell]:
    """Every analysis cell of a sweep, in a fixed order.

    ``pairs``: {dataset: {(domain, lang): (pairs path, pairs digest)}};
    ``embeddings``: {(dataset, encoder name, part): Embeddings}."""
    cells: list[Cell] = []
    for ds in spec.datasets:
        for (domain, lang), (pairs_path, pairs_digest) in pairs[ds.name].items():
            venc = [embeddings[(ds.name, v, domain)] for v in spec.vision_encoders]
            tenc = [embeddings[(ds.name, t, lang)] for t in spec.text_encoders]
            common = dict(lake_root=lake.root, dataset=ds.name, domain=domain, lang=lang, pairs_path=pairs_path,
                          pairs_digest=pairs_digest)
            if spec.cka:
                for kernel in spec.cka.kernels:
                    for v in venc:
                        for t in tenc:
                            cells.append(CKACell(**common, vision=v, text=t, kernel=kernel, debiased=spec.cka.debiased,
                                                 shuffled=spec.cka.shuffled, bootstrap=spec.cka.bootstrap,
                                                 seed=spec.seeds[0]))
            if spec.has_matching:
                for s in spec.settings():
                    for v in venc:
                        for t in tenc:
                            cells.append(MatchCell(
                                **common, vision=v, text=t, base_size=s.base_size, query_size=s.query_size,
                                base_selection=s.base_selection, stretch=s.stretch, seed=s.seed,
                                matching=tuple(spec.matching), retrieval=tuple(spec.retrieval),
                                baselines=tuple(spec.baselines), qap_restarts=spec.qap_restarts,
                                qap_kernel=spec.qap_kernel, local_cka_kernel=spec.local_cka_kernel))
    return cells
