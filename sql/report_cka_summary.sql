-- report_cka_summary: the CKA results of one run, one row per measure (kernel, debiased), ordered by kernel then
-- debiased (biased first): n (rows), mean_value and mean_shuffled (mean value and mean value of the shuffled
-- pairing), beats_shuffled (rows whose value exceeds their shuffled value), best_pair ('<vision_encoder> x
-- <text_encoder>' of the highest value), best_value, mean_calibrated and significant (rows with p_value <= alpha;
-- NULL without calibration). Rows without a value (see note) are not counted.
-- The encoders' outputs only (vision_layer = text_layer = -1, or NULL in cells made before the layer columns);
-- the other layer pairs are in the cka table.
-- Parameters: $run_id.
SELECT
    kernel,
    debiased,
    count(*)                                                   AS n,
    avg(value)                                                 AS mean_value,
    avg(shuffled_value)                                        AS mean_shuffled,
    sum((value > shuffled_value)::INT)                         AS beats_shuffled,
    arg_max(vision_encoder || ' x ' || text_encoder, value)    AS best_pair,
    max(value)                                                 AS best_value,
    avg(calibrated)                                            AS mean_calibrated,
    sum((p_value <= alpha)::INT)                               AS significant
FROM cka
WHERE run_id = $run_id AND value IS NOT NULL AND coalesce(vision_layer, -1) = -1 AND coalesce(text_layer, -1) = -1
GROUP BY kernel, debiased
ORDER BY kernel, debiased;
