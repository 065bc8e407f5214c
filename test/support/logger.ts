import { Writable } from 'node:stream';
import pino from 'pino';
import { logSerializers, traceIds, type Logger } from '../../src/infrastructure/logging/logger.ts';

export const silentLogger = pino({ level: 'silent' });

/**
 * A logger at level info that keeps every line it writes, for tests of what reaches the logs, with the roles' own
 * serializers. `traced`: with the roles' own mixin (createLogger's), which gives lines their `trace_id` and `span_id`.
 */
export function recordingLogger({ traced = false } = {}): { logger: Logger; logged: () => string } {
  let logged = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged += chunk.toString();
      done();
    },
  });
  return {
    logger: pino(
      { level: 'info', serializers: logSerializers, ...(traced ? { mixin: traceIds } : {}) },
      sink,
    ),
    logged: () => logged,
  };
}
