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
  instance.addFormat('uuid', CANONICAL_UUID)
  instance.addFormat('date-time', { type: 'string', validate: isStorableDateTime })
  return instance
}

// ajv-formats reads the standards generously: a `uuid` may be written `urn:uuid:…`, and a `date-time`
// may name second 60 (a leap second). Postgres refuses the first and `new Date()` the second (an invalid
// Date reaches the query as NaN), so both became 500s. The app accepts only what it can store: a UUID
// in its canonical 8-4-4-4-12 form, and a date-time whose fields are in range (second 0 to 59, an offset
// under 24 hours) and whose instant lies in the years 1 to 9999 in UTC, which Date and Postgres both hold.
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ]([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):([0-5]\d))$/
const FIRST_INSTANT = Date.parse('0001-01-01T00:00:00Z')
const LAST_INSTANT = Date.parse('9999-12-31T23:59:59.999Z')

export function isStorableDateTime(text: string): boolean {
  const match = DATE_TIME.exec(text)
  if (!match) return false
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])]
  // A Date rolls 02-30 over into March: the day must survive the round trip.
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return false
  const instant = Date.parse(text.replace(' ', 'T'))
  return Number.isFinite(instant) && instant >= FIRST_INSTANT && instant <= LAST_INSTANT
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
