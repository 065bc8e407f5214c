// `npm run token -- --role writer [--sub alice] [--expires 8h]`: prints a development token signed with
// AUTH_JWT_SECRET (from the environment or .env), and nothing else, so `TOKEN=$(npm run -s token)` works.
import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../src/config.ts';
import { mintDevelopmentToken } from '../src/infrastructure/auth/development-token.ts';
import { ROLES, type Role } from '../src/infrastructure/auth/jwt-verifier.ts';

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

const USAGE = 'usage: npm run token -- [--role reader|writer] [--sub NAME] [--expires 8h]';

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      role: { type: 'string', default: 'reader' },
      sub: { type: 'string', default: 'developer' },
      expires: { type: 'string', default: '8h' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`);
}
if (options.help) {
  process.stdout.write(`${USAGE}\nPrints a development token signed with AUTH_JWT_SECRET.\n`);
  process.exit(0);
}
const config = loadConfigOrExit();
const secret = config.auth.jwtSecret;
if (!secret) fail('AUTH_JWT_SECRET is not set: there is no key to sign with (auth is off without it).');
if (!ROLES.includes(options.role as Role))
  fail(`--role must be one of ${ROLES.join(', ')} (got "${options.role}")`);

try {
  const token = await mintDevelopmentToken(secret, {
    subject: options.sub,
    role: options.role,
    expires: options.expires,
    ...(config.auth.issuer ? { issuer: config.auth.issuer } : {}),
    ...(config.auth.audience ? { audience: config.auth.audience } : {}),
  });
  process.stdout.write(`${token}\n`);
} catch (error) {
  fail(`--expires: ${(error as Error).message} (e.g. 8h, 30m, 7d)`);
}
