// Tokens for the auth tests, minted the way `npm run token` does or signed with keys of a local key set (JWKS).
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
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

/** A JSON Web Key Set on a local HTTP server, as an identity provider publishes it. */
export async function serveKeySet(keys: readonly JWK[]): Promise<{ url: string; server: Server }> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`, server };
}

export interface SigningKey {
  readonly alg: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

export async function signingKey(alg: 'RS256' | 'ES256', kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), alg, kid, use: 'sig' } };
}

export function sign(
  key: SigningKey,
  claims: { sub: string; role: string; aud?: string },
  iss = 'https://idp.test',
) {
  let jwt = new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setSubject(claims.sub)
    .setIssuer(iss)
    .setExpirationTime('5m');
  if (claims.aud) jwt = jwt.setAudience(claims.aud);
  return jwt.sign(key.privateKey);
}

/** The URL of a key set whose server has gone, as when the identity provider is down. */
export async function unreachableKeySet(): Promise<string> {
  const { url, server } = await serveKeySet([]);
  server.close();
  await once(server, 'close');
  return url;
}
