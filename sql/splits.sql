-- splits: a seeded, replayable order of the pairs. The first $query_size images (by md5 of id and seed)
-- are the queries; the rest, in the same order, form the pool the base set is chosen from, by the
-- library (vlalign.preprocess.select_base): 'random' draws base_size of the pool with
-- numpy.random.default_rng(seed), 'kmeans_*' takes the sample nearest each k-means centre. Cross-domain
-- cells order the base selection's pairs the same way and leave out any pair sharing an image or a
-- caption with a query. md5 is stable across DuckDB versions and machines.
-- Parameters: $pairs (pairs parquet path), $seed, $query_size.
WITH ranked AS (
    SELECT
        image_id,
        row_number() OVER (ORDER BY md5(image_id || ':' || CAST($seed AS VARCHAR)), image_id) - 1 AS rank
    FROM read_parquet($pairs)
)
SELECT
    image_id,
    rank,
    CASE WHEN rank < $query_size THEN 'query' ELSE 'pool' END AS role
FROM ranked
ORDER BY rank;
