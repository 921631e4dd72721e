-- report_classification_rows: the zero-shot classification results of one run, one row per result (dataset,
-- domain, lang, vision_encoder, text_encoder, label_field, template_set, method, seed) with n (queries),
-- n_classes, accuracy, chance, majority (the accuracy of always answering the commonest class) and note.
-- Ordered by label_field, then the other key columns.
-- Parameters: $run_id.
SELECT dataset, domain, lang, vision_encoder, text_encoder, label_field, template_set, method, seed, n,
       n_classes, accuracy, chance, majority, note
FROM classification
WHERE run_id = $run_id
QUALIFY row_number() OVER (
    PARTITION BY dataset, domain, lang, vision_encoder, text_encoder, label_field, template_set, method, seed
    ORDER BY cell_id) = 1
ORDER BY label_field, dataset, domain, lang, vision_encoder, text_encoder, template_set, method, seed;
