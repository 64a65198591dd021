import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
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

const PLAIN_DECIMAL = /^-?(0|[1-9][0-9]*)$/

interface ObjectSchema {
  properties?: Record<string, { type?: unknown }>
}

/**
 * Ajv's coercion reads any JavaScript number: `/api/products/1e1` would be product 10 and `0x10` 16,
 * so one resource would answer to many URLs. Integers in a path or query must be written in plain
 * decimal; the handler still gets a number.
 */
function plainDecimalIntegers(schema: ObjectSchema, validate: ValidateFunction) {
  const integers = Object.entries(schema.properties ?? {})
    .filter(([, property]) => property.type === 'integer')
    .map(([name]) => name)
  if (integers.length === 0) return validate
  const checked = (data: Record<string, unknown> | undefined) => {
    const bad = integers.find((name) => typeof data?.[name] === 'string' && !PLAIN_DECIMAL.test(data[name]))
    if (bad !== undefined) {
      const error: ErrorObject = {
        instancePath: `/${bad}`,
        schemaPath: `#/properties/${bad}/type`,
        keyword: 'type',
        params: { type: 'integer' },
        message: 'must be an integer in plain decimal',
      }
      checked.errors = [error]
      return false
    }
    const valid = validate(data)
    checked.errors = validate.errors
    return valid
  }
  checked.errors = null as ErrorObject[] | null | undefined
  return checked
}

export default fp(
  async (app) => {
    const strict = ajv(false)
    const coercing = ajv(true)
    app.setValidatorCompiler(({ schema, httpPart }) =>
      httpPart === 'body'
        ? strict.compile(schema)
        : plainDecimalIntegers(schema as ObjectSchema, coercing.compile(schema)),
    )
  },
  { name: 'validation' },
)
