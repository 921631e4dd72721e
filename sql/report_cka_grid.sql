-- report_cka_grid: the cells of the CKA heat maps of one run, one row per (kernel, vision_encoder,
-- text_encoder) with v, the mean CKA, and s, the mean CKA of the shuffled pairing (means over data sets,
-- seeds and settings). Unordered: the plot places each row by its encoders.
-- Parameters: $run_id.
SELECT
    kernel,
    vision_encoder,
    text_encoder,
    avg(value)          AS v,
    avg(shuffled_value) AS s
FROM cka
WHERE run_id = $run_id
GROUP BY ALL;
