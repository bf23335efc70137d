// Batches: result shapes, seq, if_version, all-or-nothing (a failing op
// writes nothing, adds no change-feed entry, and names its index), bounds,
// and Idempotency-Key.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTests, assertError, snapshot, lastSeq, userFields, DOC_ID_RE } from './lib.mjs';

let srv;
const r = (...a) => srv.req(...a);
serverForTests((s) => { srv = s; });

const batch = (ops, headers) => r('POST', '/v1/batch', { body: { ops }, headers });

async function feedSince(since) {
  const res = await r('GET', `/v1/changes?since=${since}&limit=1000`);
  assert.equal(res.status, 200, res.text);
  return res.json.changes;
}

describe('batch', () => {
  test('results have the single-request shapes; seq is the position after the batch', async () => {
    await r('PUT', '/v1/c/b1/existing', { body: { a: 1 } });
    await r('PUT', '/v1/c/b1/gone', { body: { a: 1 } });
    const s0 = await lastSeq(srv);
    const res = await batch([
      { op: 'create', col: 'b1', doc: { name: 'gen' } },
      { op: 'create', col: 'b1', id: 'named', doc: { name: 'named' } },
      { op: 'put', col: 'b1', id: 'existing', doc: { replaced: true } },
      { op: 'put', col: 'b1', id: 'newput', doc: { fresh: 1 } },
      { op: 'patch', col: 'b1', id: 'existing', doc: { added: 2 } },
      { op: 'delete', col: 'b1', id: 'gone' },
      { op: 'create', col: 'b2', id: 'other_col', doc: {} },
    ]);
    assert.equal(res.status, 200, res.text);
    const { results, seq } = res.json;
    assert.equal(results.length, 7);
    assert.equal(seq, s0 + 7);

    assert.match(results[0].id, DOC_ID_RE);
    assert.deepEqual(Object.keys(results[0]).slice(0, 4), ['id', 'version', 'created_at', 'updated_at']);
    assert.equal(results[0].version, 1);
    assert.deepEqual(userFields(results[0]), { name: 'gen' });
    assert.equal(results[1].id, 'named');
    assert.deepEqual(userFields(results[1]), { name: 'named' });
    assert.equal(results[2].version, 2);
    assert.deepEqual(userFields(results[2]), { replaced: true });
    assert.equal(results[3].version, 1);
    assert.deepEqual(userFields(results[3]), { fresh: 1 });
    assert.equal(results[4].id, 'existing');
    assert.equal(results[4].version, 3);
    assert.deepEqual(userFields(results[4]), { replaced: true, added: 2 });
    assert.deepEqual(results[5], { id: 'gone', version: 1 });
    assert.equal(results[6].id, 'other_col');

    // The stored state matches the results.
    for (const [i, col, id] of [[0, 'b1', results[0].id], [1, 'b1', 'named'], [3, 'b1', 'newput'], [4, 'b1', 'existing'], [6, 'b2', 'other_col']]) {
      const g = await r('GET', `/v1/c/${col}/${id}`);
      assert.equal(g.status, 200);
      assert.deepEqual(g.json, results[i]);
    }
    assertError(await r('GET', '/v1/c/b1/gone'), 404);

    // One change per op, consecutive seqs, in op order.
    const changes = await feedSince(s0);
    assert.deepEqual(changes.map((c) => c.seq), [1, 2, 3, 4, 5, 6, 7].map((k) => s0 + k));
    assert.deepEqual(changes.map((c) => [c.op, c.id]), [
      ['create', results[0].id], ['create', 'named'], ['update', 'existing'], ['create', 'newput'],
      ['update', 'existing'], ['delete', 'gone'], ['create', 'other_col'],
    ]);
  });

  test('if_version: matching commits, mismatching fails the whole batch with 412', async () => {
    await r('PUT', '/v1/c/b3/x', { body: { v: 1 } });
    const ok = await batch([
      { op: 'patch', col: 'b3', id: 'x', doc: { v: 2 }, if_version: 1 },
      { op: 'put', col: 'b3', id: 'x', doc: { v: 3 }, if_version: 2 },
    ]);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.results[1].version, 3);

    const before1 = await snapshot(srv, ['b3']);
    const bad = await batch([
      { op: 'create', col: 'b3', id: 'y', doc: {} },
      { op: 'patch', col: 'b3', id: 'x', doc: { v: 9 } },
      { op: 'delete', col: 'b3', id: 'x', if_version: 1 },
    ]);
    assertError(bad, 412, 'precondition_failed');
    assert.equal(bad.json.error.details?.index, 2, bad.text);
    assert.deepEqual(await snapshot(srv, ['b3']), before1);

    const bad2 = await batch([{ op: 'put', col: 'b3', id: 'absent', doc: {}, if_version: 1 }]);
    assertError(bad2, 412, 'precondition_failed');
    assert.equal(bad2.json.error.details?.index, 0);
    assertError(await r('GET', '/v1/c/b3/absent'), 404);
  });

  const failing = [
    ['create of an existing id -> 409', { op: 'create', col: 'b4', id: 'exists', doc: {} }, 409, 'conflict'],
    ['patch of a missing doc -> 404', { op: 'patch', col: 'b4', id: 'missing', doc: { a: 1 } }, 404, 'not_found'],
    ['delete of a missing doc -> 404', { op: 'delete', col: 'b4', id: 'missing' }, 404, 'not_found'],
    ['unknown op -> 400', { op: 'upsert', col: 'b4', id: 'q', doc: {} }, 400, 'bad_request'],
    ['bad collection -> 400', { op: 'create', col: 'Bad', doc: {} }, 400, 'bad_request'],
    ['system collection -> 400', { op: 'create', col: '_sys', doc: {} }, 400, 'bad_request'],
    ['bad id -> 400', { op: 'put', col: 'b4', id: 'a/b', doc: {} }, 400, 'bad_request'],
    ['id too long -> 400', { op: 'put', col: 'b4', id: 'x'.repeat(129), doc: {} }, 400, 'bad_request'],
    ['doc not an object -> 400', { op: 'put', col: 'b4', id: 'q', doc: [1] }, 400, 'bad_request'],
    ['put without id -> 400', { op: 'put', col: 'b4', doc: {} }, 400, 'bad_request'],
    ['missing col -> 400', { op: 'create', doc: {} }, 400, 'bad_request'],
    ['put body id differs -> 400', { op: 'put', col: 'b4', id: 'q', doc: { id: 'other' } }, 400, 'bad_request'],
    ['op not an object -> 400', 'create', 400, 'bad_request'],
  ];
  for (const [name, badOp, status, code] of failing) {
    test(`a failing op at index 2 (${name}): nothing written, no changes`, async () => {
      const e = await r('PUT', '/v1/c/b4/exists', { body: { keep: 1 } });
      assert.ok(e.status === 200 || e.status === 201);
      const s0 = await lastSeq(srv);
      const before1 = await snapshot(srv, ['b4', 'b5']);
      const res = await batch([
        { op: 'create', col: 'b5', id: 'would_be_created', doc: { a: 1 } },
        { op: 'patch', col: 'b4', id: 'exists', doc: { keep: 2 } },
        badOp,
        { op: 'create', col: 'b5', id: 'after_bad', doc: {} },
      ]);
      assertError(res, status, code);
      assert.equal(res.json.error.details?.index, 2, `details.index: ${res.text}`);
      assert.deepEqual(await snapshot(srv, ['b4', 'b5']), before1);
      assert.equal(await lastSeq(srv), s0);
      assert.deepEqual(await feedSince(s0), []);
      assertError(await r('GET', '/v1/c/b5/would_be_created'), 404);
    });
  }

  test('a doc nested 65 deep in a batch -> 400, nothing written', async () => {
    const s0 = await lastSeq(srv);
    const deep = '{"a":'.repeat(64) + '1' + '}'.repeat(64); // 64 objects + the op's doc level = 65
    const body = `{"ops":[{"op":"create","col":"b11","id":"ok","doc":{}},{"op":"put","col":"b11","id":"deep","doc":{"x":${deep}}}]}`;
    assertError(await r('POST', '/v1/batch', { body }), 400, 'bad_request');
    assert.equal(await lastSeq(srv), s0);
    assertError(await r('GET', '/v1/c/b11/ok'), 404);
  });

  test('ops apply in order: create then patch then delete the same doc', async () => {
    const res = await batch([
      { op: 'create', col: 'b6', id: 'seq', doc: { a: 1 } },
      { op: 'patch', col: 'b6', id: 'seq', doc: { b: 2 } },
      { op: 'put', col: 'b6', id: 'seq', doc: { c: 3 }, if_version: 2 },
    ]);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.results[1].version, 2);
    assert.deepEqual(userFields(res.json.results[1]), { a: 1, b: 2 });
    assert.equal(res.json.results[2].version, 3);
    const del = await batch([{ op: 'delete', col: 'b6', id: 'seq' }, { op: 'create', col: 'b6', id: 'seq', doc: { again: true } }]);
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json.results[0], { id: 'seq', version: 3 });
    assert.equal(del.json.results[1].version, 1);
  });

  test('1000 ops commit together; 1001 and 0 -> 400', async () => {
    const s0 = await lastSeq(srv);
    const ops = Array.from({ length: 1000 }, (_, i) => ({ op: 'create', col: 'b7', id: `k${i}`, doc: { i } }));
    const res = await batch(ops);
    assert.equal(res.status, 200, res.text.slice(0, 300));
    assert.equal(res.json.results.length, 1000);
    assert.equal(res.json.seq, s0 + 1000);

    const before1 = await snapshot(srv, ['b8']);
    const big = Array.from({ length: 1001 }, (_, i) => ({ op: 'create', col: 'b8', id: `k${i}`, doc: {} }));
    assertError(await batch(big), 400, 'bad_request');
    assertError(await batch([]), 400, 'bad_request');
    assert.deepEqual(await snapshot(srv, ['b8']), before1);
  });

  test('malformed batch bodies -> 400', async () => {
    const s0 = await lastSeq(srv);
    for (const body of ['{}', '{"ops":5}', '{"ops":{}}', '[]', '{"ops":[{"op":"create","col":"b9","doc":{}}]', 'x', '',
      '{"ops":[{"op":"create","col":"b9","doc":{"a":1,"a":2}}]}']) {
      assertError(await r('POST', '/v1/batch', { body }), 400, 'bad_request');
    }
    assert.equal(await lastSeq(srv), s0);
  });

  test('GET /v1/batch -> 405 with Allow', async () => {
    const res = await r('GET', '/v1/batch');
    assertError(res, 405, 'method_not_allowed');
    assert.match(res.headers.get('allow') || '', /POST/);
  });

  test('Idempotency-Key on a batch replays the first answer and writes nothing', async () => {
    const headers = { 'Idempotency-Key': 'batch-key-1' };
    const ops = [{ op: 'create', col: 'b10', doc: { n: 1 } }, { op: 'create', col: 'b10', doc: { n: 2 } }];
    const a = await batch(ops, headers);
    assert.equal(a.status, 200, a.text);
    const s = await lastSeq(srv);
    const b = await batch(ops, headers);
    assert.equal(b.status, 200);
    assert.deepEqual(b.json, a.json);
    assert.equal(await lastSeq(srv), s);
    const list = await r('GET', '/v1/c/b10');
    assert.equal(list.json.docs.length, 2);

    // A failed batch is not remembered.
    const h2 = { 'Idempotency-Key': 'batch-key-2' };
    assertError(await batch([{ op: 'patch', col: 'b10', id: 'missing', doc: {} }], h2), 404);
    const retry = await batch([{ op: 'create', col: 'b10', id: 'later', doc: {} }], h2);
    assert.equal(retry.status, 200, retry.text);
  });
});
