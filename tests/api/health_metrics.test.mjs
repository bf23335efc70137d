// Operations endpoints: /v1/health and the Prometheus text at /metrics.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, assertError, lastSeq } from './lib.mjs';

let srv;
const r = (...a) => srv.req(...a);
before(async () => {
  srv = await startServer();
  for (let i = 0; i < 10; i++) await r('PUT', `/v1/c/m/d${i}`, { body: { i } });
  await r('POST', '/v1/batch', { body: { ops: [{ op: 'create', col: 'm', doc: {} }, { op: 'create', col: 'm', doc: {} }] } });
  await r('DELETE', '/v1/c/m/d0');
  await r('GET', '/v1/c/m/d1');
  await r('GET', '/v1/c/m/nope');
});
after(async () => {
  if (!srv) return;
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});

// Parses Prometheus text format 0.0.4 strictly enough to catch malformed lines.
function parseMetrics(text) {
  const types = {};
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (TYPE|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      assert.ok(m, `bad comment line: ${line}`);
      if (m[1] === 'TYPE') {
        assert.match(m[3], /^(counter|gauge|histogram|summary|untyped)$/, line);
        types[m[2]] = m[3];
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|\+Inf|-Inf|NaN))(?: \d+)?$/.exec(line);
    assert.ok(m, `bad sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/g;
      let lm;
      let consumed = 0;
      while ((lm = re.exec(m[3])) !== null) { labels[lm[1]] = lm[2]; consumed += lm[0].length; }
      assert.equal(consumed, m[3].length, `bad labels: ${line}`);
    }
    samples.push({ name: m[1], labels, value: Number(m[4].replace('+Inf', 'Infinity')) });
  }
  return { types, samples };
}

async function getMetrics() {
  const res = await r('GET', '/metrics');
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers.get('content-type') || '', /^text\/plain/);
  return { text: res.text, ...parseMetrics(res.text) };
}

function checkHistogram(m, name) {
  assert.equal(m.types[name], 'histogram', `${name} is a histogram`);
  const buckets = m.samples.filter((s) => s.name === `${name}_bucket`);
  assert.ok(buckets.length >= 2, `${name} has buckets`);
  // Group by labels other than le.
  const groups = new Map();
  for (const b of buckets) {
    const { le, ...rest } = b.labels;
    assert.ok(le !== undefined, `${name}_bucket has le`);
    const key = JSON.stringify(rest);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push({ le: le === '+Inf' ? Infinity : Number(le), v: b.value });
  }
  for (const [key, bs] of groups) {
    for (let i = 1; i < bs.length; i++) {
      assert.ok(bs[i].le > bs[i - 1].le, `${name} buckets in increasing le order (${key})`);
      assert.ok(bs[i].v >= bs[i - 1].v, `${name} buckets are cumulative (${key})`);
    }
    assert.equal(bs.at(-1).le, Infinity, `${name} ends with le="+Inf"`);
    const labels = JSON.parse(key);
    const match = (s) => JSON.stringify(s.labels) === JSON.stringify(labels);
    const count = m.samples.find((s) => s.name === `${name}_count` && match(s));
    const sum = m.samples.find((s) => s.name === `${name}_sum` && match(s));
    assert.ok(count && sum, `${name}_count and _sum present (${key})`);
    assert.equal(count.value, bs.at(-1).v, `${name}_count equals the +Inf bucket`);
  }
  return groups;
}

const one = (m, name) => {
  const s = m.samples.filter((x) => x.name === name);
  assert.equal(s.length, 1, `${name} has one sample`);
  return s[0].value;
};

describe('health', () => {
  test('GET /v1/health -> ok with checks', async () => {
    const res = await r('GET', '/v1/health');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') || '', /application\/json/);
    assert.equal(res.json.status, 'ok');
    assert.equal(typeof res.json.checks, 'object');
    for (const k of ['database', 'writer', 'disk']) assert.ok(k in res.json.checks, `checks.${k}: ${res.text}`);
  });
  test('POST /v1/health -> 405', async () => {
    const res = await r('POST', '/v1/health', { body: {} });
    assertError(res, 405, 'method_not_allowed');
    assert.match(res.headers.get('allow') || '', /GET/);
  });
  test('health stays ok under repeated calls', async () => {
    for (let i = 0; i < 20; i++) {
      const res = await r('GET', '/v1/health');
      assert.equal(res.json.status, 'ok');
    }
  });
});

describe('metrics', () => {
  test('every documented metric is present with its type', async () => {
    const m = await getMetrics();
    const expected = {
      livedb_http_requests_total: 'counter',
      livedb_http_request_duration_seconds: 'histogram',
      livedb_connections_open: 'gauge',
      livedb_writer_queue_depth: 'gauge',
      livedb_commit_batch_size: 'histogram',
      livedb_commit_duration_seconds: 'histogram',
      livedb_changes_committed_total: 'counter',
      livedb_feed_last_seq: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) {
      assert.equal(m.types[name], type, `# TYPE ${name} ${type}`);
    }
    checkHistogram(m, 'livedb_http_request_duration_seconds');
    checkHistogram(m, 'livedb_commit_duration_seconds');
    const groups = checkHistogram(m, 'livedb_commit_batch_size');
    const all = [...groups.values()][0];
    assert.ok(all.at(-1).v >= 1, 'at least one commit counted');
    assert.ok(one(m, 'livedb_connections_open') >= 1);
    assert.ok(one(m, 'livedb_writer_queue_depth') >= 0);
  });

  test('changes committed and feed last seq match the feed', async () => {
    const seq = await lastSeq(srv);
    assert.equal(seq, 13); // 10 puts + 2 batch creates + 1 delete
    const m = await getMetrics();
    assert.equal(one(m, 'livedb_changes_committed_total'), seq);
    assert.equal(one(m, 'livedb_feed_last_seq'), seq);
    // Jobs committed: the 13 writes in at most 13 jobs, and the admin's login
    // (a session and an activity entry, no change).
    const sum = m.samples.find((s) => s.name === 'livedb_commit_batch_size_sum');
    assert.ok(sum.value <= seq + 1 && sum.value >= 1, `commit batch size sum ${sum.value} within 1..${seq + 1}`);
  });

  test('requests are counted by route and status, and the counters grow', async () => {
    const m1 = await getMetrics();
    const byStatus = (m, st) => m.samples
      .filter((s) => s.name === 'livedb_http_requests_total' && s.labels.status === st)
      .reduce((a, s) => a + s.value, 0);
    for (const s of m1.samples.filter((x) => x.name === 'livedb_http_requests_total')) {
      assert.ok('route' in s.labels && 'status' in s.labels, `labels route and status: ${JSON.stringify(s.labels)}`);
      assert.ok(Number.isInteger(s.value) && s.value >= 0);
    }
    assert.ok(byStatus(m1, '201') >= 10, 'creates counted');
    assert.ok(byStatus(m1, '404') >= 1, 'a 404 counted');
    const routes = new Set(m1.samples.filter((s) => s.name === 'livedb_http_requests_total').map((s) => s.labels.route));
    assert.ok(routes.size >= 2, `several routes: ${[...routes]}`);
    assert.ok(![...routes].some((x) => x.includes('d1') || x.includes('nope')), `routes are templates, not raw paths: ${[...routes]}`);

    for (let i = 0; i < 5; i++) await r('GET', '/v1/c/m/d1');
    await r('GET', '/v1/c/m/missing-x');
    const m2 = await getMetrics();
    assert.ok(byStatus(m2, '200') >= byStatus(m1, '200') + 5);
    assert.ok(byStatus(m2, '404') >= byStatus(m1, '404') + 1);
    const durCount = (m) => m.samples.filter((s) => s.name === 'livedb_http_request_duration_seconds_count').reduce((a, s) => a + s.value, 0);
    assert.ok(durCount(m2) >= durCount(m1) + 6, 'request durations observed');
  });

  test('writes move the commit metrics', async () => {
    const m1 = await getMetrics();
    for (let i = 0; i < 5; i++) await r('POST', '/v1/c/m', { body: { i } });
    const m2 = await getMetrics();
    assert.equal(one(m2, 'livedb_changes_committed_total'), one(m1, 'livedb_changes_committed_total') + 5);
    assert.equal(one(m2, 'livedb_feed_last_seq'), one(m1, 'livedb_feed_last_seq') + 5);
    const c1 = m1.samples.find((s) => s.name === 'livedb_commit_batch_size_count').value;
    const c2 = m2.samples.find((s) => s.name === 'livedb_commit_batch_size_count').value;
    assert.ok(c2 >= c1 + 1 && c2 <= c1 + 5, `commits ${c1} -> ${c2}`);
  });
});

describe('logs', () => {
  test('stderr is one JSON object per line; each request has an access line', async () => {
    const s2 = await startServer();
    await s2.req('PUT', '/v1/c/logs/a', { body: { a: 1 } });
    await s2.req('GET', '/v1/c/logs/missing');
    assert.equal(await s2.stop(), 0, s2.stderrTail());
    const lines = s2.stderr.split('\n').filter((l) => l.length);
    assert.ok(lines.length >= 3, s2.stderr);
    const objs = lines.map((l) => {
      try { return JSON.parse(l); } catch { assert.fail(`stderr line is not JSON: ${l}`); }
    });
    for (const o of objs) assert.equal(typeof o, 'object');
    const text = JSON.stringify(objs);
    assert.match(text, /"status":201/);
    assert.match(text, /"status":404/);
  });
  test('--no-access-log leaves requests out of the log', async () => {
    const s2 = await startServer({ args: ['--no-access-log'] });
    await s2.req('PUT', '/v1/c/logs/a', { body: { a: 1 } });
    await s2.req('GET', '/v1/c/logs/missing');
    assert.equal(await s2.stop(), 0, s2.stderrTail());
    assert.doesNotMatch(s2.stderr, /\/v1\/c\/logs/);
  });
});
