"""Every `vlalign` command's arguments, in one parser. Each command names its handler as "module:function" in a
command-group module (vlalign.cli.data, .sweep, .lake, .explain), imported only when that command runs, so that
`vlalign query` never pays for PyTorch or Prefect and `vlalign --help` answers at once."""

from __future__ import annotations

import argparse

from vlalign.cli.args import (
    add_cluster_args,
    add_dataset_args,
    add_lake_arg,
    checked_name,
    nonempty,
    positive_float,
    positive_int,
)
from vlalign.datalake.limits import DEFAULT_LIMITS


def _data(sub) -> None:
    p = sub.add_parser("encoders", help="list the encoder catalog")
    p.add_argument("--format", default="table", choices=["table", "json"])
    p.set_defaults(handler="vlalign.cli.data:cmd_encoders")

    p = sub.add_parser("datasets", help="list the embedded data set and the data set formats")
    p.set_defaults(handler="vlalign.cli.data:cmd_datasets")

    p = sub.add_parser("extract", help="embed a data set with some encoders (sharded, resumable)")
    add_dataset_args(p)
    p.add_argument("--encoders", required=True, help="comma-separated encoder names (see `vlalign encoders`)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="units per shard (default 256)")
    add_cluster_args(p)
    p.set_defaults(handler="vlalign.cli.data:cmd_extract")


def _sweeps(sub) -> None:
    p = sub.add_parser("run", help="the main job: the default sweep on the embedded data set")
    p.add_argument("--spec", default=None, help="a sweep spec (default: the built-in default spec)")
    p.add_argument("--run-id", type=checked_name("--run-id"), default=None)
    add_cluster_args(p)
    p.set_defaults(handler="vlalign.cli.sweep:cmd_sweep")

    p = sub.add_parser("sweep", help="run a sweep from a YAML spec")
    p.add_argument("spec")
    p.add_argument("--run-id", type=checked_name("--run-id"), default=None)
    add_cluster_args(p)
    p.set_defaults(handler="vlalign.cli.sweep:cmd_sweep")

    p = sub.add_parser("resume", help="finish a run that failed or was killed; computes only what is missing")
    p.add_argument("run_id", type=checked_name("RUN_ID"))
    add_cluster_args(p)
    p.set_defaults(handler="vlalign.cli.sweep:cmd_resume")

    p = sub.add_parser("spec", help="check a sweep spec as `vlalign sweep` does (encoders and data sets too) and "
                       "print its run id, or print the spec format's JSON schema")
    p.add_argument("spec", nargs="?", default=None, help="a sweep spec (default: the built-in default spec)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of sweep specs (for editors) and exit")
    p.set_defaults(handler="vlalign.cli.sweep:cmd_spec")


def _lake(sub) -> None:
    p = sub.add_parser("query", help="run read-only SQL over the lake's tables")
    p.add_argument("sql")
    p.add_argument("--format", default="table", choices=["table", "csv", "json"],
                   help="table (at most 10,000 rows shown), or csv / json (every row, streamed)")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_LIMITS.seconds, metavar="SECONDS",
                   help=f"stop the query after this long (default {DEFAULT_LIMITS.seconds:g})")
    p.add_argument("--memory-limit", default=DEFAULT_LIMITS.memory, metavar="SIZE",
                   help=f"DuckDB's memory limit for the query, e.g. 2GB (default {DEFAULT_LIMITS.memory})")
    add_lake_arg(p)
    p.set_defaults(handler="vlalign.cli.lake:cmd_query")

    p = sub.add_parser("report", help="summary, plots and an HTML page (report.html) of a run")
    p.add_argument("run_id", nargs="?", type=checked_name("RUN_ID"), default=None, help="default: the latest run")
    add_lake_arg(p)
    p.add_argument("--out", type=nonempty, default=None,
                   help="folder for the PNGs and report.html (default: <lake>/reports/run=<RUN_ID>/)")
    p.set_defaults(handler="vlalign.cli.lake:cmd_report")

    p = sub.add_parser("verify", help="check every file the runs list against its checksum and identity; "
                                      "--repair recomputes the damaged ones")
    p.add_argument("run_ids", nargs="*", type=checked_name("RUN_ID"), help="only these runs' files (default: every run)")
    p.add_argument("--repair", action="store_true",
                   help="set damaged files aside in <lake>/_damaged/ and resume the runs that listed them")
    add_cluster_args(p)
    p.set_defaults(handler="vlalign.cli.lake:cmd_verify")

    p = sub.add_parser("server", help="the background Prefect API server vlalign keeps for later commands")
    p.add_argument("action", choices=["status", "stop"])
    p.set_defaults(handler="vlalign.cli.lake:cmd_server")


def _explain(sub) -> None:
    p = sub.add_parser("explain", help="feature-pair attributions (integrated Jacobians) of image-caption pairs")
    p.add_argument("--item", action="append", default=None, type=nonempty,
                   help="an item id of the data set, e.g. google/en/1f431 for emoji (repeat for several)")
    p.add_argument("--top", type=positive_int, default=None,
                   help="explain the N best-matched query pairs of the run's (or default split's) cell")
    p.add_argument("--run", type=checked_name("--run"), default=None,
                   help="take the base set (and the encoders' embeddings) from this sweep run's matching cell "
                        "(default: the default split, as `vlalign run` makes it)")
    p.add_argument("--dataset", type=checked_name("--dataset"), default=None,
                   help="the data set (default: the run's first; emoji)")
    p.add_argument("--domain", default=None, help="--top: the queries' domain (default: the main grid's first)")
    p.add_argument("--lang", default=None, help="--top: the queries' language (default: the main grid's first)")
    p.add_argument("--vision", default="mobilenetv2", help="vision encoder (mobilenetv2, efficientnet-lite*)")
    p.add_argument("--text", default="minilm-l6", help="text encoder (a BERT-like sentence-transformers model)")
    p.add_argument("--steps", type=int, default=None, help="integration steps (default: the library's, 64)")
    p.add_argument("--seed", type=int, default=None, help="the cell's seed (default: the spec's first)")
    p.add_argument("--base-size", type=int, default=None,
                   help="instead of a cell's base: N seeded random emoji pairs (0: the encoders are aligned)")
    p.add_argument("--show", type=int, default=5, help="(region, token) pairs printed per item")
    p.add_argument("--out", type=nonempty, required=True, help="folder for the PNGs and explanations.parquet")
    add_lake_arg(p, "the lake that holds the run and gets the `attributions` table (a run explain-<digest>)")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(handler="vlalign.cli.explain:cmd_explain")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vlalign", description="Do vision and language encoders represent the world alike?")
    ap.add_argument("--verbose", action="store_true",
                    help="show Prefect's line for every finished task too (default: the flows' progress lines only)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for group in (_data, _sweeps, _lake, _explain):
        group(sub)
    return ap
