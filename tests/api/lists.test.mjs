// Lists: where (every operator, type strictness, missing fields, dotted
// fields), order with id tiebreak, cursor pagination, limit bounds, bad
// queries, and the seq of a list answer. Expected answers come from a small
// reference matcher written from docs/API.md.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, assertError, snapshot, lastSeq, userFields, PG, pgExec, until } from './lib.mjs';

let srv;
const r = (...a) => srv.req(...a);

// ---------------------------------------------------------------------------
// Reference semantics

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v; // number string boolean object
}
function getField(doc, field) {
  let cur = doc;
  for (const part of field.split('.')) {
    if (typeOf(cur) !== 'object' || !Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = cur[part];
  }
  return cur;
}
function scalarEq(a, b) {
  const ta = typeOf(a);
  if (ta !== typeOf(b)) return false;
  if (ta === 'array' || ta === 'object') return false;
  return a === b;
}
function cmp(a, b) {
  if (typeof a === 'string') {
    const ba = Buffer.from(a, 'utf8'); const bb = Buffer.from(b, 'utf8');
    return Buffer.compare(ba, bb);
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
function matches(doc, field, op, value) {
  const f = getField(doc, field);
  if (f === undefined) return false;
  switch (op) {
    case 'eq': return scalarEq(f, value);
    case 'ne': return !scalarEq(f, value);
    case 'lt': case 'le': case 'gt': case 'ge': {
      if (typeOf(f) !== typeOf(value)) return false;
      const c = cmp(f, value);
      return op === 'lt' ? c < 0 : op === 'le' ? c <= 0 : op === 'gt' ? c > 0 : c >= 0;
    }
    case 'in': return value.some((v) => scalarEq(f, v));
    case 'contains':
      if (Array.isArray(f)) return f.some((e) => scalarEq(e, value));
      if (typeof f === 'string' && typeof value === 'string') return f.includes(value);
      return false;
    default: throw new Error(op);
  }
}
function parseWhere(w) {
  const i = w.indexOf(':'); const j = w.indexOf(':', i + 1);
  return [w.slice(0, i), w.slice(i + 1, j), JSON.parse(w.slice(j + 1))];
}

// The model of collection `items`: id -> user fields.
const model = new Map();
function expectedIds(wheres) {
  const ps = wheres.map(parseWhere);
  return [...model.entries()]
    .filter(([, d]) => ps.every(([f, op, v]) => matches(d, f, op, v)))
    .map(([id]) => id)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

const whereQuery = (wheres) => wheres.map((w) => `where=${encodeURIComponent(w)}`).join('&');

async function listIds(col, query, limit = 1000) {
  const ids = [];
  let after = null;
  for (let page = 0; page < 1000; page++) {
    let q = `/v1/c/${col}?limit=${limit}${query ? '&' + query : ''}`;
    if (after) q += `&after=${encodeURIComponent(after)}`;
    const res = await r('GET', q);
    assert.equal(res.status, 200, `GET ${q}: ${res.text}`);
    assert.ok(Array.isArray(res.json.docs), res.text);
    assert.ok(res.json.docs.length <= limit, 'page within limit');
    assert.equal(typeof res.json.seq, 'number');
    ids.push(...res.json.docs.map((d) => d.id));
    if (res.json.next === null) return ids;
    assert.equal(typeof res.json.next, 'string', `next is a string or null: ${res.text}`);
    if (res.json.docs.length === 0) assert.fail(`empty page with a non-null next cursor: ${q}`);
    after = res.json.next;
  }
  throw new Error('too many pages');
}

// Raw JSON bodies so that 10.0 stays a double and key order is ours.
const ITEMS = {
  a01: '{"stock":5,"name":"apple","tags":["red","fruit"],"active":true,"meta":{"color":"red","size":3},"price":1.5,"note":"x:y"}',
  a02: '{"stock":10,"name":"banana","tags":["yellow","fruit"],"active":false,"meta":{"color":"yellow","size":5},"price":0.25}',
  a03: '{"stock":"7","name":"Cherry","tags":"red fruit salad","active":"true","meta":{"color":"red"}}',
  a04: '{"stock":true,"name":"date","tags":[1,2,3],"active":null,"meta":{"size":"3"}}',
  a05: '{"name":"elder","tags":[],"meta":null}',
  a06: '{"stock":10.0,"name":"fig","tags":["fruit",10],"active":true,"meta":{"color":"purple","size":3.0}}',
  a07: '{"stock":-3,"name":"grape","tags":["purple","fruit"],"meta":{"color":{"deep":1}}}',
  a08: '{"stock":null,"name":"","tags":[null,true]}',
  a09: '{"stock":1e3,"name":"kiwi","tags":["green"],"deep":{"x":{"y":{"z":1}}}}',
  a10: '{"stock":[5],"name":"lemon"}',
  a11: '{"stock":{"v":5},"name":"mango"}',
  a12: '{"stock":0,"name":"\u00e4melie","tags":["fruit"],"_under":1}',
  B13: '{"stock":2.5,"name":"Zed","tags":["fruit","red"]}',
  b14: '{"stock":-0.5,"name":"b","price":2}',
};

before(async () => {
  srv = await startServer();
  for (const [id, body] of Object.entries(ITEMS)) {
    const res = await r('PUT', `/v1/c/items/${id}`, { body });
    assert.equal(res.status, 201, res.text);
    model.set(id, JSON.parse(body));
  }
});
after(async () => {
  if (!srv) return;
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});

const WHERES = [
  ['stock:eq:10'], ['stock:eq:10.0'], ['stock:eq:"7"'], ['stock:eq:true'], ['stock:eq:false'],
  ['stock:eq:null'], ['stock:eq:5'], ['stock:eq:1000'],
  ['stock:ne:10'], ['stock:ne:null'], ['stock:ne:"7"'],
  ['stock:lt:10'], ['stock:le:10'], ['stock:gt:5'], ['stock:ge:5'], ['stock:lt:0'], ['stock:gt:-1'],
  ['stock:lt:"8"'], ['stock:ge:"0"'], ['stock:lt:2.6'], ['stock:le:-0.5'],
  ['name:lt:"b"'], ['name:ge:"kiwi"'], ['name:eq:""'], ['name:gt:""'], ['name:le:"Zed"'], ['name:gt:"z"'],
  ['note:eq:"x:y"'],
  ['active:eq:true'], ['active:ne:true'], ['active:eq:null'], ['active:eq:"true"'], ['active:ne:false'],
  ['meta.color:eq:"red"'], ['meta.color:ne:"red"'], ['meta.size:eq:3'], ['meta.size:in:[3,"3"]'],
  ['meta.size:gt:3'], ['meta:eq:null'], ['meta.color.deep:eq:1'],
  ['name:in:["apple","fig","nope"]'], ['stock:in:[10,true,null]'], ['stock:in:["7",-3]'], ['name:in:[1,2]'],
  ['tags:contains:"fruit"'], ['tags:contains:10'], ['tags:contains:1'], ['tags:contains:null'],
  ['tags:contains:true'], ['tags:contains:"salad"'], ['tags:contains:"fru"'], ['tags:contains:""'],
  ['name:contains:"an"'], ['name:contains:"err"'], ['name:contains:"\u00e4"'], ['stock:contains:5'],
  ['deep.x.y.z:eq:1'], ['deep.x.y:eq:1'], ['deep.x.y.z.w:eq:1'], ['_under:eq:1'],
  ['price:lt:1'], ['price:ge:1.5'], ['price:eq:2'], ['price:eq:2.0'],
  ['nothere:ne:1'], ['nothere:eq:null'], ['nothere:ne:null'], ['nothere:contains:"x"'],
  ['stock:ge:0', 'tags:contains:"fruit"'], ['stock:lt:10', 'stock:gt:0'], ['stock:gt:0', 'stock:lt:0'],
  ['name:ne:"apple"', 'active:eq:true', 'meta.size:eq:3'],
];

describe('where', () => {
  for (const ws of WHERES) {
    test(`where ${ws.join(' & ')}`, async () => {
      const got = await listIds('items', whereQuery(ws));
      assert.deepEqual(got, expectedIds(ws));
    });
  }

  test('spot checks of the reference model (type strictness, missing fields)', () => {
    assert.deepEqual(expectedIds(['stock:lt:10']), ['B13', 'a01', 'a07', 'a12', 'b14']);
    assert.deepEqual(expectedIds(['stock:eq:10']), ['a02', 'a06']);
    assert.ok(!expectedIds(['stock:ne:10']).includes('a05'), 'missing field never matches ne');
    assert.deepEqual(expectedIds(['tags:contains:"fruit"']), ['B13', 'a01', 'a02', 'a03', 'a06', 'a07', 'a12']);
  });

  test('16 where clauses are allowed', async () => {
    const ws = Array.from({ length: 16 }, (_, i) => `stock:gt:${-100 - i}`);
    const got = await listIds('items', whereQuery(ws));
    assert.deepEqual(got, expectedIds(ws));
  });

  test('dotted field 8 deep is allowed', async () => {
    const res = await r('PUT', '/v1/c/deep8/d1', { body: { a: { b: { c: { d: { e: { f: { g: { h: 1 } } } } } } } } });
    assert.equal(res.status, 201);
    const got = await listIds('deep8', whereQuery(['a.b.c.d.e.f.g.h:eq:1']));
    assert.deepEqual(got, ['d1']);
  });

  test('results follow later writes (indexes stay in step)', async () => {
    const queries = [['stock:lt:10'], ['tags:contains:"fruit"'], ['meta.color:eq:"red"'], ['name:ge:"kiwi"'], ['stock:eq:10']];
    for (const q of queries) assert.deepEqual(await listIds('items', whereQuery(q)), expectedIds(q));
    // Writes after the first queries (which may have built indexes).
    const writes = [
      ['PUT', 'a15', '{"stock":3,"name":"nectarine","tags":["fruit"],"meta":{"color":"red"}}'],
      ['PATCH', 'a01', '{"stock":50,"meta":{"color":"green"}}'],
      ['DELETE', 'a07'],
      ['PUT', 'a02', '{"stock":"10","name":"banana2"}'],
      ['PATCH', 'a09', '{"stock":null}'],
    ];
    for (const [m, id, body] of writes) {
      const res = await r(m, `/v1/c/items/${id}`, body ? { body } : {});
      assert.ok(res.status === 200 || res.status === 201, `${m} ${id}: ${res.text}`);
      if (m === 'DELETE') model.delete(id);
      else if (m === 'PUT') model.set(id, JSON.parse(body));
      else model.set(id, mergePatch(model.get(id), JSON.parse(body)));
    }
    for (const q of [...queries, ...WHERES]) {
      assert.deepEqual(await listIds('items', whereQuery(q)), expectedIds(q), `after writes: ${q.join(' & ')}`);
    }
  });
});

function mergePatch(target, patch) {
  if (typeOf(patch) !== 'object') return patch;
  const out = typeOf(target) === 'object' ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

describe('bad queries -> 400, nothing changes', () => {
  const bad = [
    'stock:like:1', 'stock:EQ:1', 'stock:eq:abc', 'stock:eq:', 'stock:eq', 'stock', '', 'stock:eq:1 2',
    'stock:eq:[1]', 'stock:eq:{"a":1}', 'stock:ne:[1]', 'stock:lt:true', 'stock:lt:null', 'stock:ge:[1]',
    'stock:in:5', 'stock:in:[]', 'stock:in:[[1]]', 'stock:in:[{"a":1}]', 'stock:in:"x"',
    `stock:in:[${Array.from({ length: 101 }, (_, i) => i).join(',')}]`,
    '1a:eq:1', 'a-b:eq:1', 'a..b:eq:1', '.a:eq:1', 'a.:eq:1', ':eq:1', 'a b:eq:1', 'a.1:eq:1',
    'a.b.c.d.e.f.g.h.i:eq:1', 'stock:eq:"unterminated',
  ];
  test('bad percent-encoding in the query -> 400', async () => {
    assertError(await r('GET', '/v1/c/items?where=stock:eq:%zz'), 400, 'bad_request');
    assertError(await r('GET', '/v1/c/items?where=stock%3Aeq%3A%'), 400, 'bad_request');
  });
  for (const w of bad) {
    test(`where=${w.length > 40 ? w.slice(0, 40) + '…' : w}`, async () => {
      const before = await snapshot(srv, ['items']);
      assertError(await r('GET', `/v1/c/items?where=${encodeURIComponent(w)}`), 400, 'bad_request');
      assert.deepEqual(await snapshot(srv, ['items']), before);
    });
  }
  test('17 where clauses', async () => {
    const ws = Array.from({ length: 17 }, (_, i) => `stock:gt:${-100 - i}`);
    assertError(await r('GET', `/v1/c/items?${whereQuery(ws)}`), 400, 'bad_request');
  });
  test('contains with an in-list 100 long is fine, in with 100 scalars is fine', async () => {
    const vals = Array.from({ length: 100 }, (_, i) => i);
    const w = `stock:in:${JSON.stringify(vals)}`;
    assert.deepEqual(await listIds('items', whereQuery([w])), expectedIds([w]));
  });
  for (const o of ['1a', '-', 'a..b', '--stock', 'a-b', 'a.b.c.d.e.f.g.h.i']) {
    test(`order=${o}`, async () => {
      assertError(await r('GET', `/v1/c/items?order=${encodeURIComponent(o)}`), 400, 'bad_request');
    });
  }
  for (const l of ['0', '1001', 'x', '-1', '1.5', '', '10abc', '99999999999999999999']) {
    test(`limit=${l}`, async () => {
      assertError(await r('GET', `/v1/c/items?limit=${encodeURIComponent(l)}`), 400, 'bad_request');
    });
  }
  test('after=garbage', async () => {
    assertError(await r('GET', '/v1/c/items?after=%%%garbage'), 400, 'bad_request');
    assertError(await r('GET', `/v1/c/items?after=${encodeURIComponent('not-a-cursor!')}`), 400, 'bad_request');
  });
  test('bad collection name in a list', async () => {
    assertError(await r('GET', '/v1/c/Items'), 400, 'bad_request');
  });
});

// ---------------------------------------------------------------------------
// Order and pagination on a collection with ties and missing fields

const ORD = [];
function ordId(i) { return `o${String(i).padStart(2, '0')}`; }
describe('order and pagination', () => {
  before(async () => {
    // rank: ties on purpose; every 4th doc has no rank. Inserted out of id order.
    const order = [7, 3, 11, 0, 15, 1, 9, 13, 4, 2, 8, 14, 6, 12, 5, 10, 16, 17, 18, 19, 20, 21, 22];
    for (const i of order) {
      const doc = { n: i };
      if (i % 4 !== 3) doc.rank = [5, 1, 3, 1, 9, 5, 2][i % 7];
      if (i % 5 === 0) doc.sub = { k: `k${i % 3}` };
      const res = await r('PUT', `/v1/c/ord/${ordId(i)}`, { body: doc });
      assert.equal(res.status, 201, res.text);
      ORD.push({ id: ordId(i), ...doc });
    }
  });

  const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  function expectedOrder(field, desc) {
    const has = ORD.filter((d) => getField(d, field) !== undefined);
    const missing = ORD.filter((d) => getField(d, field) === undefined);
    has.sort((a, b) => cmp(getField(a, field), getField(b, field)) || byId(a, b));
    missing.sort(byId);
    const asc = [...missing, ...has];
    return (desc ? asc.reverse() : asc).map((d) => d.id);
  }

  test('default order is by id', async () => {
    assert.deepEqual(await listIds('ord', ''), [...ORD].sort(byId).map((d) => d.id));
  });
  test('order=rank: missing first, ties by id', async () => {
    assert.deepEqual(await listIds('ord', 'order=rank'), expectedOrder('rank', false));
  });
  test('order=-rank: ties by id descending, missing last', async () => {
    assert.deepEqual(await listIds('ord', 'order=-rank'), expectedOrder('rank', true));
  });
  test('order=-id and order=id', async () => {
    assert.deepEqual(await listIds('ord', 'order=-id'), [...ORD].sort(byId).reverse().map((d) => d.id));
    assert.deepEqual(await listIds('ord', 'order=id'), [...ORD].sort(byId).map((d) => d.id));
  });
  test('order by a dotted field', async () => {
    assert.deepEqual(await listIds('ord', 'order=sub.k'), expectedOrder('sub.k', false));
    assert.deepEqual(await listIds('ord', 'order=-sub.k'), expectedOrder('sub.k', true));
  });

  for (const limit of [1, 2, 3, 7]) {
    test(`pagination with limit ${limit} returns every doc exactly once, in order`, async () => {
      assert.deepEqual(await listIds('ord', '', limit), [...ORD].sort(byId).map((d) => d.id));
      assert.deepEqual(await listIds('ord', 'order=rank', limit), expectedOrder('rank', false));
      assert.deepEqual(await listIds('ord', 'order=-rank', limit), expectedOrder('rank', true));
      assert.deepEqual(await listIds('ord', 'order=sub.k', limit), expectedOrder('sub.k', false));
      assert.deepEqual(await listIds('ord', 'order=-sub.k', limit), expectedOrder('sub.k', true));
    });
  }

  test('pagination with where and order', async () => {
    const exp = expectedOrder('rank', false).filter((id) => {
      const d = ORD.find((x) => x.id === id);
      return typeof d.rank === 'number' && d.rank >= 2;
    });
    assert.deepEqual(await listIds('ord', `${whereQuery(['rank:ge:2'])}&order=rank`, 2), exp);
    assert.deepEqual(await listIds('ord', `${whereQuery(['rank:ge:2'])}&order=-rank`, 3), [...exp].reverse());
  });

  test('order over a field with mixed types pages consistently (every doc once, same order as one page)', async () => {
    for (const o of ['stock', '-stock', 'meta.size', '-tags', 'active']) {
      const whole = await listIds('items', `order=${encodeURIComponent(o)}`, 1000);
      assert.equal(whole.length, model.size, `order=${o}: every doc`);
      for (const limit of [1, 2, 5]) {
        const paged = await listIds('items', `order=${encodeURIComponent(o)}`, limit);
        assert.deepEqual(paged, whole, `order=${o} limit=${limit}`);
      }
      // Among documents whose field is a number, the order is numeric.
      const nums = whole.map((id) => getField(model.get(id), o.replace(/^-/, ''))).filter((v) => typeof v === 'number');
      const sortedNums = [...nums].sort((a, b) => (o.startsWith('-') ? b - a : a - b));
      assert.deepEqual(nums, sortedNums, `order=${o}: numbers in order`);
    }
  });

  test('a page shape: docs are full documents with server fields', async () => {
    const res = await r('GET', '/v1/c/ord?limit=2');
    assert.equal(res.status, 200);
    assert.equal(res.json.docs.length, 2);
    assert.equal(typeof res.json.next, 'string');
    for (const d of res.json.docs) {
      assert.deepEqual(Object.keys(d).slice(0, 4), ['id', 'version', 'created_at', 'updated_at']);
      const m = ORD.find((x) => x.id === d.id);
      const { id, ...rest } = m;
      assert.deepEqual(userFields(d), rest);
    }
  });

  test('a write between pages: remaining pages still hold each doc at most once', async () => {
    const first = await r('GET', '/v1/c/ord?limit=5');
    const seen = first.json.docs.map((d) => d.id);
    // Insert a doc that sorts before the cursor and one after it.
    await r('PUT', '/v1/c/ord/o00a', { body: { n: 100 } });
    await r('PUT', '/v1/c/ord/zz', { body: { n: 101 } });
    let after = first.json.next;
    while (after) {
      const p = await r('GET', `/v1/c/ord?limit=5&after=${encodeURIComponent(after)}`);
      assert.equal(p.status, 200, p.text);
      seen.push(...p.json.docs.map((d) => d.id));
      after = p.json.next;
    }
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
    for (const d of ORD) assert.ok(seen.includes(d.id), `${d.id} seen`);
    assert.ok(seen.includes('zz'), 'doc after the cursor is seen');
    assert.ok(!seen.includes('o00a'), 'doc before the cursor is not');
    await r('DELETE', '/v1/c/ord/o00a');
    await r('DELETE', '/v1/c/ord/zz');
  });
});

describe('limit and seq', () => {
  before(async () => {
    for (let i = 0; i < 130; i++) {
      const res = await r('PUT', `/v1/c/many/m${String(i).padStart(3, '0')}`, { body: { i } });
      assert.equal(res.status, 201);
    }
  });
  test('default limit is 100', async () => {
    const res = await r('GET', '/v1/c/many');
    assert.equal(res.status, 200);
    assert.equal(res.json.docs.length, 100);
    assert.equal(typeof res.json.next, 'string');
  });
  test('limit 1 and 1000', async () => {
    const a = await r('GET', '/v1/c/many?limit=1');
    assert.equal(a.status, 200);
    assert.equal(a.json.docs.length, 1);
    assert.equal(a.json.docs[0].id, 'm000');
    const b = await r('GET', '/v1/c/many?limit=1000');
    assert.equal(b.status, 200);
    assert.equal(b.json.docs.length, 130);
    assert.equal(b.json.next, null);
  });
  test('seq is the last committed change and moves with writes', async () => {
    const s1 = (await r('GET', '/v1/c/many?limit=1')).json.seq;
    const feed = await r('GET', `/v1/changes?since=${s1 - 1}&limit=10`);
    assert.equal(feed.status, 200, feed.text);
    assert.equal(feed.json.changes.length, 1, 'nothing after the list seq');
    assert.equal(feed.json.changes[0].seq, s1);
    await r('PATCH', '/v1/c/many/m000', { body: { x: 1 } });
    const s2 = (await r('GET', '/v1/c/many?limit=1')).json.seq;
    assert.equal(s2, s1 + 1);
    assert.equal(await lastSeq(srv), s2, 'seq is global, not per collection');
  });
});

for (const n of ['0', '1']) {
  describe(`--auto-index ${n}: same answers`, () => {
    let s2;
    const m2 = new Map();
    before(async () => {
      s2 = await startServer({ args: ['--auto-index', n, '--no-access-log'] });
      for (const [id, body] of Object.entries(ITEMS)) {
        const res = await s2.req('PUT', `/v1/c/items/${id}`, { body });
        assert.equal(res.status, 201);
        m2.set(id, JSON.parse(body));
      }
    });
    after(async () => { if (s2) assert.equal(await s2.stop(), 0, s2.stderrTail()); });
    test('every where of the main list, and paged orders', async () => {
      for (const ws of WHERES) {
        const ps = ws.map(parseWhere);
        const exp = [...m2.entries()].filter(([, d]) => ps.every(([f, op, v]) => matches(d, f, op, v))).map(([id]) => id)
          .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        const res = await s2.req('GET', `/v1/c/items?limit=1000&${whereQuery(ws)}`);
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.json.docs.map((d) => d.id), exp, ws.join(' & '));
      }
      for (const o of ['stock', '-name', 'meta.size']) {
        const whole = (await s2.req('GET', `/v1/c/items?limit=1000&order=${o}`)).json.docs.map((d) => d.id);
        const paged = [];
        let after = null;
        for (let g = 0; g < 100; g++) {
          const res = await s2.req('GET', `/v1/c/items?limit=3&order=${o}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
          paged.push(...res.json.docs.map((d) => d.id));
          after = res.json.next;
          if (!after) break;
        }
        assert.deepEqual(paged, whole, `order=${o}`);
        assert.equal(whole.length, m2.size);
      }
    });
  });
}

// Over PostgreSQL a list's equalities go to SQL, where the field's index
// (made after the first query by that field) finds the rows: the index is
// scanned, and the answers are the matcher's.
describe('PostgreSQL: equalities use the field index', PG ? {} : { skip: 'PostgreSQL pass only' }, () => {
  test('a list by status reads through ix_big_*', async () => {
    const s = await startServer({ args: ['--no-access-log'] });
    try {
    const docs = Array.from({ length: 1500 }, (_, i) => ({ op: 'create', col: 'big', id: `b${String(i).padStart(4, '0')}`,
      doc: { status: i % 100 === 7 ? 'rare' : 'common', flag: i % 2 === 0, n: i } }));
    for (let i = 0; i < docs.length; i += 500) {
      const res = await s.req('POST', '/v1/batch', { body: { ops: docs.slice(i, i + 500) } });
      assert.equal(res.status, 200, res.text);
    }
    const want = docs.filter((d) => d.doc.status === 'rare').map((d) => d.id);
    const scans = () => Number(pgExec(s.dataDir, "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE schemaname = current_schema() AND indexrelname LIKE 'ix_big_%'").stdout.trim().split('\n').pop());
    let before0 = null;
    await until(async () => {
      const res = await s.req('GET', `/v1/c/big?limit=1000&where=${encodeURIComponent('status:eq:"rare"')}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json.docs.map((d) => d.id), want);
      const n = scans();
      if (before0 === null) { before0 = n; return false; }
      return n > before0;
    // (a backend reports its counts when idle, within about 10 s)
    }, () => 'the index on status was never scanned', 30_000, 200);
    // The other kinds of condition still answer from the matcher, with
    // the equality narrowing first: a string, a boolean, and a number.
    const both = await s.req('GET', `/v1/c/big?limit=1000&order=-n&where=${encodeURIComponent('status:eq:"rare"')}&where=${encodeURIComponent('flag:eq:false')}&where=${encodeURIComponent('n:gt:500')}`);
    assert.deepEqual(both.json.docs.map((d) => d.id),
      docs.filter((d) => d.doc.status === 'rare' && !d.doc.flag && d.doc.n > 500).map((d) => d.id).reverse());
    } finally {
      assert.equal(await s.stop(), 0, s.stderrTail());
    }
  });
});
