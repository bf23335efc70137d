#!/usr/bin/env python3
# bench/load-list.py URL N CATS BATCH: N documents into livedb's bench_list
# through POST /v1/batch, BATCH a request; "category" cycles over CATS
# values (cat-0...), as bench/run's list query and PostgreSQL's peer table
# expect. LIVEDB_TOKEN: an admin's token. Prints documents/s.
import http.client, json, os, random, sys, time, urllib.parse

base, n, cats, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
rnd = random.Random(42)
things = ["desk lamp", "kitchen scale", "bike pump", "tool chest", "wall clock"]
t0 = time.monotonic()
for start in range(0, n, per):
    ops = []
    for i in range(start, min(n, start + per)):
        ops.append({"op": "create", "col": "bench_list", "doc": {
            "name": "Sturdy %s, model %06d, brushed stainless steel, two-year warranty, ships in 2 days"
                    % (things[i % len(things)], i),
            "sku": "SKU-L-%07d" % i,
            "price_cents": rnd.randint(99, 250000),
            "stock": rnd.randint(0, 5000),
            "category": "cat-%d" % (i % cats)}})
    conn.request("POST", "/v1/batch", json.dumps({"ops": ops}),
                 {"Content-Type": "application/json",
                  "Authorization": "Bearer " + os.environ["LIVEDB_TOKEN"]})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("batch at %d -> %d %s" % (start, r.status, body[:300]))
print("%.0f" % (n / (time.monotonic() - t0)))
