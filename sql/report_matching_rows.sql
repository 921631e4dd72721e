-- report_matching_rows: the matching results of one run, one row per result (dataset, domain, lang, base_domain,
-- query_domain, vision_encoder, text_encoder, method, base_size, query_size, base_selection, stretch, seed) with
-- accuracy, chance, note and protocol. A result that two cells of the run hold (a curve point that is also a
-- point of the main grid) comes once. Ordered by those key columns.
-- Parameters: $run_id.
SELECT dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method, base_size,
       query_size, base_selection, stretch, seed, accuracy, chance, note, protocol
FROM matching
WHERE run_id = $run_id
QUALIFY row_number() OVER (
    PARTITION BY dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method,
                 base_size, query_size, base_selection, stretch, seed
    ORDER BY cell_id) = 1
ORDER BY dataset, domain, lang, base_domain, query_domain, vision_encoder, text_encoder, method, base_size,
         query_size, base_selection, stretch, seed;
