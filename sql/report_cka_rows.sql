-- report_cka_rows: every CKA row of one run (dataset, domain, lang, vision_encoder, text_encoder, kernel,
-- debiased, n, value, shuffled_value, ci_low, ci_high, seed, note), ordered by kernel, debiased, dataset,
-- domain, lang, vision_encoder, text_encoder.
-- Parameters: $run_id.
SELECT dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased, n, value, shuffled_value,
       ci_low, ci_high, seed, note
FROM cka
WHERE run_id = $run_id
ORDER BY kernel, debiased, dataset, domain, lang, vision_encoder, text_encoder;
