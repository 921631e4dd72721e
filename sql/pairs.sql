-- pairs: one row per image of a (dataset, domain, lang) selection, with the captions that describe it.
-- The analysis mean-pools the caption embeddings of an image (the paper's protocol for COCO, where an
-- image has about five captions); the emoji set has exactly one caption per image and language.
-- Parameters: $items (items parquet path), $domain, $lang.
SELECT
    image_id,
    list(caption_id ORDER BY caption_id) AS caption_ids,
    count(*)                             AS n_captions,
    any_value(label)                     AS label,
    any_value(sublabel)                  AS sublabel
FROM read_parquet($items)
WHERE domain = $domain AND lang = $lang
GROUP BY image_id
ORDER BY image_id;
