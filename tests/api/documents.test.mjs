// Documents: create, read, replace, merge-patch, delete, versions, ETag and
// If-Match, Idempotency-Key, and every kind of bad input (which must answer
// 400/404/409/412/413 and leave stored data unchanged).

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, assertError, snapshot, listAll, lastSeq, raw,
  DOC_ID_RE, TIME_RE, SERVER_FIELDS, userFields,
} from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => {
  if (!srv) return;
  const code = await srv.stop();
  assert.equal(code, 0, `server exit code; stderr:\n${srv.stderrTail()}`);
});

const r = (...a) => srv.req(...a);

function checkServerFields(doc, { id, version } = {}) {
  assert.deepEqual(Object.keys(doc).slice(0, 4), SERVER_FIELDS, `server fields first, in order: ${JSON.stringify(doc)}`);
  assert.equal(typeof doc.id, 'string');
  assert.ok(Number.isInteger(doc.version) && doc.version >= 1, `version: ${doc.version}`);
  assert.match(doc.created_at, TIME_RE);
  assert.match(doc.updated_at, TIME_RE);
  assert.ok(doc.updated_at >= doc.created_at, 'updated_at >= created_at');
  if (id !== undefined) assert.equal(doc.id, id);
  if (version !== undefined) assert.equal(doc.version, version);
}

// Runs a bad request and checks that nothing stored changed.
async function expectRejected(cols, fn, status, code, label) {
  const before = await snapshot(srv, cols);
  const res = await fn();
  try {
    assertError(res, status, code);
  } catch (e) {
    if (label) e.message = `${label}: ${e.message}`;
    throw e;
  }
  const afterSnap = await snapshot(srv, cols);
  assert.deepEqual(afterSnap, before, 'stored data must not change after a rejected request');
  return res;
}

describe('create', () => {
  test('POST without id generates a 20-char base-62 id', async () => {
    const res = await r('POST', '/v1/c/people', { body: { name: 'Ada', age: 36 } });
    assert.equal(res.status, 201, res.text);
    checkServerFields(res.json, { version: 1 });
    assert.match(res.json.id, DOC_ID_RE);
    assert.equal(res.json.created_at, res.json.updated_at);
    assert.deepEqual(userFields(res.json), { name: 'Ada', age: 36 });
    assert.equal(res.headers.get('etag'), '"1"');
    assert.match(res.headers.get('content-type') || '', /application\/json/);

    const got = await r('GET', `/v1/c/people/${res.json.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.json, res.json);
    assert.equal(got.headers.get('etag'), '"1"');
  });

  test('generated ids are distinct', async () => {
    const ids = new Set();
    for (let i = 0; i < 20; i++) {
      const res = await r('POST', '/v1/c/genids', { body: { i } });
      assert.equal(res.status, 201, res.text);
      assert.match(res.json.id, DOC_ID_RE);
      ids.add(res.json.id);
    }
    assert.equal(ids.size, 20);
  });

  test('POST with id uses it', async () => {
    const res = await r('POST', '/v1/c/people', { body: { id: 'grace_h-1.x', name: 'Grace' } });
    assert.equal(res.status, 201, res.text);
    checkServerFields(res.json, { id: 'grace_h-1.x', version: 1 });
    assert.deepEqual(userFields(res.json), { name: 'Grace' });
    const got = await r('GET', '/v1/c/people/grace_h-1.x');
    assert.equal(got.status, 200);
    assert.deepEqual(got.json, res.json);
  });

  test('client values for version, created_at, updated_at are ignored; server fields come first', async () => {
    const res = await r('POST', '/v1/c/people', {
      body: { zeta: 1, version: 99, updated_at: 'yesterday', alpha: 2, created_at: '1999-01-01T00:00:00.000Z', id: 'owned1' },
    });
    assert.equal(res.status, 201, res.text);
    checkServerFields(res.json, { id: 'owned1', version: 1 });
    assert.notEqual(res.json.created_at, '1999-01-01T00:00:00.000Z');
    assert.notEqual(res.json.updated_at, 'yesterday');
    // Client fields keep their relative order after the server's four.
    assert.deepEqual(Object.keys(res.json), [...SERVER_FIELDS, 'zeta', 'alpha']);
    // Raw text starts with the id too.
    const got = await r('GET', '/v1/c/people/owned1');
    assert.match(got.text, /^\s*\{\s*"id"\s*:/);
  });

  test('POST with an existing id -> 409 conflict, stored doc unchanged', async () => {
    const c = await r('POST', '/v1/c/people', { body: { id: 'dup1', v: 'first' } });
    assert.equal(c.status, 201);
    await expectRejected(['people'], () => r('POST', '/v1/c/people', { body: { id: 'dup1', v: 'second' } }), 409, 'conflict');
    const got = await r('GET', '/v1/c/people/dup1');
    assert.equal(got.json.v, 'first');
    assert.equal(got.json.version, 1);
  });

  test('values round-trip: unicode, nested, arrays, numbers, null, booleans', async () => {
    const body = {
      id: 'rt1',
      s: 'héllo ✓ 😀 "quoted" \\ back\nnewline\u0001',
      n: { a: [1, 2, { b: null }], t: true, f: false },
      big: 9007199254740991,
      neg: -42,
      dbl: 0.1,
      exp: 1.5e300,
      empty: {},
      ea: [],
    };
    const res = await r('POST', '/v1/c/people', { body });
    assert.equal(res.status, 201, res.text);
    const got = await r('GET', '/v1/c/people/rt1');
    const { id, ...rest } = body;
    assert.deepEqual(userFields(got.json), rest);
  });

  test('64-bit integers are exact at both ends', async () => {
    const text = '{"id":"i64","max":9223372036854775807,"min":-9223372036854775808}';
    const res = await r('POST', '/v1/c/people', { body: text });
    assert.equal(res.status, 201, res.text);
    const got = await r('GET', '/v1/c/people/i64');
    assert.match(got.text, /"max"\s*:\s*9223372036854775807\b/);
    assert.match(got.text, /"min"\s*:\s*-9223372036854775808\b/);
  });

  test('doubles read back identical', async () => {
    const vals = [0.1, 1 / 3, 123456.789, -2.5e-308, 1.7976931348623157e308];
    const res = await r('POST', '/v1/c/people', { body: { id: 'dbl', vals } });
    assert.equal(res.status, 201, res.text);
    const got = await r('GET', '/v1/c/people/dbl');
    assert.deepEqual(got.json.vals, vals);
  });
});

describe('read', () => {
  test('GET missing doc -> 404 not_found', async () => {
    assertError(await r('GET', '/v1/c/people/nope-nope'), 404, 'not_found');
  });
  test('GET in a collection never written -> 404', async () => {
    assertError(await r('GET', '/v1/c/never_written/x'), 404, 'not_found');
  });
  test('list of a collection never written is empty', async () => {
    const res = await r('GET', '/v1/c/never_written2');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.docs, []);
    assert.equal(res.json.next, null);
    assert.equal(typeof res.json.seq, 'number');
  });
});

describe('put', () => {
  test('PUT creates (201) then replaces (200); versions increment', async () => {
    const c = await r('PUT', '/v1/c/things/t1', { body: { a: 1, b: 2 } });
    assert.equal(c.status, 201, c.text);
    checkServerFields(c.json, { id: 't1', version: 1 });
    assert.deepEqual(userFields(c.json), { a: 1, b: 2 });
    assert.equal(c.headers.get('etag'), '"1"');

    const u = await r('PUT', '/v1/c/things/t1', { body: { c: 3 } });
    assert.equal(u.status, 200, u.text);
    checkServerFields(u.json, { id: 't1', version: 2 });
    assert.deepEqual(userFields(u.json), { c: 3 }, 'PUT replaces the whole document');
    assert.equal(u.json.created_at, c.json.created_at, 'created_at kept');
    assert.ok(u.json.updated_at >= c.json.updated_at);
    assert.equal(u.headers.get('etag'), '"2"');

    const u2 = await r('PUT', '/v1/c/things/t1', { body: { c: 4, version: 1000 } });
    assert.equal(u2.status, 200);
    assert.equal(u2.json.version, 3);

    const g = await r('GET', '/v1/c/things/t1');
    assert.deepEqual(g.json, u2.json);
    assert.equal(g.headers.get('etag'), '"3"');
  });

  test('PUT body with the same id as the URL is fine; a different id -> 400', async () => {
    const ok = await r('PUT', '/v1/c/things/same', { body: { id: 'same', x: 1 } });
    assert.equal(ok.status, 201, ok.text);
    await expectRejected(['things'], () => r('PUT', '/v1/c/things/same', { body: { id: 'other', x: 2 } }), 400, 'bad_request');
    await expectRejected(['things'], () => r('PUT', '/v1/c/things/fresh', { body: { id: 'other', x: 2 } }), 400, 'bad_request');
    assertError(await r('GET', '/v1/c/things/fresh'), 404);
    assertError(await r('GET', '/v1/c/things/other'), 404);
  });
});

describe('patch', () => {
  test('RFC 7396 merge: null deletes, objects merge, arrays replace', async () => {
    const c = await r('PUT', '/v1/c/things/p1', {
      body: { keep: 'k', gone: 1, obj: { a: 1, b: { c: 2, d: 3 }, e: 4 }, arr: [1, 2, 3], scalar: 5 },
    });
    assert.equal(c.status, 201);
    const p = await r('PATCH', '/v1/c/things/p1', {
      body: { gone: null, obj: { b: { c: 20, d: null }, e: null, f: 'new' }, arr: [9], scalar: { now: 'obj' }, added: [1, { x: null }] },
    });
    assert.equal(p.status, 200, p.text);
    checkServerFields(p.json, { id: 'p1', version: 2 });
    assert.deepEqual(userFields(p.json), {
      keep: 'k',
      obj: { a: 1, b: { c: 20 }, f: 'new' },
      arr: [9],
      scalar: { now: 'obj' },
      added: [1, { x: null }],
    });
    assert.equal(p.json.created_at, c.json.created_at);
    assert.equal(p.headers.get('etag'), '"2"');
    const g = await r('GET', '/v1/c/things/p1');
    assert.deepEqual(g.json, p.json);
  });

  test('PATCH ignores server-owned fields and may repeat the id', async () => {
    await r('PUT', '/v1/c/things/p2', { body: { a: 1 } });
    const p = await r('PATCH', '/v1/c/things/p2', { body: { id: 'p2', version: 50, created_at: 'x', b: 2 } });
    assert.equal(p.status, 200, p.text);
    checkServerFields(p.json, { id: 'p2', version: 2 });
    assert.deepEqual(userFields(p.json), { a: 1, b: 2 });
  });

  test('PATCH with a different id -> 400', async () => {
    await r('PUT', '/v1/c/things/p3', { body: { a: 1 } });
    await expectRejected(['things'], () => r('PATCH', '/v1/c/things/p3', { body: { id: 'zzz' } }), 400, 'bad_request');
  });

  test('PATCH missing doc -> 404', async () => {
    await expectRejected(['things'], () => r('PATCH', '/v1/c/things/missing', { body: { a: 1 } }), 404, 'not_found');
  });

  test('empty PATCH still bumps the version', async () => {
    await r('PUT', '/v1/c/things/p4', { body: { a: 1 } });
    const p = await r('PATCH', '/v1/c/things/p4', { body: {} });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.version, 2);
    assert.deepEqual(userFields(p.json), { a: 1 });
  });

  test('PATCH with a non-object body -> 400', async () => {
    await r('PUT', '/v1/c/things/p5', { body: { a: 1 } });
    for (const body of ['[1]', '"s"', '5', 'null']) {
      await expectRejected(['things'], () => r('PATCH', '/v1/c/things/p5', { body }), 400, 'bad_request');
    }
  });
});

describe('delete', () => {
  test('DELETE answers {id, version}, then GET 404; DELETE again 404', async () => {
    await r('PUT', '/v1/c/things/d1', { body: { a: 1 } });
    await r('PATCH', '/v1/c/things/d1', { body: { a: 2 } });
    const d = await r('DELETE', '/v1/c/things/d1');
    assert.equal(d.status, 200, d.text);
    assert.deepEqual(d.json, { id: 'd1', version: 2 });
    assert.equal(d.headers.get('etag'), '"2"', 'every write answer carries ETag');
    assertError(await r('GET', '/v1/c/things/d1'), 404, 'not_found');
    await expectRejected(['things'], () => r('DELETE', '/v1/c/things/d1'), 404, 'not_found');
    const list = await listAll(srv, 'things');
    assert.ok(!list.some((x) => x.id === 'd1'));
  });

  test('a deleted id can be created again, starting at version 1', async () => {
    await r('PUT', '/v1/c/things/d2', { body: { a: 1 } });
    assert.equal((await r('DELETE', '/v1/c/things/d2')).status, 200);
    const c = await r('POST', '/v1/c/things', { body: { id: 'd2', b: 1 } });
    assert.equal(c.status, 201, c.text);
    assert.deepEqual(userFields(c.json), { b: 1 });
    assert.equal(c.json.version, 1);
  });
});

describe('If-Match', () => {
  test('PUT/PATCH/DELETE with the right version succeed; wrong version -> 412', async () => {
    await r('PUT', '/v1/c/things/m1', { body: { a: 1 } });
    await expectRejected(['things'], () => r('PUT', '/v1/c/things/m1', { body: { a: 2 }, headers: { 'If-Match': '"2"' } }), 412, 'precondition_failed');
    await expectRejected(['things'], () => r('PATCH', '/v1/c/things/m1', { body: { a: 2 }, headers: { 'If-Match': '"7"' } }), 412, 'precondition_failed');
    await expectRejected(['things'], () => r('DELETE', '/v1/c/things/m1', { headers: { 'If-Match': '"0"' } }), 412, 'precondition_failed');

    const p = await r('PUT', '/v1/c/things/m1', { body: { a: 2 }, headers: { 'If-Match': '"1"' } });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.version, 2);
    const q = await r('PATCH', '/v1/c/things/m1', { body: { b: 3 }, headers: { 'If-Match': '2' } });
    assert.equal(q.status, 200, q.text);
    assert.equal(q.json.version, 3);
    const d = await r('DELETE', '/v1/c/things/m1', { headers: { 'If-Match': '"3"' } });
    assert.equal(d.status, 200, d.text);
    assert.deepEqual(d.json, { id: 'm1', version: 3 });
  });

  test('If-Match on a missing document -> 412 (PUT does not create it)', async () => {
    await expectRejected(['things'], () => r('PUT', '/v1/c/things/m_missing', { body: { a: 1 }, headers: { 'If-Match': '"1"' } }), 412, 'precondition_failed');
    await expectRejected(['things'], () => r('PATCH', '/v1/c/things/m_missing', { body: { a: 1 }, headers: { 'If-Match': '"1"' } }), 412, 'precondition_failed');
    await expectRejected(['things'], () => r('DELETE', '/v1/c/things/m_missing', { headers: { 'If-Match': '"1"' } }), 412, 'precondition_failed');
    assertError(await r('GET', '/v1/c/things/m_missing'), 404);
  });

  test('ETag from a GET works as If-Match', async () => {
    await r('PUT', '/v1/c/things/m2', { body: { a: 1 } });
    const g = await r('GET', '/v1/c/things/m2');
    const etag = g.headers.get('etag');
    const ok = await r('PATCH', '/v1/c/things/m2', { body: { a: 2 }, headers: { 'If-Match': etag } });
    assert.equal(ok.status, 200);
    await expectRejected(['things'], () => r('PATCH', '/v1/c/things/m2', { body: { a: 3 }, headers: { 'If-Match': etag } }), 412, 'precondition_failed');
  });
});

describe('ids and collection names', () => {
  test('128-char id OK, 129-char id -> 400 (body and URL)', async () => {
    const id128 = 'a'.repeat(128);
    const ok = await r('PUT', `/v1/c/ids/${id128}`, { body: { x: 1 } });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.id, id128);
    const ok2 = await r('POST', '/v1/c/ids', { body: { id: 'b'.repeat(128) } });
    assert.equal(ok2.status, 201, ok2.text);

    const id129 = 'c'.repeat(129);
    await expectRejected(['ids'], () => r('PUT', `/v1/c/ids/${id129}`, { body: { x: 1 } }), 400, 'bad_request');
    await expectRejected(['ids'], () => r('POST', '/v1/c/ids', { body: { id: id129 } }), 400, 'bad_request');
    assertError(await r('GET', `/v1/c/ids/${id129}`), 400, 'bad_request');
  });

  test('ids with bad characters -> 400', async () => {
    const bad = ['a b', 'a/b', 'a%b', 'é', 'a:b', 'a+b', 'a"b', '', '..x/'];
    for (const id of bad) {
      await expectRejected(['ids'], () => r('POST', '/v1/c/ids', { body: { id } }), 400, 'bad_request', `id ${JSON.stringify(id)}`);
    }
    for (const id of [5, true, ['a'], { a: 1 }]) {
      await expectRejected(['ids'], () => r('POST', '/v1/c/ids', { body: { id } }), 400, 'bad_request');
    }
  });

  test('URL-encoded bad ids -> 400', async () => {
    for (const enc of ['a%2Fb', 'a%20b', 'a%25b', '%C3%A9', 'a%3Ab', 'a%00b', '%2E%2E%2Fx']) {
      await expectRejected(['ids'], () => r('PUT', `/v1/c/ids/${enc}`, { body: { x: 1 } }), 400, 'bad_request', `PUT /v1/c/ids/${enc}`);
      await expectRejected(['ids'], () => r('GET', `/v1/c/ids/${enc}`), 400, 'bad_request', `GET /v1/c/ids/${enc}`);
    }
  });

  test('URL-encoded good id is decoded', async () => {
    // %41 is "A": a well-formed id, only percent-encoded.
    const res = await r('PUT', '/v1/c/ids/enc%41ded', { body: { x: 1 } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.id, 'encAded');
    assert.equal((await r('GET', '/v1/c/ids/encAded')).status, 200);
  });

  test('bad collection names -> 400', async () => {
    const ok64 = 'c' + 'a'.repeat(63);
    const ok = await r('POST', `/v1/c/${ok64}`, { body: { x: 1 } });
    assert.equal(ok.status, 201, `64-char collection name is allowed: ${ok.text}`);
    for (const col of ['Users', 'uSers', '1abc', '_users', '_', 'a-b', 'a.b', 'c' + 'a'.repeat(64), '%C3%A9t', 'a%20b']) {
      await expectRejected(['ids'], () => r('POST', `/v1/c/${col}`, { body: { x: 1 } }), 400, 'bad_request', `POST /v1/c/${col}`);
      await expectRejected(['ids'], () => r('PUT', `/v1/c/${col}/x1`, { body: { x: 1 } }), 400, 'bad_request', `PUT /v1/c/${col}/x1`);
    }
    for (const col of ['Users', '1abc', 'c' + 'a'.repeat(64)]) {
      assertError(await r('GET', `/v1/c/${col}`), 400, 'bad_request');
      assertError(await r('GET', `/v1/c/${col}/x1`), 400, 'bad_request');
    }
  });
});

describe('bad bodies', () => {
  const cols = ['bodies'];
  before(async () => {
    const c = await r('PUT', '/v1/c/bodies/b0', { body: { a: 1 } });
    assert.equal(c.status, 201);
  });

  const cases = [
    ['array', '[1,2]'],
    ['string', '"str"'],
    ['number', '42'],
    ['null', 'null'],
    ['true', 'true'],
    ['empty body', ''],
    ['invalid JSON', '{"a":'],
    ['invalid JSON (unquoted key)', '{a:1}'],
    ['trailing garbage', '{"a":1} x'],
    ['two values', '{"a":1}{"b":2}'],
    ['trailing comma', '{"a":1,}'],
    ['single quotes', "{'a':1}"],
    ['duplicate keys', '{"a":1,"a":2}'],
    ['duplicate nested keys', '{"o":{"k":1,"k":1}}'],
    ['integer beyond int64', '{"n":9223372036854775808}'],
    ['integer below int64', '{"n":-9223372036854775809}'],
    ['huge integer', '{"n":123456789012345678901234567890}'],
    ['1e400', '{"n":1e400}'],
    ['NaN', '{"n":NaN}'],
    ['Infinity', '{"n":Infinity}'],
    ['lone surrogate escape', '{"s":"\\ud800"}'],
    ['raw control char in string', '{"s":"a\u0001b"}'],
  ];
  for (const [name, body] of cases) {
    test(`${name} -> 400 (POST, PUT and PATCH)`, async () => {
      await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body }), 400, 'bad_request', 'POST');
      await expectRejected(cols, () => r('PUT', '/v1/c/bodies/bx', { body }), 400, 'bad_request', 'PUT');
      await expectRejected(cols, () => r('PATCH', '/v1/c/bodies/b0', { body }), 400, 'bad_request', 'PATCH');
    });
  }

  const badUtf8 = [
    ['invalid byte 0xff', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
    ['truncated sequence', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')])],
    ['overlong encoding', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
    ['UTF-8 encoded surrogate', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
    ['bad byte in key', Buffer.concat([Buffer.from('{"'), Buffer.from([0xfe]), Buffer.from('":1}')])],
  ];
  for (const [name, body] of badUtf8) {
    test(`bad UTF-8 (${name}) -> 400`, async () => {
      await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body }), 400, 'bad_request');
      await expectRejected(cols, () => r('PATCH', '/v1/c/bodies/b0', { body }), 400, 'bad_request');
    });
  }

  // depth n: the document object itself is level 1.
  const nestObj = (n) => (n <= 1 ? '{"leaf":1}' : `{"a":${nestObj(n - 1)}}`);
  const nestArr = (n) => `{"a":${'['.repeat(n - 1)}1${']'.repeat(n - 1)}}`;
  test('nesting 64 deep is accepted, 65 deep -> 400 (objects)', async () => {
    const ok = await r('POST', '/v1/c/bodies', { body: nestObj(64) });
    assert.equal(ok.status, 201, `64 levels: ${ok.text.slice(0, 300)}`);
    const g = await r('GET', `/v1/c/bodies/${ok.json.id}`);
    assert.equal(g.status, 200);
    await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body: nestObj(65) }), 400, 'bad_request');
    await expectRejected(cols, () => r('PUT', '/v1/c/bodies/deep', { body: nestObj(65) }), 400, 'bad_request');
    await expectRejected(cols, () => r('PATCH', '/v1/c/bodies/b0', { body: nestObj(65) }), 400, 'bad_request');
    await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body: nestObj(5000) }), 400, 'bad_request');
  });

  test('nesting 64 deep is accepted, 65 deep -> 400 (arrays)', async () => {
    const ok = await r('POST', '/v1/c/bodies', { body: nestArr(64) });
    assert.equal(ok.status, 201, `64 levels: ${ok.text.slice(0, 300)}`);
    await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body: nestArr(65) }), 400, 'bad_request');
    await expectRejected(cols, () => r('POST', '/v1/c/bodies', { body: nestArr(100000) }), 400, 'bad_request');
  });

  test('body over 1 MiB -> 413; exactly at the limit is not 413', async () => {
    const over = JSON.stringify({ big: 'x'.repeat(1024 * 1024) });
    const before = await snapshot(srv, cols);
    // Raw socket: the server may answer before reading the body, so a fetch
    // body upload could see a reset; read the answer directly.
    const req = `POST /v1/c/bodies HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(over)}\r\nConnection: close\r\n\r\n`;
    const res = await raw(srv.port, [req, over], { timeout: 10000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 413, `got: ${res.text.slice(0, 300)}`);
    assert.equal(res.responses[0].json?.error?.code, 'payload_too_large');
    assert.deepEqual(await snapshot(srv, cols), before);

    // Just under 1 MiB is within the limit.
    const pad = 1024 * 1024 - 256 - Buffer.byteLength('{"id":"atlimit","big":""}');
    const under = `{"id":"atlimit","big":"${'y'.repeat(pad)}"}`;
    const okRes = await r('POST', '/v1/c/bodies', { body: under });
    assert.equal(okRes.status, 201, okRes.text.slice(0, 300));
    const g = await r('GET', '/v1/c/bodies/atlimit');
    assert.equal(g.json.big.length, pad);
  });

  test('wrong Content-Type is still parsed as JSON or refused cleanly', async () => {
    const res = await r('POST', '/v1/c/bodies', { body: '{"ct":1}', headers: { 'Content-Type': 'text/plain' } });
    assert.ok([201, 400, 415].includes(res.status), `status ${res.status}`);
  });
});

describe('Idempotency-Key', () => {
  test('same key twice -> identical answer, one document', async () => {
    const headers = { 'Idempotency-Key': 'key-one-1' };
    const a = await r('POST', '/v1/c/idem', { body: { n: 1 }, headers });
    assert.equal(a.status, 201, a.text);
    const seqAfterFirst = await lastSeq(srv);
    const b = await r('POST', '/v1/c/idem', { body: { n: 1 }, headers });
    assert.equal(b.status, a.status);
    assert.deepEqual(b.json, a.json);
    assert.equal(await lastSeq(srv), seqAfterFirst, 'replay writes nothing');
    const docs = await listAll(srv, 'idem');
    assert.equal(docs.length, 1);
    assert.equal(docs[0].id, a.json.id);
  });

  test('same key with a different body still replays the first answer', async () => {
    const headers = { 'Idempotency-Key': 'key-two' };
    const a = await r('POST', '/v1/c/idem2', { body: { n: 1 }, headers });
    assert.equal(a.status, 201);
    const b = await r('POST', '/v1/c/idem2', { body: { n: 2 }, headers });
    assert.equal(b.status, 201);
    assert.deepEqual(b.json, a.json);
    assert.equal((await listAll(srv, 'idem2')).length, 1);
  });

  test('a different key makes a new document', async () => {
    const a = await r('POST', '/v1/c/idem3', { body: { n: 1 }, headers: { 'Idempotency-Key': 'k-a' } });
    const b = await r('POST', '/v1/c/idem3', { body: { n: 1 }, headers: { 'Idempotency-Key': 'k-b' } });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    assert.notEqual(a.json.id, b.json.id);
    assert.equal((await listAll(srv, 'idem3')).length, 2);
  });

  test('a failed request is not remembered', async () => {
    const headers = { 'Idempotency-Key': 'k-fail' };
    const bad = await r('POST', '/v1/c/idem4', { body: '{"broken":', headers });
    assertError(bad, 400);
    const good = await r('POST', '/v1/c/idem4', { body: { ok: true }, headers });
    assert.equal(good.status, 201, good.text);
    assert.equal(good.json.ok, true);

    // 409 is a failure too.
    await r('POST', '/v1/c/idem4', { body: { id: 'taken' } });
    const headers2 = { 'Idempotency-Key': 'k-fail-2' };
    assertError(await r('POST', '/v1/c/idem4', { body: { id: 'taken' }, headers: headers2 }), 409);
    const retry = await r('POST', '/v1/c/idem4', { body: { id: 'free' }, headers: headers2 });
    assert.equal(retry.status, 201, retry.text);
    assert.equal(retry.json.id, 'free');
  });

  test('concurrent requests with the same key create one document', async () => {
    const headers = { 'Idempotency-Key': 'k-race' };
    const rs = await Promise.all(Array.from({ length: 10 }, () => r('POST', '/v1/c/idem5', { body: { n: 1 }, headers })));
    const ok = rs.filter((x) => x.status === 201);
    assert.ok(ok.length >= 1, rs.map((x) => x.status).join(','));
    for (const x of ok) assert.deepEqual(x.json, ok[0].json);
    assert.equal((await listAll(srv, 'idem5')).length, 1);
  });

  test('bad Idempotency-Key (too long, non-printable) -> 400', async () => {
    await expectRejected(['idem6'], () => r('POST', '/v1/c/idem6', { body: { n: 1 }, headers: { 'Idempotency-Key': 'k'.repeat(256) } }), 400, 'bad_request');
    const ok = await r('POST', '/v1/c/idem6', { body: { n: 1 }, headers: { 'Idempotency-Key': 'k'.repeat(255) } });
    assert.equal(ok.status, 201, ok.text);
  });
});

test('versions increment by one on every write and the ETag follows', async () => {
  let v = 0;
  for (let i = 0; i < 10; i++) {
    const res = i % 2 === 0
      ? await r('PUT', '/v1/c/vers/v1', { body: { i } })
      : await r('PATCH', '/v1/c/vers/v1', { body: { i } });
    v++;
    assert.equal(res.json.version, v);
    assert.equal(res.headers.get('etag'), `"${v}"`);
  }
});
