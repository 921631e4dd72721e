"""The `vlalign` command: the user's door to the flows and the lake.

    vlalign encoders                      list the encoder catalog
    vlalign datasets                      list the embedded data set and the data set formats
    vlalign extract --dataset emoji --encoders mobilenetv2,minilm-l6
    vlalign run [--spec sweep.yaml]       the main job (the sweep on the embedded default unless a spec is given)
    vlalign sweep SPEC.yaml               a sweep from a spec
    vlalign resume RUN_ID                 finish a run that failed or was killed
    vlalign query "SQL" [--format table|csv|json]
    vlalign report [RUN_ID] [--out DIR]   a summary, plots and report.html of a run
    vlalign server status|stop            the background Prefect API server kept for later commands
    vlalign spec [SPEC.yaml] [--schema]   check a sweep spec (run id if valid), or print its JSON schema
    vlalign explain --item google/en/1f431 [--run RUN_ID] [--top N] --vision mobilenetv2 --text minilm-l6 --out DIR

Prefect and Dask are imported lazily, after the environment defaults are set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vlalign.cli.args import checked_name, nonempty, positive_float, positive_int
from vlalign.cli.explain import add_parser as add_explain_parser
from vlalign.cli.explain import cmd_explain
from vlalign.cli.output import print_table
from vlalign.lake.sqldoor import DEFAULT_LIMITS


def _csv(s: str | None) -> list[str] | None:
    if not s:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", type=nonempty, default=os.environ.get("VLALIGN_LAKE", "lake"), help="lake root: a folder or fsspec URL (default ./lake, or $VLALIGN_LAKE)")
    p.add_argument("--dask-address", default=os.environ.get("VLALIGN_DASK_ADDRESS"), help="scheduler address of an existing Dask cluster (default: a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None, help="LocalCluster worker processes (default: min(2, cores))")
    p.add_argument("--device", default=None, help="torch device for encoders (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="encoder batch size (default: 8 on CPU, 64 on CUDA)")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    from vlalign.datasets.formats import FORMAT_NAMES

    p.add_argument("--dataset", type=checked_name("--dataset"), default="emoji", help="data set name ('emoji' is embedded; others need --format F --images PATH ...)")
    p.add_argument("--format", default=None, choices=FORMAT_NAMES, help="data set format, see `vlalign datasets` (default: emoji for 'emoji', else coco)")
    p.add_argument("--annotations", default=None, help="coco, karpathy: the JSON file; xtd: the caption files' folder or pattern; imagefolder: class names (optional)")
    p.add_argument("--images", default=None, help="the image folder; webdataset: tar shards ('data-{000..009}.tar', a folder, one .tar); img2dataset, hf-imagefolder: the data set's folder")
    p.add_argument("--split", default=None, help="karpathy: train|val|test|restval (comma-separated for several); hf-imagefolder: a split folder (default: all)")
    p.add_argument("--lang", default=None, help="the captions' language, for formats with one language (default: en)")
    p.add_argument("--domains", default=None, help="comma-separated domains to embed (default: all)")
    p.add_argument("--langs", default=None, help="comma-separated caption languages to embed (default: all)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vlalign", description="Do vision and language encoders represent the world alike?")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("encoders", help="list the encoder catalog")
    p.add_argument("--format", default="table", choices=["table", "json"])

    sub.add_parser("datasets", help="list the embedded data set and the data set formats")

    p = sub.add_parser("extract", help="embed a data set with some encoders (sharded, resumable)")
    _add_dataset_args(p)
    p.add_argument("--encoders", required=True, help="comma-separated encoder names (see `vlalign encoders`)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="units per shard (default 256)")
    _add_cluster_args(p)

    p = sub.add_parser("run", help="the main job: the default sweep on the embedded data set")
    p.add_argument("--spec", default=None, help="a sweep spec (default: the built-in default spec)")
    p.add_argument("--run-id", type=checked_name("--run-id"), default=None)
    _add_cluster_args(p)

    p = sub.add_parser("sweep", help="run a sweep from a YAML spec")
    p.add_argument("spec")
    p.add_argument("--run-id", type=checked_name("--run-id"), default=None)
    _add_cluster_args(p)

    p = sub.add_parser("resume", help="finish a run that failed or was killed; computes only what is missing")
    p.add_argument("run_id", type=checked_name("RUN_ID"))
    _add_cluster_args(p)

    p = sub.add_parser("query", help="run read-only SQL over the lake's tables")
    p.add_argument("sql")
    p.add_argument("--format", default="table", choices=["table", "csv", "json"],
                   help="table (at most 10,000 rows shown), or csv / json (every row, streamed)")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_LIMITS.seconds, metavar="SECONDS",
                   help=f"stop the query after this long (default {DEFAULT_LIMITS.seconds:g})")
    p.add_argument("--memory-limit", default=DEFAULT_LIMITS.memory, metavar="SIZE",
                   help=f"DuckDB's memory limit for the query, e.g. 2GB (default {DEFAULT_LIMITS.memory})")
    p.add_argument("--lake", type=nonempty, default=os.environ.get("VLALIGN_LAKE", "lake"))

    p = sub.add_parser("verify", help="check every file the runs list against its checksum and identity; "
                                      "--repair recomputes the damaged ones")
    p.add_argument("run_ids", nargs="*", type=checked_name("RUN_ID"), help="only these runs' files (default: every run)")
    p.add_argument("--repair", action="store_true",
                   help="set damaged files aside in <lake>/_damaged/ and resume the runs that listed them")
    _add_cluster_args(p)

    p = sub.add_parser("report", help="summary, plots and an HTML page (report.html) of a run")
    p.add_argument("run_id", nargs="?", type=checked_name("RUN_ID"), default=None, help="default: the latest run")
    p.add_argument("--lake", type=nonempty, default=os.environ.get("VLALIGN_LAKE", "lake"))
    p.add_argument("--out", type=nonempty, default=None,
                   help="folder for the PNGs and report.html (default: <lake>/reports/run=<RUN_ID>/)")

    add_explain_parser(sub)

    p = sub.add_parser("server", help="the background Prefect API server vlalign keeps for later commands")
    p.add_argument("action", choices=["status", "stop"])

    p = sub.add_parser("spec", help="check a sweep spec as `vlalign sweep` does (encoders and data sets too) and "
                       "print its run id, or print the spec format's JSON schema")
    p.add_argument("spec", nargs="?", default=None, help="a sweep spec (default: the built-in default spec)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of sweep specs (for editors) and exit")
    return ap


def _dataset_source(args):
    from vlalign.datasets.formats import FORMATS, default_format, key_problems
    from vlalign.datasets.readers import DatasetSource

    fmt = args.format or default_format(args.dataset)
    problems = key_problems(fmt, args.annotations, args.images, args.split, args.lang)
    if problems:  # in the command line's words
        for k in ("annotations", "images", "split", "lang", "langs"):
            problems = [p.replace(f"{k!r}", f"--{k}") for p in problems]
        raise ValueError(f"--format {fmt}: " + "; ".join(problems) + f" (usage: --format {fmt} {FORMATS[fmt].usage})")
    return DatasetSource(name=args.dataset, format=fmt, annotations=args.annotations, images=args.images,
                         lang=args.lang or "en", split=args.split)


def cmd_encoders(args) -> int:
    from vlalign.encoders import is_available, list_encoders

    rows = []
    for spec in list_encoders():
        ok, why = is_available(spec)
        langs = {True: "multilingual", False: "English", None: "-"}[spec.multilingual] if spec.modality == "text" else "-"
        rows.append({"name": spec.name, "modality": spec.modality, "dim": spec.dim, "pooling": spec.pooling,
                     "languages": langs,
                     "offline": "yes" if ok and spec.offline else ("no" if not ok else "hub"), "source": spec.source,
                     **({"note": why} if why else {})})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["name", "modality", "dim", "pooling", "languages", "offline", "source"])
        print("\nHub names also work where there is network: timm/<model>, st/<model>, hf/<repo>.")
    return 0


def cmd_datasets(args) -> int:
    from vlalign.datasets.formats import FORMATS
    from vlalign.datasets.readers import EMOJI_DOMAINS, EMOJI_LANGS

    print("emoji   embedded   1906 emoji x domains " + ",".join(EMOJI_DOMAINS) + "; captions in " + ",".join(EMOJI_LANGS))
    print("        labels: label = CLDR category, sublabel = subcategory; see data/README.md")
    print("\nformats (vlalign extract --dataset NAME --format F --images PATH [--annotations FILE]; the same keys in a spec):")
    width = max(len(f) for f in FORMATS)
    for f in FORMATS.values():
        print(f"  {f.name:<{width}}  {f.summary}")
    return 0


def cmd_extract(args) -> int:
    from vlalign.datasets.readers import check_dataset, check_source
    from vlalign.encoders import preflight

    source = _dataset_source(args)
    check_source(source)  # the cheap checks: the files exist, the structure is sound
    encoders = _csv(args.encoders) or []
    preflight(encoders)  # before any Prefect or Dask start-up
    check_dataset(source)  # a one-file index (emoji, coco, karpathy) is read now, and kept for the ingest
    from vlalign.flows.extract import extract_flow
    from vlalign.flows.runtime import dask_task_runner, prefect_api

    with prefect_api():
        result = extract_flow.with_options(task_runner=dask_task_runner(args.dask_address, args.workers))(
            dataset=source,
            encoders=encoders,
            lake_root=args.lake,
            shard_size=args.shard_size,
            domains=_csv(args.domains),
            langs=_csv(args.langs),
            batch_size=args.batch_size,
            device=args.device,
        )
    print(
        f"\nembedded {result['rows_computed']} units in {result['shards_computed']} new shards "
        f"({result['shards_planned']} planned); {result['rejects']} rejects; lake: {result['lake']}"
    )
    return 0


def cmd_spec(args) -> int:
    """`vlalign spec --schema`: the JSON schema; `vlalign spec [FILE]`: every check `vlalign sweep` makes before
    work starts (structure and values, encoders, data sets) and a one-line OK with the run id."""
    from vlalign.engine.spec import DEFAULT_SPEC, json_schema
    from vlalign.engine.world import check_spec

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    spec = check_spec(args.spec).spec  # a SpecError (a ValueError) is main()'s one-line error, exit code 2
    print(f"{args.spec or DEFAULT_SPEC}: OK, run id {spec.default_run_id} ({len(spec.datasets)} data set(s), "
          f"{len(spec.vision_encoders)} x {len(spec.text_encoders)} encoders, {len(spec.settings())} setting(s))")
    return 0


def cmd_server(args) -> int:
    """`vlalign server status|stop`: the home Prefect API server (flows/apiserver.py) of $PREFECT_HOME."""
    from pathlib import Path

    from vlalign.flows.apiserver import HomeServer

    server = HomeServer(Path(os.environ["PREFECT_HOME"]), 0)
    state = server.running()
    if args.action == "status":
        if os.environ.get("PREFECT_API_URL"):
            print(f"PREFECT_API_URL is set: commands use {os.environ['PREFECT_API_URL']}")
        if state:
            print(f"running: {state['url']} (pid {state['pid']}, stops after {state['keep']:.0f}s unused)")
        else:
            print(f"not running (the next flow command starts one; home {server.home})")
        return 0
    print("stopped" if server.stop() else "not running")
    return 0


COMMANDS = {"server": cmd_server, "encoders": cmd_encoders, "datasets": cmd_datasets, "extract": cmd_extract, "spec": cmd_spec,
            "explain": cmd_explain}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vlalign.flows.runtime import configure_environment

    configure_environment()
    handler = COMMANDS.get(args.cmd)
    if handler is None:
        from vlalign.cli import sweep as cli_sweep  # run, sweep, resume, query, report

        handler = cli_sweep.COMMANDS[args.cmd]
    try:
        return handler(args) or 0
    except BrokenPipeError:
        # the reader went away (`vlalign query ... | head`): stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError) as e:
        # bad input: a clear message, no traceback (VLALIGN_DEBUG=1 shows it)
        if os.environ.get("VLALIGN_DEBUG"):
            raise
        print(f"vlalign {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
