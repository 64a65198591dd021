export type Role = 'customer' | 'admin'

/** What a Stampede JWT says about its bearer. */
export interface TokenClaims {
  /** The user's id (a UUID). */
  sub: string
  /** The role when the token was signed; the API acts on the role in the user's row (src/auth/auth.plugin.ts). */
  role: Role
  /** A guest account (no password): some sales are for registered accounts only. */
  guest: boolean
  /**
   * The user's token_version when the token was signed (migration 007); absent means 0. Logging out or
   * changing the password raises the row's version, and the token stops working.
   */
  ver?: number
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A signature proves who signed a token, not what is in it: claims of another shape are refused. */
export function hasClaimsShape(claims: Partial<Record<keyof TokenClaims, unknown>>): claims is TokenClaims {
  return (
    typeof claims.sub === 'string' &&
    UUID.test(claims.sub) &&
    (claims.role === 'customer' || claims.role === 'admin') &&
    typeof claims.guest === 'boolean' &&
    (claims.ver === undefined || (Number.isSafeInteger(claims.ver) && (claims.ver as number) >= 0))
  )
}

/** The version a token was signed at. */
export const tokenVersionOf = (claims: TokenClaims): number => claims.ver ?? 0
