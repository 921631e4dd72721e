-- report_cka_grid: the cells of the CKA heat maps of one run, one row per (kernel, debiased, vision_encoder,
-- text_encoder): v, the mean value, s, the mean value of the shuffled pairing, ci_low and ci_high, the mean
-- bounds of the 95% bootstrap interval (NULL where none was computed), c, the mean calibrated value, p, the largest
-- p-value (NULL without calibration), and n, the rows averaged (data sets,
-- domains, languages). Ordered by kernel, debiased, vision_encoder, text_encoder.
-- The encoders' outputs only (vision_layer = text_layer = -1, or NULL in cells made before the layer columns);
-- the other layer pairs are in the cka table.
-- Parameters: $run_id.
SELECT
    kernel,
    debiased,
    vision_encoder,
    text_encoder,
    avg(value)          AS v,
    avg(shuffled_value) AS s,
    avg(ci_low)         AS ci_low,
    avg(ci_high)        AS ci_high,
    avg(calibrated)     AS c,
    max(p_value)        AS p,
    count(value)        AS n
FROM cka
WHERE run_id = $run_id AND coalesce(vision_layer, -1) = -1 AND coalesce(text_layer, -1) = -1
GROUP BY kernel, debiased, vision_encoder, text_encoder
ORDER BY kernel, debiased, vision_encoder, text_encoder;
