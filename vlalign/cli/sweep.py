"""CLI commands for sweeps and the lake: run, sweep, resume, query, report."""

from __future__ import annotations

from vlalign.cli.output import write_rows
from vlalign.engine.verify import set_aside, verify_lake
from vlalign.engine.world import check_spec
from vlalign.lake.catalog import open_lake_query
from vlalign.lake.names import check_name
from vlalign.lake.runs import read_run
from vlalign.lake.sqldoor import Limits
from vlalign.lake.store import Lake


def _run_sweep(args, spec, run_id):
    from vlalign.flows.runtime import dask_task_runner, prefect_api  # Prefect and Dask: only when a flow runs
    from vlalign.flows.sweep import sweep_flow
    from vlalign.report.build import build_report  # matplotlib

    if run_id is not None:
        check_name(run_id, "--run-id")
    checked = check_spec(spec)  # the checks of `vlalign spec`, once, before Prefect and Dask start
    with prefect_api():
        result = sweep_flow.with_options(task_runner=dask_task_runner(args.dask_address, args.workers))(
            spec=checked, lake_root=args.lake, run_id=run_id, device=args.device, batch_size=args.batch_size,
        )
    lake = Lake.open(args.lake)
    report = build_report(lake, result["run_id"])
    print()
    print(report.summary)
    print(f"\n{result['cells']} analysis cells ({result['computed']} computed now) in {result['seconds']:.1f}s")
    print(f"results: {lake.root}/results/  (SQL: vlalign query \"select * from matching where run_id = '{result['run_id']}'\")")
    print("plots:   " + ", ".join(report.plots))
    print(f"report: {report.path}")
    return 0


def cmd_sweep(args) -> int:
    """`vlalign run [--spec F]` and `vlalign sweep F`: the same sweep, the default spec when none is given."""
    return _run_sweep(args, args.spec, args.run_id)


def cmd_resume(args) -> int:
    check_name(args.run_id, "RUN_ID")
    lake = Lake.existing(args.lake)
    record = read_run(lake, args.run_id)
    print(f"resuming run {args.run_id} (was {record.get('status')}, {record.get('cells_done')}/{record.get('cells_total')} cells)")
    return _run_sweep(args, record["spec"], args.run_id)


def cmd_query(args) -> int:
    """`vlalign query SQL [--format table|csv|json] [--timeout S] [--memory-limit SIZE]`: rows streamed out."""
    limits = Limits(seconds=args.timeout, memory=args.memory_limit)
    with open_lake_query(args.lake, args.sql, limits=limits) as (schema, batches):
        write_rows(schema, batches, args.format)
    return 0


def cmd_report(args) -> int:
    """`vlalign report [RUN_ID] [--out DIR]`: the summary, the PNGs and, last, the path of report.html."""
    from vlalign.lake.catalog import query
    from vlalign.report.build import build_report

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


def cmd_verify(args) -> int:
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
    runs = sorted({r for p in problems for r in p.runs if p.kind != "record"})
    for run_id in runs:
        record = read_run(lake, run_id)
        if record.get("flow") != "sweep":
            print(f"run {run_id} is a {record.get('flow')} run: run it again to recompute its files")
            continue
        print(f"resuming run {run_id} to recompute what was set aside")
        _run_sweep(args, record["spec"], run_id)
    return 0


COMMANDS = {"run": cmd_sweep, "sweep": cmd_sweep, "resume": cmd_resume, "query": cmd_query, "report": cmd_report, "verify": cmd_verify}
