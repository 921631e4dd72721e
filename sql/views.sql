-- The lake's public tables, as views over its Parquet and JSON files. {lake} is replaced by the lake
-- root. Each statement is preceded by "-- view: NAME"; a view whose files do not exist yet is created
-- empty, with the columns of its table (see vlalign/catalog.py).

-- view: items
CREATE OR REPLACE VIEW items AS
SELECT * EXCLUDE (image_bytes), image_bytes IS NOT NULL AS image_inline
FROM read_parquet('{lake}/items/*/*.parquet', hive_partitioning = true);

-- view: rejects
CREATE OR REPLACE VIEW rejects AS
SELECT dataset, stage, item_id, image_id, caption_id, reason
FROM read_parquet('{lake}/rejects/*/*/*.parquet', union_by_name = true);

-- view: embeddings
CREATE OR REPLACE VIEW embeddings AS
SELECT dataset, encoder, part, CAST(regexp_extract(filename, 'shard=([0-9]+)', 1) AS INTEGER) AS shard, unit_id, embedding
FROM read_parquet('{lake}/embeddings/*/*/*/*.parquet', hive_partitioning = true, filename = true);

-- view: embedding_index
CREATE OR REPLACE VIEW embedding_index AS
SELECT
    regexp_extract(file_name, 'dataset=([^/]+)', 1)                    AS dataset,
    regexp_extract(file_name, 'encoder=([^/]+)', 1)                    AS encoder,
    regexp_extract(file_name, 'part=([^/]+)', 1)                       AS part,
    CAST(regexp_extract(file_name, 'shard=([0-9]+)', 1) AS INTEGER)    AS shard,
    json_extract_string(decode(value), '$.identity.data_digest')    AS data_digest,
    json_extract_string(decode(value), '$.identity.weights_digest') AS weights_digest,
    json_extract_string(decode(value), '$.identity.pooling')        AS pooling,
    CAST(json_extract(decode(value), '$.identity.start') AS INTEGER) AS start,
    CAST(json_extract(decode(value), '$.identity.stop') AS INTEGER)  AS stop,
    CAST(json_extract(decode(value), '$.rejects') AS INTEGER)        AS rejects,
    CAST(json_extract(decode(value), '$.seconds') AS DOUBLE)         AS seconds,
    file_name                                                          AS path
FROM parquet_kv_metadata('{lake}/embeddings/*/*/*/*.parquet')
WHERE decode(key) = 'vlalign';

-- view: cka
CREATE OR REPLACE VIEW cka AS
SELECT * FROM read_parquet('{lake}/results/cka/*/*.parquet', union_by_name = true);

-- view: matching
CREATE OR REPLACE VIEW matching AS
SELECT * FROM read_parquet('{lake}/results/matching/*/*.parquet', union_by_name = true);

-- view: retrieval
CREATE OR REPLACE VIEW retrieval AS
SELECT * FROM read_parquet('{lake}/results/retrieval/*/*.parquet', union_by_name = true);

-- view: runs
CREATE OR REPLACE VIEW runs AS
SELECT run_id, spec, status, started_at, finished_at, flow, cells_total, cells_done, error
FROM read_json('{lake}/runs/*.json', columns = {
    run_id: 'VARCHAR', spec: 'JSON', status: 'VARCHAR', started_at: 'TIMESTAMP', finished_at: 'TIMESTAMP',
    flow: 'VARCHAR', cells_total: 'INTEGER', cells_done: 'INTEGER', error: 'VARCHAR'});
