// Errors that say "a server we depend on is away or overloaded right now", not "this request is
// wrong" and not "the code is wrong". The error handler answers them with 503 and Retry-After, so a
// client backs off and retries instead of reporting a bug: a Postgres restart, a paused Redis or an
// exhausted pool is the worst minute of a sale, and the answer must say "try again", fast.

// SQLSTATE classes and codes for "the server could not serve this now":
// 08 connection exception; 53 insufficient resources (too many connections);
// 57P01-57P03 shutdown/crash/cannot connect now; 57014 query cancelled (statement_timeout);
// 55P03 lock not available (lock_timeout); 40001/40P01 a retry budget ran out on a conflict.
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[123]$|57014$|55P03$|40001$|40P01$)/

// Node's socket errors when a server is not there or went away mid-request.
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'])

// ioredis' names for "Redis did not answer": the connection closed with the command in flight, or
// reconnecting took too many attempts. Redis' own error replies (ReplyError: a script error, a wrong
// type) are bugs, not these, and stay 500s.
const NAMES = new Set(['AbortError', 'MaxRetriesPerRequestError'])

// Redis' error replies from a server that cannot take writes as the primary right now: READONLY from a
// replica (an old primary that a failover demoted), NOREPLICAS from a primary cut off from its replicas
// (min-replicas-to-write), MASTERDOWN from a replica whose primary is away. A gate script's refused
// write keeps the prefix. The next connection, through the sentinels, reaches the new primary.
const REDIS_NOT_PRIMARY = /^(READONLY|NOREPLICAS|MASTERDOWN) /

// Messages of node-postgres and ioredis that carry no code.
const MESSAGES = [
  'timeout exceeded when trying to connect', // pg-pool: no connection free within connectionTimeoutMillis
  'Connection terminated', // pg: the server closed the connection (shutdown, crash, terminated backend)
  'Client has encountered a connection error',
  'Command timed out', // ioredis commandTimeout: Redis paused or overloaded
  "Stream isn't writeable", // ioredis with the offline queue off: not connected right now
  'Connection is closed', // ioredis: the connection dropped with the command in flight
  'Reached the max retries per request limit',
]

/** True when `err` (or its cause) says a dependency is unavailable rather than the request being bad. */
export function isDependencyUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (typeof e !== 'object') return false
    const { code, message, name } = e as { code?: unknown; message?: unknown; name?: unknown }
    if (typeof name === 'string' && NAMES.has(name)) return true
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code))) return true
    if (typeof message === 'string' && MESSAGES.some((m) => message.includes(m))) return true
    if (typeof message === 'string' && REDIS_NOT_PRIMARY.test(message)) return true
  }
  return false
}
