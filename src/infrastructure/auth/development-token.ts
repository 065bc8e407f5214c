import { SignJWT } from 'jose';
import { HS256, type Role } from './jwt-verifier.ts';

export interface DevelopmentTokenClaims {
  readonly subject: string;
  /** Any string: a role the API does not know gets 403 everywhere. */
  readonly role: Role | string;
  /** A jose time span from now: `8h`, `30 minutes`, `-5m` (already expired); or seconds since the epoch. */
  readonly expires: string | number;
  readonly issuer?: string;
  readonly audience?: string;
}

/**
 * An HS256 token signed with the shared secret, for `npm run token` and tests. A real deployment gets its
 * tokens from its identity provider (AUTH_JWKS_URL) and has no use for this.
 */
export function mintDevelopmentToken(secret: string, claims: DevelopmentTokenClaims): Promise<string> {
  let jwt = new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: HS256, typ: 'JWT' })
    .setSubject(claims.subject)
    .setIssuedAt()
    .setExpirationTime(claims.expires);
  if (claims.issuer) jwt = jwt.setIssuer(claims.issuer);
  if (claims.audience) jwt = jwt.setAudience(claims.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}
