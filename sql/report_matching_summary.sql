-- report_matching_summary: the matching results of one run averaged over seeds and settings, one row per
-- (method, vision_encoder, text_encoder) with its mean accuracy and mean chance level; ordered by method, then
-- by accuracy, best first.
-- Parameters: $run_id.
SELECT
    method,
    vision_encoder,
    text_encoder,
    avg(accuracy) AS accuracy,
    avg(chance)   AS chance
FROM matching
WHERE run_id = $run_id
GROUP BY ALL
ORDER BY method, accuracy DESC;
