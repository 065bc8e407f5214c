// A service run by runUntilSignal as a role's entry point runs it, scripted by the environment, for tests of how the
// process starts, stops and exits:
//   START: `ok` (the default), `fail` (rejects), or `until-stopped` (still starting when the stop comes)
//   STOP_MS: how long its stop takes (default 0; `never`: it never ends)
//   CRASH_AFTER_START: set, an uncaught error follows the start
//   SHUTDOWN_TIMEOUT_MS: the limit given to runUntilSignal (default 10000)
// It logs JSON lines (pino) to stdout: `service started`, `service stop began`, `service stopped`.
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { runUntilSignal } from '../../src/infrastructure/runtime/run-until-signal.ts';

const { START = 'ok', STOP_MS = '0', CRASH_AFTER_START, SHUTDOWN_TIMEOUT_MS = '10000' } = process.env;
const logger = createLogger({ level: 'info', pretty: false, name: 'signal-service' });
let cutShort: ((error: Error) => void) | undefined;

await runUntilSignal(
  {
    async start() {
      // Something to keep the process alive, as a listening server would.
      setInterval(() => undefined, 60_000);
      if (START === 'fail') throw new Error('EADDRINUSE: address already in use 127.0.0.1:5000');
      if (START === 'until-stopped') {
        logger.info('service starting');
        await new Promise<void>((_, reject) => (cutShort = reject));
      }
      logger.info('service started');
      if (CRASH_AFTER_START) setImmediate(() => Promise.reject(new Error('a bug after the start')));
    },
    async stop() {
      logger.info('service stop began');
      cutShort?.(new Error('stopped while it started'));
      if (STOP_MS === 'never') await new Promise(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, Number(STOP_MS)));
      logger.info('service stopped');
    },
  },
  logger,
  Number(SHUTDOWN_TIMEOUT_MS),
);
