-- report_matching_bars: the bars of the matching plot of one run, one row per (method, pair) with
-- pair = '<vision_encoder> x <text_encoder>', acc, the mean accuracy, and chance, the mean chance level;
-- ordered by pair.
-- Parameters: $run_id.
SELECT
    method,
    vision_encoder || ' x ' || text_encoder AS pair,
    avg(accuracy)                           AS acc,
    avg(chance)                             AS chance
FROM matching
WHERE run_id = $run_id
GROUP BY ALL
ORDER BY pair;
