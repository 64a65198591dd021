import type { FastifyError } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, IdempotentReplayError, RedisUnavailableError } from '../errors.js'
import { isRedisUnavailable } from '../redis/client.js'

// The one place where errors become HTTP answers, always shaped `{ code, message }`.
// Named errors keep their status and code; Fastify's own 4xx (bad JSON, body too large, validation)
// keep theirs; Redis not answering (a command timed out, no connection) is a 503 with Retry-After;
// anything else is a 5xx whose details go to the log, never to the client.
export default fp(
  async (app) => {
    app.setErrorHandler((thrown: FastifyError | AppError, request, reply) => {
      const error = isRedisUnavailable(thrown) ? new RedisUnavailableError(thrown) : thrown
      if (error instanceof IdempotentReplayError) {
        return reply.header('idempotent-replayed', 'true').status(error.storedStatus).send(error.storedBody)
      }
      if (error instanceof AppError) {
        if (error.statusCode >= 500) request.log.warn({ err: error }, error.message)
        return reply
          .status(error.statusCode)
          .headers(error.headers)
          .send({ code: error.code, message: error.message })
      }
      if (error.validation) {
        return reply.status(400).send({ code: 'VALIDATION_FAILED', message: error.message })
      }
      const status = error.statusCode ?? 500
      if (status >= 400 && status < 500) {
        return reply.status(status).send({ code: clientErrorCode(error), message: error.message })
      }
      request.log.error({ err: error }, 'unhandled error')
      return reply.status(500).send({ code: 'INTERNAL', message: 'Internal server error' })
    })

    app.setNotFoundHandler((request, reply) => {
      reply
        .status(404)
        .send({ code: 'NOT_FOUND', message: `Route ${request.method} ${request.url} not found` })
    })
  },
  { name: 'error-handler' },
)

/** Fastify's codes look like FST_ERR_CTP_BODY_TOO_LARGE; clients get the readable tail. */
function clientErrorCode(error: FastifyError): string {
  if (error.statusCode === 413) return 'BODY_TOO_LARGE'
  if (error.statusCode === 415) return 'UNSUPPORTED_MEDIA_TYPE'
  return 'BAD_REQUEST'
}
