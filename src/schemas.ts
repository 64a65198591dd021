// Response schemas shared by many routes. They are plain objects (not $ref) so that both the strict
// body validator and the serializer can use them as they are.

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const
