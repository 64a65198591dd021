import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { isDependencyUnavailable } from '../dependency-errors.js'
import { AppError, IdempotentReplayError, DependencyUnavailableError } from '../errors.js'

// The one place where errors become HTTP answers, always shaped `{ code, message }`.
// Named errors keep their status and code; Fastify's own 4xx (bad JSON, body too large, validation)
// keep theirs; a dependency that is away is a 503; anything else is a 5xx whose details go to the log, never to the client.
export default fp(
  async (app) => {
    app.setErrorHandler((thrown: FastifyError | AppError, request, reply) => {
      // A dependency that is away (Postgres restarting, Redis paused, the pool exhausted) is a 503 with
      // Retry-After, not a 500: the client should come back in a moment, and nobody should be paged for a bug.
      const error =
        !(thrown instanceof AppError) && isDependencyUnavailable(thrown)
          ? new DependencyUnavailableError(thrown)
          : thrown
      if (error instanceof IdempotentReplayError) {
        const stored = error.storedBody as { code?: unknown } | null
        if (typeof stored?.code === 'string') reply.errorCode = stored.code
        return reply.header('idempotent-replayed', 'true').status(error.storedStatus).send(error.storedBody)
      }
      if (error instanceof AppError) {
        if (error.statusCode >= 500) request.log.warn({ err: error }, error.message)
        reply.errorCode = error.code
        return reply
          .status(error.statusCode)
          .headers(error.headers)
          .send({ code: error.code, message: error.message })
      }
      if (error.validation) {
        reply.errorCode = 'VALIDATION_FAILED'
        return reply.status(400).send({ code: 'VALIDATION_FAILED', message: error.message })
      }
      const status = error.statusCode ?? 500
      if (status >= 400 && status < 500) {
        reply.errorCode = clientErrorCode(error)
        return reply.status(status).send({ code: reply.errorCode, message: error.message })
      }
      request.log.error({ err: error }, 'unhandled error')
      reply.errorCode = 'INTERNAL'
      return reply.status(500).send({ code: 'INTERNAL', message: 'Internal server error' })
    })

    app.setNotFoundHandler((request, reply) => {
      reply.errorCode = 'NOT_FOUND'
      reply
        .status(404)
        .send({ code: 'NOT_FOUND', message: `Route ${request.method} ${request.url} not found` })
    })
  },
  // The metrics plugin declares reply.errorCode, which this handler fills in.
  { name: 'error-handler', dependencies: ['metrics'] },
)

/** Fastify's codes look like FST_ERR_CTP_BODY_TOO_LARGE; clients get the readable tail. */
function clientErrorCode(error: FastifyError): string {
  if (error.statusCode === 413) return 'BODY_TOO_LARGE'
  if (error.statusCode === 415) return 'UNSUPPORTED_MEDIA_TYPE'
  return 'BAD_REQUEST'
}

/**
 * Node refuses some requests before Fastify sees them (a header block over Node's limit, bytes that are
 * not HTTP, a client too slow to send its headers) and Fastify answers them on the bare socket, in a
 * shape of its own. This writes the API's `{ code, message }` instead. Passed to Fastify as
 * `clientErrorHandler` (src/app.ts); nginx refuses oversized headers first, so a client behind it rarely
 * meets these.
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, reason, code, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'HEADERS_TOO_LARGE', 'the request headers are too large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'REQUEST_TIMEOUT', 'the request took too long to arrive']
        : [400, 'Bad Request', 'BAD_REQUEST', 'the request could not be read']
  const body = JSON.stringify({ code, message })
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    )
  socket.destroy(error)
}

/**
 * Errors Fastify meets before routing (a URL whose percent-encoding is broken, `/%zz`) skip the error
 * handler and get Fastify's own shape, which also echoes the URL. Passed to Fastify as `frameworkErrors`.
 */
export function answerFrameworkError(
  error: FastifyError,
  _request: FastifyRequest,
  reply: FastifyReply,
): void {
  const badUrl = error.code === 'FST_ERR_BAD_URL'
  reply.errorCode = badUrl ? 'BAD_REQUEST' : 'INTERNAL'
  void reply
    .status(badUrl ? 400 : 500)
    .send(
      badUrl
        ? { code: 'BAD_REQUEST', message: 'the URL is not valid (broken percent-encoding)' }
        : { code: 'INTERNAL', message: 'Internal server error' },
    )
}
