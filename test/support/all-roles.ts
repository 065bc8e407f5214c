// Every role, embedded, on an in-memory PGlite and free ports: in this process, or as `npm start`'s entry point in
// a child process.
import { spawn } from 'node:child_process';
import { createAllRoles } from '../../src/all-roles.ts';
import { parseConfig } from '../../src/config.ts';
import { silentLogger } from './logger.ts';

const EMBEDDED = {
  DATABASE_URL: 'pglite://memory',
  API_PORT: '0',
  NOTIFICATIONS_PORT: '0',
  WORKER_PORT: '0',
};

/** All roles in this process, silent; `env` adds settings (auth, say). */
export function embeddedRoles(env: Record<string, string> = {}): ReturnType<typeof createAllRoles> {
  return createAllRoles({
    config: parseConfig({ ...EMBEDDED, LOG_LEVEL: 'silent', ...env }),
    logger: silentLogger,
  });
}

export function startAllRoles(env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      ...EMBEDDED,
      LOG_FORMAT: 'json',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** The URLs of the webapi and of the notifications service, from the "all roles running" line. */
  const ready = new Promise<{ api: string; pages: string }>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk;
      const api = /"api":"(http:[^"]+)"/.exec(output)?.[1];
      const pages = /"pages":"(http:[^"]+)"/.exec(output)?.[1];
      if (api && pages) resolve({ api, pages });
    });
    void exited.then((code) =>
      reject(new Error(`src/main.ts exited with ${code} before it was ready:\n${output}`)),
    );
  });
  return { child, exited, ready, output: () => output };
}
