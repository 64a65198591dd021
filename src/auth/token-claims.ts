export type Role = 'customer' | 'admin'

/** What a Stampede JWT says about its bearer. */
export interface TokenClaims {
  sub: string
  role: Role
}
