-- report_retrieval_rows: the retrieval results of one run, one row per result (dataset, domain, lang,
-- base_domain, query_domain, vision_encoder, text_encoder, method, direction, base_size, query_size,
-- base_selection, stretch, seed) with r1, r5, r10 (recall at 1, 5, 10) and note. A result that two cells of the
-- run hold comes once. Ordered by those key columns.
-- Parameters: $run_id.
SELECT dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method, direction,
       base_size, query_size, base_selection, stretch, seed, r1, r5, r10, note
FROM retrieval
WHERE run_id = $run_id
QUALIFY row_number() OVER (
    PARTITION BY dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method,
                 direction, base_size, query_size, base_selection, stretch, seed
    ORDER BY cell_id) = 1
ORDER BY dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method, direction,
         base_size, query_size, base_selection, stretch, seed;
