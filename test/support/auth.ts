// Tokens for the auth tests, minted the way `npm run token` does.
import { mintDevelopmentToken } from '../../src/infrastructure/auth/development-token.ts';

export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256';

/** Environment that turns auth on with the test secret. */
export const authEnv = { AUTH_JWT_SECRET: TEST_JWT_SECRET } as const;

export function tokenFor(
  role: string,
  { subject = `${role}-1`, expires = '5m', secret = TEST_JWT_SECRET } = {},
): Promise<string> {
  return mintDevelopmentToken(secret, { subject, role, expires });
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}
