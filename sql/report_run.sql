-- report_run: the record of one run (run_id, spec: the spec as the user wrote it, as JSON, status, started_at,
-- finished_at, flow, cells_total, cells_done, cells_computed, error): one row, or none for an unknown run.
-- Parameters: $run_id.
SELECT run_id, spec, status, started_at, finished_at, flow, cells_total, cells_done, cells_computed, error
FROM runs
WHERE run_id = $run_id;
