-- report_rejects: the items of one data set that ingestion rejected, counted per stage: one row per stage
-- (stage, n), ordered by stage.
-- Parameters: $dataset.
SELECT
    stage,
    count(*) AS n
FROM rejects
WHERE dataset = $dataset
GROUP BY stage
ORDER BY stage;
