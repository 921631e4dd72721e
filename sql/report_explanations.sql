-- report_explanations: the explain study of one sweep run (Moller et al.): for each item its latest finished explain
-- run explained (the explain runs whose settings name this run), the encoders, the score s(a, b), the completeness
-- residual, the steps, and its three strongest (token, region) attributions by absolute value (rank 1-3), as rows.
-- Parameters: $run_id.
WITH ex AS (
    SELECT run_id FROM runs
    WHERE flow = 'explain' AND status = 'completed' AND json_extract_string(spec, '$.run') = $run_id
    ORDER BY finished_at DESC
    LIMIT 1
)
SELECT a.run_id AS explain_run, a.item_id, a.vision_encoder, a.text_encoder, a.score, a.residual, a.steps, a.token,
       a."row", a.col, a.attribution,
       row_number() OVER (PARTITION BY a.item_id ORDER BY abs(a.attribution) DESC, a.token_index, a."row", a.col) AS rank
FROM attributions a JOIN ex USING (run_id)
QUALIFY rank <= 3
ORDER BY a.item_id, rank;
