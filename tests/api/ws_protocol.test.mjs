// RFC 6455 conformance over raw sockets, in the spirit of the Autobahn
// test suite's sections 1-7, 9 and 10: framing, ping/pong, reserved bits,
// opcodes, fragmentation, UTF-8, close handshake, limits. Every frame here
// is built by hand so that broken ones can be sent.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer } from './lib.mjs';

// ---------------------------------------------------------------------------
// Frames

function frame(opcode, payload = Buffer.alloc(0), { fin = true, rsv = 0, mask = true, len } = {}) {
  payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const n = len ?? payload.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode)];
  const m = mask ? 0x80 : 0;
  if (n < 126) head.push(m | n);
  else if (n < 65536) head.push(m | 126, n >> 8, n & 255);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    head.push(...b);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const body = Buffer.from(payload.map((x, i) => x ^ key[i % 4]));
  return Buffer.concat([Buffer.from(head), key, body]);
}
const text = (s, o) => frame(0x1, Buffer.from(s), o);
const closeFrame = (code, reason = '') => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return frame(0x8, b);
};

// Parses server frames (unmasked) out of a buffer.
function parseFrames(buf) {
  const out = [];
  let i = 0;
  while (i + 2 <= buf.length) {
    const fin = !!(buf[i] & 0x80), op = buf[i] & 0x0f, masked = !!(buf[i + 1] & 0x80);
    let n = buf[i + 1] & 0x7f, h = 2;
    if (n === 126) { if (i + 4 > buf.length) break; n = buf.readUInt16BE(i + 2); h = 4; }
    else if (n === 127) { if (i + 10 > buf.length) break; n = Number(buf.readBigUInt64BE(i + 2)); h = 10; }
    if (i + h + n > buf.length) break;
    out.push({ fin, op, masked, payload: buf.subarray(i + h, i + h + n) });
    i += h + n;
  }
  return out;
}

// A raw WebSocket session: handshake, then bytes in and frames out.
function session(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const s = {
      sock, closed: false, frames: [],
      send(...bufs) { for (const b of bufs) sock.write(b); },
      // Waits until the server closes the TCP connection (or ms pass).
      end(ms = 3000) {
        return new Promise((res) => {
          if (s.closed) return res(s);
          const t = setTimeout(() => res(s), ms);
          sock.once('close', () => { clearTimeout(t); res(s); });
        });
      },
      texts() { return s.frames.filter((f) => f.op === 1).map((f) => JSON.parse(f.payload.toString())); },
      closeCode() {
        const c = s.frames.find((f) => f.op === 8);
        if (!c) return undefined;
        return c.payload.length >= 2 ? c.payload.readUInt16BE(0) : 1005;
      },
      async waitFor(pred, ms = 3000) {
        const t0 = Date.now();
        while (!pred(s) && !s.closed && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 10));
        return pred(s);
      },
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString();
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head));
        upgraded = true;
        buf = buf.subarray(i + 4);
        resolve(s);
      }
      s.frames = parseFrames(buf);
    });
    sock.on('close', () => { s.closed = true; });
    sock.on('error', () => { s.closed = true; });
    sock.write('GET /v1/realtime HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${AUTH}\r\n`);
  });
}

// Sends frames, waits for the server to close, returns the session.
async function closedBy(port, ...frames) {
  const s = await session(port);
  s.send(...frames);
  await s.end();
  return s;
}

const PING_MSG = '{"t":"ping"}';
let AUTH = ''; // the admin's Authorization line, once the server runs

describe('RFC 6455 over raw sockets', () => {
  let srv;
  before(async () => { srv = await startServer(); AUTH = srv.authLine(); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  // --- 1. framing
  test('1.1 text messages of 0, 125, 126, 65535, 65536 bytes are taken whole', async () => {
    const s = await session(srv.port);
    for (const n of [125, 126, 65535, 65536]) {
      // A valid message of n bytes that is not JSON: the answer is an error message.
      s.send(text('x'.repeat(n)));
    }
    s.send(text(''));
    s.send(text(PING_MSG));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong')));
    const errs = s.texts().filter((m) => m.t === 'error');
    assert.equal(errs.length, 5);
    assert.ok(s.frames.every((f) => !f.masked && f.fin), 'server frames unmasked and final');
    s.sock.destroy();
  });

  test('1.2 a message over 1 MiB -> 1009', async () => {
    const s = await closedBy(srv.port, text('x'.repeat(1024 * 1024 + 1)));
    assert.equal(s.closeCode(), 1009);
    assert.ok(s.closed);
  });

  test('1.3 a frame header claiming 2^62 bytes -> 1009 at once, nothing buffered', async () => {
    const s = await closedBy(srv.port, frame(0x1, Buffer.alloc(0), { len: 2 ** 52 }));
    assert.equal(s.closeCode(), 1009);
  });

  test('1.4 frames cut into single bytes are reassembled', async () => {
    const s = await session(srv.port);
    const f = Buffer.concat([text(PING_MSG), frame(0x9, 'hi'), text(PING_MSG)]);
    for (const b of f) s.send(Buffer.from([b]));
    assert.ok(await s.waitFor((x) => x.texts().filter((m) => m.t === 'pong').length === 2));
    assert.ok(s.frames.some((fr) => fr.op === 0xA && fr.payload.toString() === 'hi'));
    s.sock.destroy();
  });

  test('1.5 unmasked client frame -> 1002', async () => {
    const s = await closedBy(srv.port, text(PING_MSG, { mask: false }));
    assert.equal(s.closeCode(), 1002);
  });

  test('1.6 length not in its shortest form -> 1002', async () => {
    const bad = Buffer.concat([Buffer.from([0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4]), Buffer.from('hello')]);
    const s = await closedBy(srv.port, bad);
    assert.equal(s.closeCode(), 1002);
  });

  // --- 2. ping/pong
  test('2.1 ping with payload -> pong with the same payload; 125 bytes too', async () => {
    const s = await session(srv.port);
    s.send(frame(0x9, 'hello'), frame(0x9, 'p'.repeat(125)), frame(0x9));
    assert.ok(await s.waitFor((x) => x.frames.filter((f) => f.op === 0xA).length === 3));
    const pongs = s.frames.filter((f) => f.op === 0xA).map((f) => f.payload.toString());
    assert.deepEqual(pongs, ['hello', 'p'.repeat(125), '']);
    s.sock.destroy();
  });

  test('2.2 ping over 125 bytes -> 1002', async () => {
    const s = await closedBy(srv.port, frame(0x9, 'p'.repeat(126)));
    assert.equal(s.closeCode(), 1002);
  });

  test('2.3 unsolicited pong is ignored', async () => {
    const s = await session(srv.port);
    s.send(frame(0xA, 'unasked'), text(PING_MSG));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong')));
    assert.ok(!s.closed);
    s.sock.destroy();
  });

  test('2.4 fragmented ping -> 1002', async () => {
    const s = await closedBy(srv.port, frame(0x9, 'ab', { fin: false }));
    assert.equal(s.closeCode(), 1002);
  });

  // --- 3. reserved bits
  for (const rsv of [1, 2, 3, 4, 5, 6, 7]) {
    test(`3.${rsv} RSV=${rsv} -> 1002`, async () => {
      const s = await closedBy(srv.port, text(PING_MSG, { rsv }));
      assert.equal(s.closeCode(), 1002);
    });
  }

  test('3.8 RSV on a ping -> 1002, after the good frame before it is answered', async () => {
    const s = await closedBy(srv.port, text(PING_MSG), frame(0x9, 'x', { rsv: 1 }));
    assert.equal(s.closeCode(), 1002);
    assert.ok(s.texts().some((m) => m.t === 'pong'));
  });

  // --- 4. opcodes
  for (const op of [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]) {
    test(`4 reserved opcode ${op} -> 1002`, async () => {
      const s = await closedBy(srv.port, frame(op, 'x'));
      assert.equal(s.closeCode(), 1002);
    });
  }

  test('4 binary message -> 1003 (the protocol is JSON text)', async () => {
    const s = await closedBy(srv.port, frame(0x2, Buffer.from([1, 2, 3])));
    assert.equal(s.closeCode(), 1003);
  });

  // --- 5. fragmentation
  test('5.1 a text message in three fragments, a ping between them', async () => {
    const s = await session(srv.port);
    s.send(frame(0x1, '{"t":', { fin: false }), frame(0x9, 'mid'), frame(0x0, '"pi', { fin: false }),
      frame(0x0, 'ng"}'));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong')));
    assert.ok(s.frames.some((f) => f.op === 0xA && f.payload.toString() === 'mid'));
    s.sock.destroy();
  });

  test('5.2 continuation with nothing to continue -> 1002', async () => {
    const s = await closedBy(srv.port, frame(0x0, 'x'));
    assert.equal(s.closeCode(), 1002);
  });

  test('5.3 a new text frame inside a fragmented message -> 1002', async () => {
    const s = await closedBy(srv.port, frame(0x1, 'a', { fin: false }), frame(0x1, 'b'));
    assert.equal(s.closeCode(), 1002);
  });

  test('5.4 fragments adding up to over 1 MiB -> 1009', async () => {
    const half = 'x'.repeat(600 * 1024);
    const s = await closedBy(srv.port, frame(0x1, half, { fin: false }), frame(0x0, half));
    assert.equal(s.closeCode(), 1009);
  });

  test('5.5 empty fragments are fine', async () => {
    const s = await session(srv.port);
    s.send(frame(0x1, '', { fin: false }), frame(0x0, PING_MSG, { fin: false }), frame(0x0, ''));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong')));
    s.sock.destroy();
  });

  // --- 6. UTF-8
  test('6.1 invalid UTF-8 in a text frame -> 1007', async () => {
    const s = await closedBy(srv.port, frame(0x1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])));
    assert.equal(s.closeCode(), 1007);
  });

  test('6.2 a code point split across fragments is fine; a broken one across fragments -> 1007', async () => {
    const euro = Buffer.from('{"t":"ping","x":"€"}');
    const cut = euro.indexOf(0xe2) + 1;
    let s = await session(srv.port);
    s.send(frame(0x1, euro.subarray(0, cut), { fin: false }), frame(0x0, euro.subarray(cut)));
    assert.ok(await s.waitFor((x) => x.texts().length > 0));
    s.sock.destroy();
    s = await closedBy(srv.port, frame(0x1, Buffer.from([0x22, 0xe2, 0x82]), { fin: false }),
      frame(0x0, Buffer.from([0x41, 0x22])));
    assert.equal(s.closeCode(), 1007);
  });

  test('6.3 overlong encodings and surrogates -> 1007', async () => {
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]) {
      const s = await closedBy(srv.port, frame(0x1, Buffer.from(bad)));
      assert.equal(s.closeCode(), 1007, Buffer.from(bad).toString('hex'));
    }
  });

  // --- 7. close handshake
  test('7.1 close 1000 is echoed and the server closes TCP', async () => {
    const s = await closedBy(srv.port, closeFrame(1000, 'bye'));
    assert.equal(s.closeCode(), 1000);
    assert.ok(s.closed);
  });

  test('7.2 close without a code is answered with an empty close', async () => {
    const s = await closedBy(srv.port, frame(0x8));
    assert.equal(s.closeCode(), 1005);
  });

  test('7.3 nothing is answered after the close', async () => {
    const s = await closedBy(srv.port, closeFrame(1000), text(PING_MSG));
    assert.equal(s.texts().length, 0);
  });

  test('7.4 a close payload of one byte -> 1002', async () => {
    const s = await closedBy(srv.port, frame(0x8, Buffer.from([3])));
    assert.equal(s.closeCode(), 1002);
  });

  for (const code of [0, 999, 1004, 1005, 1006, 1012, 1016, 2000, 2999, 5000, 65535]) {
    test(`7.5 close with invalid code ${code} -> 1002`, async () => {
      const s = await closedBy(srv.port, closeFrame(code));
      assert.equal(s.closeCode(), 1002);
    });
  }

  for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]) {
    test(`7.6 close with valid code ${code} is echoed`, async () => {
      const s = await closedBy(srv.port, closeFrame(code));
      assert.equal(s.closeCode(), code);
    });
  }

  test('7.7 invalid UTF-8 in the close reason -> 1007', async () => {
    const b = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from([0xff, 0xfe])]);
    const s = await closedBy(srv.port, frame(0x8, b));
    assert.equal(s.closeCode(), 1007);
  });

  test('7.8 close over 125 bytes -> 1002', async () => {
    const s = await closedBy(srv.port, closeFrame(1000, 'r'.repeat(124)));
    assert.equal(s.closeCode(), 1002);
  });

  // --- 9. performance-ish: many messages, large ones
  test('9.1 1000 pings in one write are all answered in order', async () => {
    const s = await session(srv.port);
    const many = [];
    for (let i = 0; i < 1000; i++) many.push(text(PING_MSG));
    s.send(Buffer.concat(many));
    assert.ok(await s.waitFor((x) => x.texts().length === 1000, 10_000));
    s.sock.destroy();
  });

  test('9.2 a 1 MiB message in 4 KiB fragments is taken', async () => {
    const s = await session(srv.port);
    const body = Buffer.from('x'.repeat(1024 * 1024));
    const parts = [];
    for (let i = 0; i < body.length; i += 4096) {
      parts.push(frame(i === 0 ? 0x1 : 0x0, body.subarray(i, i + 4096), { fin: i + 4096 >= body.length }));
    }
    s.send(Buffer.concat(parts), text(PING_MSG));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong'), 10_000));
    assert.equal(s.texts()[0].t, 'error'); // not JSON, but taken whole
    s.sock.destroy();
  });

  // --- 10. misc
  test('10.1 the server still serves others after all of the above', async () => {
    const s = await session(srv.port);
    s.send(text(PING_MSG));
    assert.ok(await s.waitFor((x) => x.texts().some((m) => m.t === 'pong')));
    s.sock.destroy();
    const r = await srv.req('GET', '/v1/health');
    assert.equal(r.status, 200);
  });
});
