"""`vlalign query`, `vlalign report`, `vlalign verify`, `vlalign server`: reading, checking and serving a lake."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vlalign.cli.output import write_rows
from vlalign.cli.sweep import run_sweep
from vlalign.datalake.catalog import open_lake_query, query
from vlalign.datalake.limits import Limits
from vlalign.datalake.runs import read_run
from vlalign.datalake.store import Lake
from vlalign.engine.verify import set_aside, verify_lake
from vlalign.flows.apiserver import HomeServer
from vlalign.report.build import build_report


def cmd_query(args: argparse.Namespace) -> int:
    """`vlalign query SQL [--format table|csv|json] [--timeout S] [--memory-limit SIZE]`: rows streamed out."""
    limits = Limits(seconds=args.timeout, memory=args.memory_limit)
    with open_lake_query(args.lake, args.sql, limits=limits) as (schema, batches):
        write_rows(schema, batches, args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`vlalign report [RUN_ID] [--out DIR]`: the summary, the PNGs and, last, the path of report.html."""
    lake = Lake.existing(args.lake)
    runs = [r["run_id"] for r in query(lake, "select run_id from runs order by started_at desc").to_pylist()]
    if not runs:
        raise FileNotFoundError(f"no runs in {lake.root}")
    run_id = args.run_id or runs[0]
    if run_id not in runs:
        raise FileNotFoundError(f"no run {run_id!r} in {lake.root}; known runs (latest first): {runs[:10]}")
    report = build_report(lake, run_id, args.out)
    print(report.summary)
    print("plots:")
    for p in report.plots:
        print(f"  {p}")
    print(f"report: {report.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """`vlalign verify [RUN_ID ...] [--repair]`: every file the run records list, checked; rc 1 if any is damaged."""
    lake = Lake.existing(args.lake)
    problems, checked = verify_lake(lake, args.run_ids or None,
                                    progress=lambda n, total: print(f"  checked {n}/{total} files", flush=True))
    for p in problems:
        print(p.line())
    print(f"{checked} files checked, {len(problems)} damaged or misplaced")
    if not problems:
        return 0
    if not args.repair:
        print("`vlalign verify --repair` sets them aside and recomputes them (vlalign resume of the runs listing them)")
        return 1
    print(f"set aside in {set_aside(lake, problems)}")
    for run_id in sorted({r for p in problems for r in p.runs if p.kind != "record"}):
        record = read_run(lake, run_id)
        if record.get("flow") != "sweep":
            print(f"run {run_id} is a {record.get('flow')} run: run it again to recompute its files")
            continue
        print(f"resuming run {run_id} to recompute what was set aside")
        run_sweep(args, record["spec"], run_id)
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """`vlalign server status|stop`: the home Prefect API server (flows/apiserver.py) of $PREFECT_HOME."""
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
