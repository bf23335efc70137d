-- bench/pg-list.sql: pgbench script, the peer of livedb's list query: the
-- 100 documents of one of 1,000 categories out of 100,000, in id order, by
-- a jsonb expression index on the category (bench/run makes the table and
-- the index). The category is random; livedb's wrk walks them all.
\set c random(0, 999)
SELECT id, body FROM list_docs WHERE body -> 'category' = '"cat-:c"'::jsonb ORDER BY id LIMIT 100;
