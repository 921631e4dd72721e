-- The lake's public tables: where each view reads from. Written by runs (vlalign.catalog.refresh_catalog),
-- never by a query. Each block starts with "-- view: NAME". The placeholders are replaced by list
-- literals of the files that the lake's run records list ({items}, {rejects}, {embeddings}, {runs}) and of
-- the result files of the cells they list ({cka}, {matching}, {retrieval}, {classification}, {concepts},
-- {concept_breakdown}), and the tables `vlalign explain` runs wrote ({attributions}); a file that no run recorded
-- (dropped into results/ by anyone else) is never read. The columns each view exposes, and their types,
-- come from vlalign/schemas.py (TABLE_SCHEMAS): the catalog projects exactly those over these sources. A
-- view whose file list is empty is created empty, with the same columns. run_cells is a table the
-- catalog fills from the run records: (run_id, table_name, cell_id). The catalog stores the file lists relative to
-- the lake's root (table lake_files), and the query door creates these views for the root it opens, so a copied,
-- moved or re-mounted lake reads its own files. Names are read from the END of each path (the lake's own layout),
-- never from folders above the lake, and hive partitioning is off: a folder such as `dataset=x/` above the lake
-- relabels nothing. On an object-store lake the paths are URLs (s3://bucket/lake/...), read through the lake's
-- fsspec filesystem registered on the connection.

-- view: items
SELECT *, image_bytes IS NOT NULL AS image_inline,
    regexp_extract(filename, 'dataset=([^/]+)/[^/]+\.parquet$', 1) AS dataset
FROM read_parquet({items}, filename = true, hive_partitioning = false)

-- view: rejects
SELECT * FROM read_parquet({rejects}, union_by_name = true, hive_partitioning = false)

-- view: embeddings
-- layer: an inner layer's index (the layer=<i> folder), -1 for the encoder's output (no folder)
SELECT m.dataset, m.encoder, coalesce(nullif(m.layer, ''), '-1') AS layer, m.part, m.shard_size, m.shard, unit_id,
    embedding FROM (
    SELECT regexp_extract(filename,
                          'dataset=([^/]+)/encoder=([^/]+)/(?:layer=([0-9]+)/)?part=([^/]+)/size=([0-9]+)/shard=([0-9]+)\.parquet$',
                          ['dataset', 'encoder', 'layer', 'part', 'shard_size', 'shard']) AS m, unit_id, embedding
    FROM read_parquet({embeddings}, filename = true, hive_partitioning = false))

-- view: embedding_index
SELECT
    m.dataset, m.encoder, coalesce(nullif(m.layer, ''), '-1') AS layer, m.part, m.shard_size, m.shard,
    json_extract_string(decode(value), '$.identity.data_digest')    AS data_digest,
    json_extract_string(decode(value), '$.identity.weights_digest') AS weights_digest,
    json_extract_string(decode(value), '$.identity.pooling')        AS pooling,
    json_extract(decode(value), '$.identity.start')                 AS start,
    json_extract(decode(value), '$.identity.stop')                  AS stop,
    json_extract(decode(value), '$.rows')                           AS rows,
    json_extract(decode(value), '$.rejects')                        AS rejects,
    json_extract_string(decode(value), '$.checksum')                AS checksum,
    json_extract(decode(value), '$.seconds')                        AS seconds,
    file_name                                                       AS path
FROM (SELECT *, regexp_extract(file_name,
                   'dataset=([^/]+)/encoder=([^/]+)/(?:layer=([0-9]+)/)?part=([^/]+)/size=([0-9]+)/shard=([0-9]+)\.parquet$',
                   ['dataset', 'encoder', 'layer', 'part', 'shard_size', 'shard']) AS m
      FROM parquet_kv_metadata({embeddings}))
WHERE decode(key) = 'vlalign'

-- view: cka
SELECT rc.run_id, c.* FROM read_parquet({cka}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'cka'

-- view: best_layers
-- per (run, data set, domain, lang, vision encoder, text encoder, measure = kernel, debiased): the best layer pair by
-- the raw value and, as a whole row too, by the calibrated value (ties: the higher raw value, then the lower layers);
-- p_value_layers is the p-value of the raw maximum against the null of the maximum over every layer pair of the
-- cell (the same permutation for each pair): corrected for the search
WITH ranked AS (
    SELECT *,
           row_number() OVER w_raw AS r_raw,
           row_number() OVER w_cal AS r_cal,
           count(*) OVER w AS n_pairs,
           max(CASE WHEN vision_layer = -1 AND text_layer = -1 THEN value END) OVER w AS out_value
    FROM cka
    WHERE value IS NOT NULL
    WINDOW w AS (PARTITION BY run_id, dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased),
           w_raw AS (w ORDER BY value DESC, vision_layer, text_layer),
           w_cal AS (w ORDER BY calibrated DESC NULLS LAST, value DESC, vision_layer, text_layer)
)
SELECT r.run_id, r.dataset, r.domain, r.lang, r.vision_encoder, r.text_encoder, r.kernel, r.debiased,
       r.n_pairs AS layer_pairs, r.vision_layer, r.text_layer, r.vision_layer_name, r.text_layer_name, r.value,
       r.shuffled_value, r.calibrated AS calibrated_at_best, r.p_value_layers,
       c.vision_layer AS calibrated_vision_layer, c.text_layer AS calibrated_text_layer, c.calibrated,
       c.p_value AS calibrated_p_value, r.out_value AS output_value, r.permutations
FROM ranked r
JOIN ranked c USING (run_id, dataset, domain, lang, vision_encoder, text_encoder, kernel, debiased)
WHERE r.r_raw = 1 AND c.r_cal = 1

-- view: matching
SELECT rc.run_id, c.* FROM read_parquet({matching}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'matching'

-- view: retrieval
SELECT rc.run_id, c.* FROM read_parquet({retrieval}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'retrieval'

-- view: classification
SELECT rc.run_id, c.* FROM read_parquet({classification}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'classification'

-- view: concepts
SELECT rc.run_id, c.* FROM read_parquet({concepts}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'concepts'

-- view: concept_breakdown
SELECT rc.run_id, c.* FROM read_parquet({concept_breakdown}, union_by_name = true, hive_partitioning = false) c
JOIN run_cells rc ON rc.cell_id = c.cell_id AND rc.table_name = 'concept_breakdown'

-- view: attributions
SELECT regexp_extract(filename, 'run=([^/]+)\.parquet$', 1) AS run_id, *
FROM read_parquet({attributions}, filename = true, hive_partitioning = false)

-- view: runs
-- status 'interrupted': a record still saying 'running' that its run stopped rewriting (heartbeat, every 15 s) more
-- than 120 s ago: the run was killed (vlalign.datalake.runs.STALE_SECONDS); `vlalign resume RUN_ID` finishes it.
SELECT * EXCLUDE (alive_at) REPLACE (
    CASE WHEN status = 'running' AND coalesce(alive_at, 0) < epoch(now()) - 120 THEN 'interrupted' ELSE status END
    AS status)
FROM read_json({runs}, columns = {
    run_id: 'VARCHAR', spec: 'JSON', status: 'VARCHAR', started_at: 'TIMESTAMP', finished_at: 'TIMESTAMP',
    flow: 'VARCHAR', cells_total: 'INTEGER', cells_done: 'INTEGER', cells_computed: 'INTEGER', error: 'VARCHAR',
    alive_at: 'DOUBLE'})
