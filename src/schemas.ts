// Response schemas shared by many routes. They are plain objects (not $ref) so that both the strict
// body validator and the serializer can use them as they are.

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const

/**
 * Free text a client may store: no NUL character, which Postgres' text cannot hold (it would fail the
 * INSERT with a 500); every other character is the client's business.
 */
export const text = <const Limits extends { minLength?: number; maxLength: number }>(limits: Limits) =>
  ({ type: 'string', pattern: '^[^\\u0000]*$', ...limits }) as const

/**
 * A link the storefront may put in an `<img src>`: an http(s) URL, or a path on this site (`/images/x.svg`,
 * but not `//host` or `/\host`, which browsers read as another host). Visible ASCII only, so no
 * `javascript:` or `data:` scheme and no control character gets through.
 */
export const linkUrl = {
  type: 'string',
  maxLength: 500,
  pattern: '^(https?://[!-~]+|/(?![/\\\\])[!-~]*)$',
} as const
