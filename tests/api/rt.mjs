// Realtime test helpers: a WebSocket client (the `ws` package, which nobody
// here wrote) with a queue of received messages and waits with timeouts, and
// a model of what a subscriber should end up holding.

import WebSocket from 'ws';
import assert from 'node:assert/strict';

// connect(srv, {headers, path, token}) -> client
//   client.msgs          every message received, parsed, in order
//   client.send(obj)
//   client.next(pred, ms) takes the first message not taken yet that satisfies
//                        pred (messages before it stay for later calls)
//   client.close(code)   resolves with {code, reason} once closed
//   client.closed        a promise of {code, reason}
export function connect(srv, { headers = {}, path = '/v1/realtime', url, token } = {}) {
  // The server's admin token unless another (token) or none (token: null).
  const tok = token === undefined ? srv.token : token;
  const h = { ...headers };
  if (tok && !('Authorization' in h)) h.Authorization = `Bearer ${tok}`;
  const ws = new WebSocket(url || `ws://127.0.0.1:${srv.port}${path}`, { headers: h });
  const c = {
    ws,
    msgs: [],
    pending: [],
    waiters: [],
    closeInfo: null,
    send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
    take(pred) {
      const i = this.pending.findIndex(pred);
      return i < 0 ? undefined : this.pending.splice(i, 1)[0];
    },
    next(pred = () => true, ms = 5000) {
      return new Promise((resolve, reject) => {
        const hit = this.take(pred);
        if (hit) return resolve(hit);
        const w = {
          check: () => {
            const m = this.take(pred);
            if (m) { clearTimeout(w.t); resolve(m); return true; }
            if (this.closeInfo) {
              clearTimeout(w.t);
              reject(new Error(`connection closed (${this.closeInfo.code}) while waiting; pending: ${
                JSON.stringify(this.pending).slice(0, 600)}`));
              return true;
            }
            return false;
          },
        };
        w.t = setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no matching message within ${ms} ms; pending: ${
            JSON.stringify(this.pending).slice(0, 600)}`));
        }, ms);
        this.waiters.push(w);
      });
    },
    close(code) {
      if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(this.closeInfo);
      ws.close(code);
      return this.closed;
    },
    terminate() { ws.terminate(); return this.closed; },
  };
  c.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`),
        { status: res.statusCode, body })));
    });
    ws.once('error', reject);
  });
  c.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      c.closeInfo = { code, reason: String(reason) };
      for (const w of c.waiters.splice(0)) w.check();
      resolve(c.closeInfo);
    });
  });
  ws.on('error', () => { /* surfaced through opened/closed */ });
  ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    c.msgs.push(m);
    c.pending.push(m);
    c.waiters = c.waiters.filter((w) => !w.check());
  });
  return c;
}

export async function open(srv, opts) {
  const c = connect(srv, opts);
  await c.opened;
  return c;
}

// Subscribes and waits for the whole snapshot (every piece until more:false).
// Returns {seq, docs}.
export async function subscribe(c, sub, ms = 10_000) {
  c.send({ t: 'sub', ...sub });
  const docs = [];
  for (;;) {
    const m = await c.next((x) => (x.t === 'snapshot' || x.t === 'error') && x.sub === sub.id, ms);
    if (m.t === 'error') throw Object.assign(new Error(`sub ${sub.id}: ${JSON.stringify(m.error)}`), { error: m.error });
    docs.push(...m.docs);
    if (!m.more) return { seq: m.seq, docs };
  }
}

// A subscriber's view: documents by id, kept from snapshot and changes, with
// checks that seqs only grow and each arrives once.
export class View {
  constructor() { this.docs = new Map(); this.seq = 0; this.seqs = []; }
  snapshot(docs, seq) {
    this.docs = new Map(docs.map((d) => [d.id, d]));
    this.seq = seq;
  }
  apply(m) {
    assert.ok(m.seq > this.seq, `seq ${m.seq} after ${this.seq}: out of order or twice`);
    this.seq = m.seq;
    this.seqs.push(m.seq);
    if (m.op === 'removed') {
      assert.ok(this.docs.has(m.id), `removed ${m.id} that the view does not hold (seq ${m.seq})`);
      this.docs.delete(m.id);
    } else if (m.op === 'added') {
      assert.ok(!this.docs.has(m.id), `added ${m.id} that the view holds already (seq ${m.seq})`);
      this.docs.set(m.id, m.doc);
    } else {
      assert.equal(m.op, 'modified');
      assert.ok(this.docs.has(m.id), `modified ${m.id} that the view does not hold (seq ${m.seq})`);
      this.docs.set(m.id, m.doc);
    }
  }
  sorted() { return [...this.docs.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)); }
}
