-- report_datasets: the data sets that one run has CKA, matching or classification results on, one row each
-- (dataset), ordered by name.
-- Parameters: $run_id.
SELECT DISTINCT dataset FROM cka WHERE run_id = $run_id
UNION
SELECT DISTINCT dataset FROM matching WHERE run_id = $run_id
UNION
SELECT DISTINCT dataset FROM classification WHERE run_id = $run_id
ORDER BY dataset;
