import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import fp from 'fastify-plugin'

// Fastify's default Ajv coerces types ("5" becomes 5, true becomes 1) and silently strips unknown
// properties. For bodies that would let a string or a boolean turn into a quantity or an amount, so
// bodies get a strict validator: no coercion, unknown properties rejected. Path and query strings are
// text by nature, so they keep coercion (an `:id` of "42" must become the integer 42).
function ajv(coerceTypes: boolean): Ajv {
  const instance = new Ajv({ coerceTypes, removeAdditional: false, useDefaults: true, allErrors: false })
  addFormats.default(instance)
  return instance
}

export default fp(
  async (app) => {
    const strict = ajv(false)
    const coercing = ajv(true)
    app.setValidatorCompiler(({ schema, httpPart }) =>
      httpPart === 'body' ? strict.compile(schema) : coercing.compile(schema),
    )
  },
  { name: 'validation' },
)
