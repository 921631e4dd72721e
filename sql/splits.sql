-- splits: a seeded, replayable order of the pairs. The first $query_size images (by md5 of id and seed)
-- are the queries; the rest form the pool the base set is chosen from (randomly: the next $base_size
-- in the same order; or by k-means, in the library). md5 is stable across DuckDB versions and machines.
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
