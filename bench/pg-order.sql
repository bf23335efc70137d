-- bench/run-orders: one place_order in PostgreSQL, as an application would
-- write it: lock the product row, check and take the stock, insert the
-- order (its lines as jsonb, like livedb's document), commit.
-- Partner = pgbench client; product = one of p_max hot products (pgbench -D
-- p_max=10); qty 1-3.
\set p random(1, :p_max)
\set q random(1, 3)
BEGIN;
SELECT stock, price_cents FROM products WHERE id = :p FOR UPDATE \gset
\if :stock >= :q
UPDATE products SET stock = stock - :q WHERE id = :p;
INSERT INTO orders (partner_id, product_id, qty, total_cents, status, body)
  VALUES ('partner-' || :client_id, :p, :q, :price_cents * :q, 'pending',
          jsonb_build_object('partner_id', 'partner-' || :client_id,
            'items', jsonb_build_array(jsonb_build_object('product_id', :p, 'qty', :q,
                                                          'price_cents', :price_cents)),
            'total_cents', :price_cents * :q, 'status', 'pending',
            'history', jsonb_build_array(jsonb_build_object('status', 'pending',
                                                             'at', now(), 'by', 'partner-' || :client_id)),
            'notes', 'pgbench'));
\endif
COMMIT;
