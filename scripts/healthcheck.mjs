// The image's HEALTHCHECK, whatever role the container runs: every role port that accepts a connection must
// answer GET /health/ready with 200, and at least one must (a role listens only on its own port).
import { request } from 'node:http';

// As in src/config.ts: a blank value is unset (its default port), blanks around a number are not part of it.
const port = (name, fallback) => process.env[name]?.trim() || fallback;
const ports = [port('API_PORT', '5000'), port('NOTIFICATIONS_PORT', '5001'), port('WORKER_PORT', '5002')];

/** The status of /health/ready on a port, or undefined when nothing listens there. */
function readiness(port) {
  return new Promise((resolve) => {
    const call = request({ host: '127.0.0.1', port, path: '/health/ready', timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    call.on('timeout', () => call.destroy(new Error('timed out')));
    call.on('error', (error) => resolve(error.code === 'ECONNREFUSED' ? undefined : 0));
    call.end();
  });
}

const statuses = (await Promise.all(ports.map(readiness))).filter((status) => status !== undefined);
process.exit(statuses.length > 0 && statuses.every((status) => status === 200) ? 0 : 1);
