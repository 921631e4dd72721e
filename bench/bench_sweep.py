"""End-to-end sweep (extraction cached) vs the summed time of the same library calls made directly.

Both sides compute the same analysis cells of the same spec on the same embeddings:
- the flow: `sweep_flow` on a Dask LocalCluster (W processes x 1 thread), a fresh run id so every cell is
  computed; its time includes validating the spec, planning (the extraction step finds every shard cached),
  pairing in DuckDB, the Dask cluster start, Prefect task bookkeeping, writing Parquet and the catalog;
- direct: one process calling `run_cka_cell` / `run_match_cell` for the same cells in a loop, results in memory.
The Prefect API server is started before timing. The results of both are compared.

    .venv/bin/python bench/bench_sweep.py [--spec FILE] [--lake DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

QUICK = {
    "name": "bench-quick",
    "datasets": [{"name": "emoji", "domains": ["google"], "langs": ["en"]}],
    "vision_encoders": ["mobilenetv2"],
    "text_encoders": ["minilm-l6", "wordllama"],
    "analyses": {"cka": {"kernels": ["linear", "rbf"]}, "matching": ["qap", "local_cka"], "retrieval": ["local_cka"],
                 "baselines": ["linear_regression", "relative", "procrustes"], "qap": {"restarts": 20}},
    "base_size": 320, "query_size": 500, "base_selection": "kmeans_image", "stretch": True, "seeds": [0, 1],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=None, help="sweep spec (default: the built-in default, 4 x 3 encoders)")
    ap.add_argument("--lake", default=None, help="a lake that already holds the embeddings (else a temp lake)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 vision x 2 text encoders, 2 seeds")
    args = ap.parse_args()

    from vlalign.flows.runtime import configure_environment, dask_task_runner, prefect_api

    work = tempfile.mkdtemp(prefix="bench-sweep-")
    configure_environment(work)
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.datalake.store import Lake
    from vlalign.engine.scoring import compute_cell
    from vlalign.engine.spec import load_spec, parse_spec, resolve_spec
    from vlalign.flows.sweep import plan_sweep, sweep_flow

    doc = QUICK if args.quick else (resolve_spec(args.spec).source if args.spec else load_spec().source)
    spec = parse_spec(doc)
    lake_root = args.lake or os.path.join(work, "lake")
    with prefect_api(keep=0):  # a temporary API server: nothing outlives the benchmark
        runner = lambda: dask_task_runner(None, args.workers)  # noqa: E731
        print("warming up: extraction (not timed) ...", flush=True)
        sweep_flow.with_options(task_runner=runner())(spec=doc, lake_root=lake_root, run_id="bench-warmup")

        # cells are shared by content: the timed run gets a lake with the embeddings but no results
        timed_root = os.path.join(work, "timed-lake")
        for sub in ("items", "embeddings"):
            shutil.copytree(os.path.join(lake_root, sub), os.path.join(timed_root, sub))
        run_id = f"bench-{int(time.time())}"
        t0 = time.perf_counter()
        out = sweep_flow.with_options(task_runner=runner())(spec=doc, lake_root=timed_root, run_id=run_id)
        t_flow = time.perf_counter() - t0
        cells = plan_sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(spec=doc, lake_root=lake_root)

    lake = Lake.open(timed_root)
    t0 = time.perf_counter()
    direct = []
    for c in cells:
        direct.append(compute_cell(c))
    t_direct = time.perf_counter() - t0

    # the same numbers both ways
    from vlalign.datalake.catalog import query

    flow_acc = {(r["vision_encoder"], r["text_encoder"], r["method"], r["seed"]): r["accuracy"]
                for r in query(lake, "select * from matching where run_id = $r", {"r": run_id}).to_pylist()}
    direct_acc = {(r["vision_encoder"], r["text_encoder"], r["method"], r["seed"]): r["accuracy"]
                  for d in direct for r in d.get("matching", [])}
    same = flow_acc == direct_acc

    n_enc = f"{len(spec.vision_encoders)} vision x {len(spec.text_encoders)} text"
    print(f"spec {spec.name}: {n_enc}, {len(spec.settings())} settings, {len(cells)} cells "
          f"(base {spec.base_size}, query {spec.query_size}, QAP restarts {spec.qap_restarts})")
    print(f"flow   (Dask {args.workers} workers x 1 thread, extraction cached): {t_flow:7.1f} s")
    print(f"direct (same library calls, one process, serial):       {t_direct:7.1f} s")
    print(f"ratio flow / direct = {t_flow / t_direct:.2f}  (target <= 1.5)")
    print(f"matching accuracies identical both ways: {same} ({len(flow_acc)} values)")
    print(f"(flow computed {out['computed']} cells)")


if __name__ == "__main__":
    main()
