// Composition root of the worker: consumes student events, serves health and metrics, returns start()/stop().
import { Registry } from 'prom-client';
import type { MessageBus, Subscription } from '../../application/ports/message-bus.ts';
import { processStudentEvents } from '../../application/students/process-student-event.ts';
import { loadConfigOrExit, type Config } from '../../config.ts';
import { messagingTopology, studentsWorkerQueues } from '../../contracts/messaging.ts';
import { brokerCheck, databaseCheck, type HealthCheck } from '../../infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../infrastructure/http/health.routes.ts';
import { createHttpServer, listenOn } from '../../infrastructure/http/http-server.ts';
import { createLogger, type Logger } from '../../infrastructure/logging/logger.ts';
import { startTracing } from '../../infrastructure/observability/tracing.ts';
import type { StudentCache } from '../../application/ports/student-cache.ts';
import type { Database } from '../../infrastructure/persistence/database.ts';
import { pruneInbox, schedulePruning } from '../../infrastructure/persistence/retention.ts';
import { SqlUnitOfWork } from '../../infrastructure/persistence/sql-unit-of-work.ts';
import {
  openProcessResources,
  requireBrokerForLoneRole,
  type ProcessResources,
  type WithBus,
} from '../../infrastructure/runtime/process-resources.ts';
import type { Periodic } from '../../infrastructure/runtime/periodic.ts';
import { declareOnceBrokerAnswers } from '../../infrastructure/runtime/broker-at-start.ts';
import { isEntryPoint, runUntilSignal } from '../../infrastructure/runtime/run-until-signal.ts';
import { createStartup } from '../../infrastructure/runtime/startup.ts';
import { systemClock } from '../../infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../infrastructure/system/uuid-v7-generator.ts';
import { microBatch } from './micro-batch.ts';
import { watchOtherLayoutQueues } from './other-layout-queues.ts';
import { assignPartitions, type PartitionAssignment } from './partition-assignment.ts';
import { consumeStudentEvents, type AfterProcessed } from './student-events.consumer.ts';
import { createWorkerMetrics } from './worker-metrics.ts';

export interface Worker {
  /**
   * Listens on HOST:WORKER_PORT, declares the topology once the broker answers, starts consuming; resolves with the
   * health URL.
   */
  start(): Promise<string>;
  /** Stops consuming (the in-flight messages finish and settle), then closes the HTTP server. */
  stop(): Promise<WorkerStopped>;
}

/** What a stop handed on, for the shutdown's log line. */
export interface WorkerStopped {
  /** Messages in flight that went back to the queue: another worker, or the next start, handles them. */
  readonly messagesReturned: number;
}

export interface WorkerDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** Shared with the other roles when they run in one process; migrated by whoever opened it. */
  readonly database: Database;
  /** Owned by the caller, who closes it after stop(). */
  readonly bus: MessageBus;
  /** Where the worker's metrics go (served at /metrics); a registry of its own by default. */
  readonly registry?: Registry;
  /**
   * Called after each committed change, e.g. to refresh the cache; its failures are logged only. Not for an event the
   * inbox already holds: that one changed nothing, and the relay caches its students before it publishes their
   * notifications (see AfterProcessed).
   */
  readonly afterProcessed?: AfterProcessed;
  /** Checks of what the caller gave it besides (the cache it refreshes), on its /health too. */
  readonly healthChecks?: readonly HealthCheck[];
}

type ConsumerState = 'stopped' | 'starting' | 'consuming' | 'stopping';

/** How often the worker forgets the messages it handled longer ago than the inbox retention. */
const INBOX_PRUNE_EVERY_MS = 3_600_000;

export function createWorker({
  config,
  logger,
  database,
  bus,
  registry = new Registry(),
  afterProcessed,
  healthChecks = [],
}: WorkerDeps): Worker {
  const log = logger.child({ service: 'worker' });
  const app = createHttpServer(log, {
    service: 'worker',
    registry,
    maxHeaderBytes: config.maxHeaderBytes,
    trustedProxies: config.trustedProxies,
    drainTimeoutMs: config.httpDrainTimeoutMs,
  });
  // Events that arrive together share one transaction (with prefetch 1 there is only ever one).
  const processEvent = microBatch(
    processStudentEvents({
      unitOfWork: new SqlUnitOfWork(database, uuidV7Generator),
      ids: uuidV7Generator,
      clock: systemClock,
    }),
    config.worker.prefetch,
  );
  const metrics = createWorkerMetrics(registry);
  let state: ConsumerState = 'stopped';
  const queues = studentsWorkerQueues(config.worker.partitions);
  const startup = createStartup();
  const consume = (queue: string) =>
    consumeStudentEvents({
      bus,
      queue,
      process: processEvent,
      prefetch: config.worker.prefetch,
      retry: config.resilience,
      metrics,
      logger: log,
      afterProcessed,
      // A stop ends a subscribing that waits for the broker, at start or in a later rebalance.
      signal: startup.signal,
    });
  // One queue: every worker subscribes and the queue's single active consumer stands the others by. Partitions: the
  // workers share them out, each consuming its own.
  let subscription: Subscription | undefined;
  const assignment: PartitionAssignment | undefined =
    queues.length === 1
      ? undefined
      : assignPartitions({
          database,
          partitions: queues.length,
          subscribe: (partition) => consume(queues[partition]!),
          logger: log,
          onChange: ({ owned }) => metrics.partitionsOwned(owned.length),
        });
  // Every worker prunes (deleting the same old rows twice is harmless).
  let pruning: Periodic | undefined;
  const otherLayout = watchOtherLayoutQueues(bus, config.worker.partitions, log);

  registerHealthRoutes(app, [
    databaseCheck(database, {
      status: 'Unhealthy',
      whatIsOff: 'events wait in the queue until it takes writes again',
    }),
    brokerCheck(bus),
    {
      name: 'consumer',
      check: async () => {
        const partitions = assignment?.status();
        // Started, and then the broker went: a subscription waits for it, and nothing arrives meanwhile. Or the start
        // waits for it.
        const waiting =
          state === 'starting'
            ? !bus.status().connected
            : partitions
              ? partitions.waiting.length > 0
              : subscription?.waitingForBroker === true;
        const reported =
          (state === 'consuming' || state === 'starting') && waiting ? 'waiting for the broker' : state;
        return {
          status: reported === 'consuming' ? 'Healthy' : 'Unhealthy',
          data: {
            state: reported,
            prefetch: config.worker.prefetch,
            // Owning none is healthy: the other workers hold every partition, and this one takes over if one goes.
            ...(partitions ? { partitions: { count: queues.length, ...partitions } } : {}),
          },
        };
      },
    },
    otherLayout.healthCheck,
    ...healthChecks,
  ]);

  return {
    start() {
      return startup.run(async (step) => {
        state = 'starting';
        // Listening first: while the broker is awaited, /health says why this worker does not consume yet.
        const health = `${await step(listenOn(app, config.host, config.ports.worker, 'WORKER_PORT'))}/health`;
        await step(
          declareOnceBrokerAnswers(bus, messagingTopology(config.worker.partitions), {
            signal: startup.signal,
            onUnreachable: () =>
              log.warn(
                { health, reason: bus.status().detail },
                'broker unreachable: the worker consumes once it answers',
              ),
          }),
        );
        await step(otherLayout.start());
        if (assignment) await step(assignment.start());
        else {
          // Kept before the check, for stop() to close it.
          subscription = await consume(queues[0]!);
          metrics.partitionsOwned(1);
          startup.signal.throwIfAborted();
        }
        state = 'consuming';
        pruning = schedulePruning(
          (stopping) =>
            pruneInbox(
              database,
              new Date(Date.now() - config.worker.inboxRetentionSeconds * 1_000),
              stopping,
            ),
          { everyMs: INBOX_PRUNE_EVERY_MS, logger: log, what: 'inbox' },
        );
        return health;
      });
    },
    async stop() {
      state = 'stopping';
      // A start under way ends first; what it had set up is stopped below with the rest.
      await startup.stop('the worker stopped while it started');
      const returned = (await subscription?.close()) ?? 0;
      subscription = undefined;
      const returnedByPartitions = (await assignment?.stop()) ?? 0;
      metrics.partitionsOwned(0);
      await pruning?.stop();
      await otherLayout.stop();
      await app.close();
      state = 'stopped';
      return { messagesReturned: returned + returnedByPartitions };
    },
  };
}

/** The worker's change reaches readers at once: after commit the cached copy is replaced, or dropped. */
function refreshCache(students: StudentCache): AfterProcessed {
  return ({ studentId, student }) => (student ? students.set(student) : students.evict(studentId));
}

/** A worker over a process's shared adapters, refreshing their cache after each change. */
export function createWorkerOver(
  { database, bus, cache, registry }: Pick<WithBus, 'database' | 'bus' | 'cache' | 'registry'>,
  { config, logger }: Pick<WorkerDeps, 'config' | 'logger'>,
): Worker {
  return createWorker({
    config,
    logger,
    database,
    bus,
    registry,
    afterProcessed: refreshCache(cache.students),
    healthChecks: [
      cache.healthCheck(
        'the students this worker changes are not refreshed in the cache; their cached copies are dropped once it is ' +
          'back',
      ),
    ],
  });
}

/** Runs the worker alone: `npm run start:worker`. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  requireBrokerForLoneRole(config.amqpUrl, 'worker');
  const logger = createLogger({ ...config.log, name: 'worker' });
  const tracing = startTracing(config.tracing, 'worker', logger);
  let resources: ProcessResources | undefined;
  let worker: Worker | undefined;
  await runUntilSignal(
    {
      async start() {
        // The relay publishes the notifications this worker writes (if this process leads).
        const opened = await openProcessResources(config, logger, {
          connectionName: 'worker',
          bus: true,
          reportsUnreachableBroker: false,
        });
        resources = opened;
        worker = createWorkerOver(opened, { config, logger });
        logger.info(
          {
            health: await worker.start(),
            prefetch: config.worker.prefetch,
            partitions: config.worker.partitions,
          },
          'worker consuming',
        );
      },
      async stop() {
        const stopped = { worker: await worker?.stop(), ...(await resources?.close()) };
        await tracing.shutdown();
        return stopped;
      },
    },
    logger,
    config.shutdownTimeoutMs,
  );
}

if (isEntryPoint(import.meta.url)) await main();
