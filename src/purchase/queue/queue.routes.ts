import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import { errorSchema, idParams } from '../../schemas.js'
import type { QueueEntry } from './queue.js'

const placeSchema = {
  type: 'object',
  required: ['status'],
  additionalProperties: false,
  properties: {
    status: {
      type: 'string',
      enum: ['waiting', 'admitted', 'lapsed', 'sold_out', 'absent'],
      description:
        'waiting: not your turn yet; admitted: buy now, sending `admission` as the Waiting-Room-Admission header, before leaseEndsAt; lapsed: your turn passed without a purchase; sold_out: no unit left; absent: no place taken',
    },
    place: { type: 'integer', description: 'your place in admission order (1 is first)' },
    admitted: {
      type: 'integer',
      description: 'places admitted so far: your turn comes when it reaches your place',
    },
    places: { type: 'integer', description: 'places taken in all' },
    drawn: {
      type: 'boolean',
      description:
        "false while a raffle's draw is not fixed (before the start): until then your place may move",
    },
    admission: {
      type: 'string',
      description: 'your signed admission, for the Waiting-Room-Admission header',
    },
    leaseEndsAt: { type: 'string', format: 'date-time' },
    bought: { type: 'boolean' },
  },
} as const

const joinBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    proof: {
      type: 'string',
      maxLength: 2048,
      description:
        "for a waiting room with a proof of work: the solved challenge of GET .../queue/challenge, base64 JSON {algorithm, challenge, number, salt, signature} (ALTCHA's payload)",
    },
  },
} as const

const challengeSchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['algorithm', 'challenge', 'maxnumber', 'salt', 'signature'],
  description: 'find number in 0..maxnumber with hex(SHA-256(salt + number)) = challenge (ALTCHA v1)',
  properties: {
    algorithm: { type: 'string' },
    challenge: { type: 'string' },
    maxnumber: { type: 'integer' },
    salt: { type: 'string' },
    signature: { type: 'string' },
  },
} as const

const queueSchema = (summary: string) =>
  ({
    tags: ['sales'],
    summary,
    security: [{ bearer: [] }],
    params: idParams,
    response: { 200: placeSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema, 429: errorSchema },
  }) as const

/** A sale's waiting room: take a place, see where it stands (./queue.ts). */
const queueRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { queue: QueueEntry } }> = async (
  app,
  { queue },
) => {
  app.addHook('onRequest', app.authenticate)
  app.post(
    '/api/sales/:id/queue',
    {
      schema: {
        ...queueSchema("Take a place in a sale's waiting room (one per buyer)"),
        body: joinBody,
      },
    },
    (request) => {
      const arrival = request.headers['queue-arrival']
      return queue.join(
        request.user,
        request.params.id,
        typeof arrival === 'string' ? arrival : undefined,
        request.body?.proof,
      )
    },
  )
  app.get(
    '/api/sales/:id/queue/challenge',
    {
      schema: {
        tags: ['sales'],
        summary: "The proof of work a place in this sale's waiting room costs (null: none)",
        security: [{ bearer: [] }],
        params: idParams,
        response: { 200: challengeSchema, 404: errorSchema, 409: errorSchema },
      },
    },
    (request) => queue.challengeOf(request.user, request.params.id),
  )
  app.get(
    '/api/sales/:id/queue',
    { schema: queueSchema("Your place in a sale's waiting room, and your admission once it is your turn") },
    (request) => queue.placeOf(request.user, request.params.id),
  )
}

export default queueRoutes
