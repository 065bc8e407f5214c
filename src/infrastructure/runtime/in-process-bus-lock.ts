import type { Logger } from '../logging/logger.ts';
import type { Database, Leadership } from '../persistence/database.ts';

// Clear of the other advisory lock keys on a database: migrations 4_224_711, the outbox relay 4_224_712, the
// worker's member slots from 4_224_800.
export const IN_PROCESS_BUS_LOCK_KEY = 4_224_713;
const RETAKE_EVERY_MS = 2_000;

export interface InProcessBusLock {
  release(): Promise<void>;
}

/**
 * The in-process bus connects the roles of one process only. A second process with it on the same database would
 * take writes whose events only the relay's leader publishes, into its own memory: the second process's SSE clients
 * would miss them, and what the leader's worker had not handled would be lost with it. So a process with the
 * in-process bus holds this database-wide lock for its lifetime, and one that finds it held refuses to start. On
 * PGlite the pid file keeps a second process out already; the lock is then this process's own.
 */
export async function holdInProcessBusLock(database: Database, logger: Logger): Promise<InProcessBusLock> {
  const first = await database.tryLead(IN_PROCESS_BUS_LOCK_KEY);
  if (!first)
    throw new Error(
      'Another process already runs on this database with AMQP_URL=memory:. The in-process bus only connects the ' +
        'roles of one process, so a second one would lose events and notifications: run one process per database ' +
        'with AMQP_URL=memory: (npm start), or set AMQP_URL=amqp://user:pass@host:5672/vhost (RabbitMQ) to run several.',
    );
  let held: Leadership | undefined = first;
  let released = false;
  let retakeTimer: NodeJS.Timeout | undefined;

  // A lost connection frees the lock: taken again as soon as the database answers, so it stays held while we run.
  const keep = (leadership: Leadership) =>
    void leadership.lost.then(() => {
      if (released || held !== leadership) return;
      held = undefined;
      logger.warn('in-process bus: its database lock was lost with its connection; taking it again');
      retake(false);
    });
  /** `reported`: another process holding the lock was logged already. */
  const retake = (reported: boolean) => {
    if (released) return; // released while the database did not answer: nothing to keep any more
    retakeTimer = setTimeout(() => void tryAgain(reported), RETAKE_EVERY_MS).unref();
  };
  const tryAgain = async (reported: boolean) => {
    let leadership: Leadership | undefined;
    try {
      leadership = await database.tryLead(IN_PROCESS_BUS_LOCK_KEY);
    } catch {
      return retake(reported); // the database does not answer yet
    }
    if (released) return leadership?.release();
    if (leadership) {
      held = leadership;
      keep(leadership);
      logger.info('in-process bus: database lock taken again');
      return;
    }
    if (!reported)
      logger.error(
        'in-process bus: another process with AMQP_URL=memory: started on this database while the lock was lost; ' +
          'events and notifications will be lost: stop one of them',
      );
    retake(true);
  };
  keep(first);

  return {
    async release() {
      released = true;
      clearTimeout(retakeTimer);
      await held?.release();
      held = undefined;
    },
  };
}
