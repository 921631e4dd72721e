-- report_run_cells: the analysis cells one run lists, counted per result table: one row per table (table_name,
-- cells), ordered by table_name.
-- Parameters: $run_id.
SELECT table_name, count(*) AS cells
FROM run_cells
WHERE run_id = $run_id
GROUP BY table_name
ORDER BY table_name;
