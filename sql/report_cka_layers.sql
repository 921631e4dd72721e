-- report_cka_layers: every layer pair's row of one run's CKA cells that measured more than one layer pair
-- (vision_encoder, text_encoder, kernel, debiased, vision_layer, text_layer, their names, value, calibrated,
-- p_value), for the layer-pair heat maps. Ordered by kernel, debiased, vision_encoder, text_encoder, layers.
-- Parameters: $run_id.
SELECT vision_encoder, text_encoder, kernel, debiased, vision_layer, text_layer, vision_layer_name, text_layer_name,
       avg(value) AS value, avg(calibrated) AS calibrated, max(p_value) AS p_value
FROM cka
WHERE run_id = $run_id AND cell_id IN (
    SELECT cell_id FROM cka WHERE run_id = $run_id GROUP BY cell_id HAVING count(*) > 1)
GROUP BY vision_encoder, text_encoder, kernel, debiased, vision_layer, text_layer, vision_layer_name, text_layer_name
ORDER BY kernel, debiased, vision_encoder, text_encoder, vision_layer, text_layer;
