import type { FastifyInstance } from 'fastify'
import { errorSchema } from '../schemas.js'
import { checkReadiness } from './readiness.js'

const checksSchema = {
  type: 'object',
  additionalProperties: { type: 'string', enum: ['up', 'down'] },
} as const

export default async function healthRoutes(app: FastifyInstance) {
  app.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'The process is up and its event loop answers',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  )

  app.get(
    '/health/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'Primary, replica and Redis all answer; 503 names the ones that do not',
        response: {
          200: { type: 'object', properties: { status: { type: 'string' }, checks: checksSchema } },
          503: { ...errorSchema, properties: { ...errorSchema.properties, checks: checksSchema } },
        },
      },
    },
    async (_request, reply) => {
      const report = await checkReadiness(app)
      if (report.failing.length === 0) return { status: 'ready', checks: report.checks }
      return reply.status(503).send({
        code: 'NOT_READY',
        message: `not ready: ${report.failing.join(', ')}`,
        checks: report.checks,
      })
    },
  )
}
