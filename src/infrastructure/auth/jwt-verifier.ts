import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { DependencyUnavailableError } from '../../application/errors.ts';
import { isPlainText, isStorableText } from '../../domain/student.ts';

/** `reader`: GETs, the SSE stream and the hub. `writer`: writes, and everything a reader may do (in that order). */
export const ROLES = ['reader', 'writer'] as const;
export type Role = (typeof ROLES)[number];

/** Whoever a verified token speaks for: its `sub`, and the most capable known role its `role` claim names. */
export interface Caller {
  readonly subject: string;
  readonly role: Role | undefined;
  /** When this verifier stops taking the token (epoch ms): its `exp`, plus the tolerance for the issuer's clock. */
  readonly expiresAt: number;
}

export function mayAct(caller: Caller, required: Role): boolean {
  return caller.role === 'writer' || caller.role === required;
}

/** The token is missing something, forged, expired or not for us: the client must get a new one (401). */
export class InvalidTokenError extends Error {
  override readonly name = 'InvalidTokenError';
}

export interface TokenVerifier {
  /** Resolves with the caller; rejects with InvalidTokenError, or DependencyUnavailableError when the key set cannot be fetched. */
  verify(token: string): Promise<Caller>;
}

export interface JwtVerifierOptions {
  /** HS256 shared secret. */
  readonly jwtSecret?: string;
  /** Where the issuer publishes its public keys (RS256, ES256, ...); fetched on demand and cached. */
  readonly jwksUrl?: string;
  readonly issuer?: string;
  readonly audience?: string;
}

export const HS256 = 'HS256';

/** How far `exp` and `nbf` may be off our clock (Spring Security's default; ASP.NET Core allows 5 min). */
const CLOCK_SKEW_SECONDS = 60;

// The key set could not be fetched or read: the issuer's problem, not the token's.
const KEY_SET_FAILURES = new Set(['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC']);

/** A verifier for the configured key, or undefined when none is configured (auth off). */
export function createJwtVerifier(options: JwtVerifierOptions): TokenVerifier | undefined {
  const { jwtSecret, jwksUrl, issuer, audience } = options;
  if (!jwtSecret && !jwksUrl) return undefined;
  // With a secret only HS256 is accepted; with a key set, the algorithms of its keys (jose matches `alg` and `kid`).
  const secret = jwtSecret ? new TextEncoder().encode(jwtSecret) : undefined;
  const keyFor: JWTVerifyGetKey = secret ? async () => secret : createRemoteJWKSet(new URL(jwksUrl!));
  const verifyOptions = {
    ...(secret ? { algorithms: [HS256] } : {}),
    ...(issuer ? { issuer } : {}),
    ...(audience ? { audience } : {}),
    // A token without an expiry would be valid forever.
    requiredClaims: ['sub', 'exp'],
    // The issuer's clock and ours differ a little: a token fresh from it may start a second "in the future".
    clockTolerance: CLOCK_SKEW_SECONDS,
  };
  return {
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keyFor, verifyOptions));
      } catch (error) {
        if (error instanceof errors.JOSEError && !KEY_SET_FAILURES.has(error.code))
          throw new InvalidTokenError(describe(error), { cause: error });
        // With a local secret nothing is fetched: anything else is a bug, not an outage.
        if (secret) throw error;
        throw new DependencyUnavailableError('identity provider (JWKS)', { cause: error });
      }
      // jose checks that `sub` is there, not what it is; it becomes the actor stored with every write.
      const subject: unknown = payload.sub;
      if (typeof subject !== 'string' || !isSubject(subject))
        throw new InvalidTokenError('The token\'s "sub" claim is not valid.');
      // One role as a string, several as an array (IdentityServer, ASP.NET Core): a writer may do what a reader may.
      const claimed: unknown[] = Array.isArray(payload.role) ? payload.role : [payload.role];
      const role = ROLES.findLast((known) => claimed.includes(known));
      // jose has checked `exp` is there and a number.
      return { subject, role, expiresAt: (payload.exp! + CLOCK_SKEW_SECONDS) * 1_000 };
    },
  };
}

const MAX_SUBJECT_LENGTH = 255;

/**
 * A subject the API can store and show as an actor (RFC 7519 §4.1.2: a string, here of 1 to 255 characters), plain
 * text as a student's own fields are.
 */
function isSubject(subject: string): boolean {
  return (
    subject.length > 0 &&
    subject.length <= MAX_SUBJECT_LENGTH &&
    isStorableText(subject) &&
    isPlainText(subject)
  );
}

function describe(error: InstanceType<typeof errors.JOSEError>): string {
  if (error instanceof errors.JWTExpired) return 'The token has expired.';
  if (error instanceof errors.JWTClaimValidationFailed)
    return `The token's "${error.claim}" claim is not valid.`;
  return 'The token is not valid.';
}
