// errors.js: the SDK's one error type, LiveDBError, and what the SDK knows
// of the server's error codes: the HTTP status of each (for errors that
// come over the WebSocket) and which failures leave a call to be sent again.
// Part of the browser SDK; the interface is in ../livedb.js.

// HTTP status for each error code, for errors that arrive over the
// WebSocket (which carries the code, not the status).
export const STATUS = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404,
  method_not_allowed: 405, conflict: 409, invalid_transition: 409,
  resync_required: 410, precondition_failed: 412, payload_too_large: 413,
  invalid: 422, insufficient_stock: 422, rate_limited: 429, internal: 500,
  unavailable: 503, storage_full: 507,
};

// Failures after which a call may be sent again: it was not answered (or
// the server did not run it).
export const RETRYABLE = new Set(['network', 'timeout', 'unavailable']);

// ---------------------------------------------------------------- errors

export class LiveDBError extends Error {
  // code: the server's error code ('invalid', 'insufficient_stock', ...) or
  // the SDK's own: 'network' (no answer), 'timeout', 'closed' (db.close()).
  constructor(code, message, status = STATUS[code] ?? 0, details) {
    super(message || code);
    this.name = 'LiveDBError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  // From the server's {"code","message","details"}.
  static from(err, status) {
    err = err && typeof err === 'object' ? err : {};
    return new LiveDBError(err.code || 'internal', err.message || 'error', status ?? STATUS[err.code] ?? 0,
      err.details);
  }

  toJSON() {
    return { code: this.code, message: this.message, status: this.status, details: this.details };
  }
}
