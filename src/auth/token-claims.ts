export type Role = 'customer' | 'admin'

/** What a Stampede JWT says about its bearer. */
export interface TokenClaims {
  /** The user's id (a UUID). */
  sub: string
  role: Role
  /** A guest account (no password): some sales are for registered accounts only. */
  guest: boolean
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A signature proves who signed a token, not what is in it: claims of another shape are refused. */
export function hasClaimsShape(claims: Partial<Record<keyof TokenClaims, unknown>>): claims is TokenClaims {
  return (
    typeof claims.sub === 'string' &&
    UUID.test(claims.sub) &&
    (claims.role === 'customer' || claims.role === 'admin') &&
    typeof claims.guest === 'boolean'
  )
}
