"""`vlalign run`, `vlalign sweep`, `vlalign resume`, `vlalign spec`: sweeps, and the check they start with."""

from __future__ import annotations

import argparse
import json

from vlalign.datalake.names import check_name
from vlalign.datalake.runs import read_run
from vlalign.datalake.store import Lake
from vlalign.engine.spec import DEFAULT_SPEC, json_schema
from vlalign.engine.world import check_spec
from vlalign.report.build import build_report


def run_sweep(args: argparse.Namespace, spec, run_id: str | None) -> int:
    """Check ``spec`` (a path, a mapping or None for the default), run the sweep flow, print the run's summary."""
    # Prefect and Dask take seconds to import: only the commands that run a flow pay for them
    from vlalign.flows.runtime import prefect_api, task_runner
    from vlalign.flows.sweep import sweep_flow

    if run_id is not None:
        check_name(run_id, "--run-id")
    checked = check_spec(spec)  # the checks of `vlalign spec`, once, before Prefect and Dask start
    with prefect_api():
        result = sweep_flow.with_options(task_runner=task_runner(args.dask_address, args.workers))(
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


def cmd_sweep(args: argparse.Namespace) -> int:
    """`vlalign run [--spec F]` and `vlalign sweep F`: the same sweep, the default spec when none is given."""
    return run_sweep(args, args.spec, args.run_id)


def cmd_resume(args: argparse.Namespace) -> int:
    check_name(args.run_id, "RUN_ID")
    lake = Lake.existing(args.lake)
    record = read_run(lake, args.run_id)
    print(f"resuming run {args.run_id} (was {record.get('status')}, {record.get('cells_done')}/{record.get('cells_total')} cells)")
    return run_sweep(args, record["spec"], args.run_id)


def cmd_spec(args: argparse.Namespace) -> int:
    """`vlalign spec --schema`: the JSON schema; `vlalign spec [FILE]`: every check `vlalign sweep` makes before
    work starts (structure and values, encoders, data sets) and a one-line OK with the run id."""
    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    spec = check_spec(args.spec).spec  # a SpecError (a ValueError) is main()'s one-line error, exit code 2
    print(f"{args.spec or DEFAULT_SPEC}: OK, run id {spec.default_run_id} ({len(spec.datasets)} data set(s), "
          f"{len(spec.vision_encoders)} x {len(spec.text_encoders)} encoders, {len(spec.settings())} setting(s))")
    return 0
