// where.js: queries. The `where` semantics of the server's lists,
// evaluated here (for the SSE fallback and the changes other tabs share),
// how two states of a document compare, and the Query and DocRef objects
// that db.collection() and db.doc() return.
// Part of the browser SDK; the interface is in ../livedb.js.
import { LiveDBError } from './errors.js';

export const OPS = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', 'contains']);
export const COLLECTION_RE = /^_?[a-z][a-z0-9_]{0,63}$/;

// ---------------------------------------------------------------- where, evaluated here
//
// The server's list semantics (docs/API.md "Lists"), for the SSE fallback
// and for changes shared by other tabs: comparisons are type-strict, a
// missing field matches nothing (not even `ne`).

function fieldValue(doc, path) {
  let v = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

function isScalar(v) {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function scalarEq(a, b) { return isScalar(a) && isScalar(b) && a === b; }

function order(a, b) {
  const comparable = (typeof a === 'number' && typeof b === 'number') ||
    (typeof a === 'string' && typeof b === 'string');
  if (!comparable) return null;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function condHolds(doc, [field, op, value]) {
  const v = fieldValue(doc, field);
  if (v === undefined) return false;
  switch (op) {
    case 'eq': return scalarEq(v, value);
    case 'ne': return !scalarEq(v, value);
    case 'lt': { const c = order(v, value); return c !== null && c < 0; }
    case 'le': { const c = order(v, value); return c !== null && c <= 0; }
    case 'gt': { const c = order(v, value); return c !== null && c > 0; }
    case 'ge': { const c = order(v, value); return c !== null && c >= 0; }
    case 'in': return Array.isArray(value) && value.some((x) => scalarEq(v, x));
    case 'contains':
      if (Array.isArray(v)) return v.some((x) => scalarEq(x, value));
      return typeof v === 'string' && typeof value === 'string' && v.includes(value);
    default: return false;
  }
}

// Is `a` an older state of the document than `b`? A document deleted and
// created again starts over at version 1, so its created_at goes first.
export function olderThan(a, b) {
  if (a.created_at !== b.created_at && a.created_at && b.created_at) return a.created_at < b.created_at;
  return typeof a.version === 'number' && typeof b.version === 'number' && a.version < b.version;
}

// Documents of the server's own collections (_presence, _activity) have no
// version: their content decides.
export function sameDoc(a, b) {
  if (a === b) return true;
  if (typeof a.version === 'number' || typeof b.version === 'number') {
    return a.version === b.version && a.created_at === b.created_at && a.updated_at === b.updated_at;
  }
  return JSON.stringify(a) === JSON.stringify(b);
}

// ---------------------------------------------------------------- queries

export class Query {
  constructor(db, col, where = []) {
    this._db = db;
    this.col = col;
    this._where = where;
  }

  // Adds a condition (the operators of lists: eq ne lt le gt ge in
  // contains); returns a new query.
  where(field, op, value) {
    if (typeof field !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$/.test(field)) {
      throw new LiveDBError('bad_request', `bad field name ${JSON.stringify(field)}`);
    }
    if (!OPS.has(op)) throw new LiveDBError('bad_request', `unknown operator ${op} (use ${[...OPS].join(' ')})`);
    if (value === undefined) throw new LiveDBError('bad_request', 'where(field, op, value): value is missing');
    return new Query(this._db, this.col, [...this._where, [field, op, value]]);
  }

  // cb(snap): {docs (by id), changes, stale, fromCache, seq}; onError(err)
  // when the server refuses the subscription. Returns the unsubscribe.
  onSnapshot(cb, onError) {
    return this._db._listen({ col: this.col, where: this._where }, cb, onError);
  }

  // One read over HTTP: every matching document (all pages), by id.
  async get() {
    return (await this._db._list(this.col, this._where)).docs;
  }
}

export class DocRef {
  constructor(db, col, id) {
    this._db = db;
    this.col = col;
    this.id = id;
  }

  // cb({doc|null, changes, stale, fromCache, seq}). Returns the unsubscribe.
  onSnapshot(cb, onError) {
    return this._db._listen({ col: this.col, docId: this.id }, cb, onError);
  }

  async get() {
    try {
      return await this._db.api('GET', `/v1/c/${this.col}/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (e.code === 'not_found') return null;
      throw e;
    }
  }
}
