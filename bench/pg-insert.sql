-- bench/pg-insert.sql: pgbench script, one ~200-byte jsonb row per
-- transaction (autocommit), the same document shape as bench/create.lua.
-- The document travels as JSON text that PostgreSQL parses, as livedb
-- does. pgbench fills :variables in even inside the literal (simple query
-- mode); a space keeps each ": :var" from reading as a "::" cast.
\set n random(100000, 999999)
\set seq random(100000, 999999)
\set price random(99, 250000)
\set stock random(0, 5000)
\set cat random(1, 10)
INSERT INTO docs(body) VALUES ('{"name":"Sturdy desk lamp with dimmer, model :n, brushed stainless steel, two-year warranty","sku":"SKU-0-:seq-:n","price_cents": :price,"stock": :stock,"category":"category-:cat"}');
