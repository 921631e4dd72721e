-- report_cka_summary: the CKA results of one run, one row per kernel (ordered by kernel): n (rows), mean_value
-- and mean_shuffled (mean CKA and mean CKA of the shuffled pairing), beats_shuffled (rows whose CKA exceeds
-- their shuffled value), best_pair ('<vision_encoder> x <text_encoder>' of the highest CKA) and best_value.
-- Parameters: $run_id.
SELECT
    kernel,
    count(*)                                                   AS n,
    avg(value)                                                 AS mean_value,
    avg(shuffled_value)                                        AS mean_shuffled,
    sum((value > shuffled_value)::INT)                         AS beats_shuffled,
    arg_max(vision_encoder || ' x ' || text_encoder, value)    AS best_pair,
    max(value)                                                 AS best_value
FROM cka
WHERE run_id = $run_id
GROUP BY kernel
ORDER BY kernel;
