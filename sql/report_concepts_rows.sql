-- report_concepts_rows: the concept-alignment results of one run (Li et al.), one row per result (dataset,
-- vision_encoder, text_encoder, mapping, retrieval, seed) with n_concepts, n_aliases, folds, p_at_1, p_at_10,
-- p_at_100 and note. Ordered by the key columns.
-- Parameters: $run_id.
SELECT dataset, vision_encoder, text_encoder, mapping, retrieval, seed, n_concepts, n_aliases, folds,
       p_at_1, p_at_10, p_at_100, note
FROM concepts
WHERE run_id = $run_id
QUALIFY row_number() OVER (
    PARTITION BY dataset, vision_encoder, text_encoder, mapping, retrieval, seed ORDER BY cell_id) = 1
ORDER BY dataset, vision_encoder, text_encoder, mapping, retrieval, seed;
