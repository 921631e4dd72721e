-- report_concept_breakdown_rows: P@k of one run's concept alignment per bin of a concept property
-- (dispersion, word_frequency, polysemy), one row per (dataset, vision_encoder, text_encoder, mapping,
-- retrieval, property, bin) with low, high, n, n_missing, p_at_1, p_at_10, p_at_100 and note (why a property
-- has no bins, e.g. no offline WordNet). Ordered by the key columns.
-- Parameters: $run_id.
SELECT dataset, vision_encoder, text_encoder, mapping, retrieval, property, bin, low, high, n, n_missing,
       p_at_1, p_at_10, p_at_100, note
FROM concept_breakdown
WHERE run_id = $run_id
QUALIFY row_number() OVER (
    PARTITION BY dataset, vision_encoder, text_encoder, mapping, retrieval, property, bin ORDER BY cell_id) = 1
ORDER BY dataset, vision_encoder, text_encoder, mapping, retrieval, property, bin;
