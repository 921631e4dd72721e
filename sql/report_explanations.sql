-- report_explanations: the explanations of one explain run (the sweep's analyses.explain writes one and names it in
-- the sweep's run record): per item explained, its encoders, the score s(a, b), the completeness residual, the
-- steps, and its three strongest (token, region) attributions by absolute value (rank 1-3), as rows.
-- Parameters: $run_id (the explain run's).
SELECT run_id AS explain_run, item_id, vision_encoder, text_encoder, score, residual, steps, token, "row", col,
       attribution,
       row_number() OVER (PARTITION BY item_id ORDER BY abs(attribution) DESC, token_index, "row", col) AS rank
FROM attributions
WHERE run_id = $run_id
QUALIFY rank <= 3
ORDER BY item_id, rank;
