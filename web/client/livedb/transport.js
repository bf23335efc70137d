// transport.js: what the two transports (ws.js, sse.js) share: the db they
// serve, whether they are open, and their end, told to the db once. Each
// fills in open(), close() (ends it without telling the db), subscribe(L),
// unsubscribe(L) and presence(state).
// Part of the browser SDK; the interface is in ../livedb.js.

export class Transport {
  constructor(db, kind) {
    this.db = db;
    this.kind = kind;     // 'ws' | 'sse'
    this.opened = false;  // it opened (a failure to open counts apart)
    this.dead = false;    // closed, by either side
  }

  get isOpen() { return this.opened && !this.dead; }

  // The connection is over (closed by the server, failed, dead, or timed
  // out). Tells the db once.
  _ended(info) {
    if (this.dead) return;
    this.close();
    this.db._transportClosed(this, { opened: this.opened, ...info });
  }
}
