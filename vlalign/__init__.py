"""vlalign: do vision and language encoders represent the world alike?

The public Python API, for people who bring their own arrays (rows are paired samples)::

    from vlalign import cka, cka_bootstrap, mutual_knn
    cka(x, y, kernel="rbf")            # CKA of (n, d1) and (n, d2) embeddings
    cka_bootstrap(x, y, n_boot=200)    # with a bias-shifted bootstrap interval
    mutual_knn(x, y, k=10)             # mutual k-nearest-neighbour agreement

These names are stable. The layers below them: ``vlalign.methods`` (the math), ``vlalign.datasets`` (formats and
readers), ``vlalign.encoders``, ``vlalign.datalake`` (files, catalog, query door), ``vlalign.engine`` (spec, shards,
cells), ``vlalign.report`` and ``vlalign.cli``; the Prefect flows and tasks are ``vlalign.flows`` and
``vlalign.tasks`` (the folders flows/ and tasks/ at the repository root).
"""

from vlalign.methods.cka import cka, cka_bootstrap, cka_grid, cka_shuffled
from vlalign.methods.measures import mutual_knn

__all__ = ["cka", "cka_bootstrap", "cka_grid", "cka_shuffled", "mutual_knn"]
