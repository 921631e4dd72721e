-- report_cka_rows: every CKA row of one run (dataset, domain, lang, vision_encoder, text_encoder, kernel,
-- debiased, n, value, shuffled_value, ci_low, ci_high, seed, note, tau, p_value, calibrated), ordered by kernel,
-- debiased, dataset,
-- domain, lang, vision_encoder, text_encoder.
-- The encoders' outputs only (vision_layer = text_layer = -1, or NULL in cells made before the layer columns);
-- the other layer pairs are in the cka table.
-- Parameters: $run_id.
SELECT dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased, n, value, shuffled_value,
       ci_low, ci_high, seed, note, tau, p_value, calibrated
FROM cka
WHERE run_id = $run_id AND coalesce(vision_layer, -1) = -1 AND coalesce(text_layer, -1) = -1
ORDER BY kernel, debiased, dataset, domain, lang, vision_encoder, text_encoder;
