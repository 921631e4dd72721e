-- report_best_layers: the best layer pair of every (data set, domain, lang, vision encoder, text encoder, measure) of
-- one run (the best_layers view): by the raw value (vision_layer, text_layer, value, p_value_layers: corrected for the
-- search over layer pairs) and by the calibrated value; output_value, the encoders' outputs' value. Only cells that
-- measured more than one layer pair. Ordered by kernel, debiased, vision_encoder, text_encoder.
-- Parameters: $run_id.
SELECT dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased, layer_pairs, vision_layer, text_layer,
       vision_layer_name, text_layer_name, value, p_value_layers, calibrated_vision_layer, calibrated_text_layer,
       calibrated, output_value, permutations
FROM best_layers
WHERE run_id = $run_id AND layer_pairs > 1
ORDER BY kernel, debiased, dataset, domain, lang, vision_encoder, text_encoder;
