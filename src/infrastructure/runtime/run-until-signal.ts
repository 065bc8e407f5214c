import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import closeWithGrace from 'close-with-grace';
import { flushLogger, type Logger } from '../logging/logger.ts';

/**
 * What a stop cut off or handed on (streams ended, requests in flight, messages returned, rows left unsent), by role:
 * the `stopped` line says it. A count that could not be had in time is left out.
 */
export type StopSummary = Readonly<Record<string, unknown>>;

export interface Service {
  start(): Promise<void>;
  /** Resolves with what the stop cut off or handed on; with nothing, when it has nothing to say. */
  stop(): Promise<StopSummary | void>;
}

/**
 * Starts a service and stops it on SIGINT/SIGTERM (or a fatal error): in-flight work finishes, connections
 * close, and the process exits. A stop that takes longer than `timeoutMs` is cut short with exit code 1.
 */
export async function runUntilSignal(service: Service, logger: Logger, timeoutMs: number): Promise<void> {
  let stopping = false;
  closeWithGrace({ delay: timeoutMs, logger }, async ({ signal, err }) => {
    stopping = true;
    const began = performance.now();
    if (err) logger.fatal({ err }, 'stopping after a fatal error');
    else logger.info({ signal }, 'stopping');
    const summary = await service.stop();
    logger.info({ ...summary, durationMs: Math.round(performance.now() - began) }, 'stopped');
    await flushLogger(logger);
  });
  try {
    await service.start();
  } catch (error) {
    // A start cut short by a stop (one waiting for the broker, say) is no failure: the stop ends the process.
    if (stopping) return;
    logger.fatal({ err: error }, 'could not start');
    await service.stop().catch(() => undefined);
    await flushLogger(logger);
    process.exit(1);
  }
}

/** True when the module at `moduleUrl` is the script node was started with (not imported by another). */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  return script !== undefined && moduleUrl === pathToFileURL(realpathSync(script)).href;
}
