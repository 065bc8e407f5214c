import type { Registry } from 'prom-client';
import type { MessageBus } from '../../application/ports/message-bus.ts';
import { cacheBeforeNotifying } from '../../application/students/cache-before-notifying.ts';
import { WORKER_INBOX } from '../../application/students/process-student-event.ts';
import { Exchanges, messagingTopology, type Topology } from '../../contracts/messaging.ts';
import { openCache, type Cache } from '../caching/open-cache.ts';
import type { Logger } from '../logging/logger.ts';
import { openMessageBus } from '../messaging/open-message-bus.ts';
import { createProcessRegistry } from '../observability/metrics.ts';
import { recordDeadLetters } from '../outbox/dead-letter-recorder.ts';
import { resendUnhandled, startOutboxRelay, type OutboxRelay } from '../outbox/outbox-relay.ts';
import { registerRelayMetrics } from '../outbox/relay-metrics.ts';
import { openDatabase, type Database } from '../persistence/database.ts';
import { deploymentIdOf } from '../persistence/deployment-id.ts';
import { SqlStudentQueries } from '../persistence/sql-student-queries.ts';
import type { ResilienceOptions } from '../resilience/resilience-policy.ts';
import { BROKER_CONNECT_WAIT_MS, brokerAnswers } from './broker-at-start.ts';
import { holdInProcessBusLock } from './in-process-bus-lock.ts';

export interface RuntimeSettings {
  readonly databaseUrl: string;
  readonly databasePoolSize: number;
  readonly amqpUrl: string;
  readonly redisUrl: string;
  readonly cache: { readonly ttlSeconds: number; readonly keyPrefix: string };
  readonly resilience: ResilienceOptions;
  /** The worker's queues are part of the topology every role declares. */
  readonly worker: { readonly partitions: number };
  readonly outbox: { readonly sentRetentionSeconds: number };
}

/** The adapters one process shares between its roles, opened in order and closed in reverse. */
export interface ProcessResources {
  readonly database: Database;
  readonly cache: Cache;
  /** Metrics of every role in this process. */
  readonly registry: Registry;
  readonly bus: MessageBus | undefined;
  /** Runs wherever a bus does; only the one holding the database's advisory lock publishes. */
  readonly relay: OutboxRelay | undefined;
  close(): Promise<ResourcesClosed>;
}

/** What closing left for the next start, for the shutdown's log line. */
export interface ResourcesClosed {
  /**
   * Outbox rows not published yet (by any relay of this database; see OutboxRelay.backlog): absent without a relay,
   * or when the database did not give the count in time (OutboxRelay.backlogIfAnswered).
   */
  readonly outboxUnsent?: number;
}

export type WithBus = ProcessResources & { readonly bus: MessageBus; readonly relay: OutboxRelay };

interface ResourceOptions {
  readonly connectionName: string;
  readonly bus: boolean;
  /**
   * Whether a broker that does not answer at start is logged here, as the outbox's concern (the writes the process
   * takes wait in it). A lone worker says so itself, as the consumer's concern: once is enough.
   */
  readonly reportsUnreachableBroker?: boolean;
}

/**
 * Opens (and migrates) the database, the cache and, with `bus`, the message bus with its topology and an outbox
 * relay. A broker that does not answer gets the topology from the relay, before its first publish: the process
 * starts while the broker is down, and its writes wait in the outbox. If a step fails, what was opened before it is
 * closed again.
 */
export async function openProcessResources(
  settings: RuntimeSettings,
  logger: Logger,
  options: ResourceOptions & { bus: true },
): Promise<WithBus>;
export async function openProcessResources(
  settings: RuntimeSettings,
  logger: Logger,
  options: ResourceOptions,
): Promise<ProcessResources>;
export async function openProcessResources(
  settings: RuntimeSettings,
  logger: Logger,
  options: ResourceOptions,
): Promise<ProcessResources> {
  const closers: (() => Promise<void>)[] = [];
  let outboxUnsent: number | undefined;
  const close = async (): Promise<ResourcesClosed> => {
    for (const closer of closers.splice(0).reverse()) await closer();
    return outboxUnsent === undefined ? {} : { outboxUnsent };
  };
  try {
    const database = await openDatabase(settings.databaseUrl, logger, {
      poolSize: settings.databasePoolSize,
    });
    closers.push(() => database.close());
    await database.migrate();
    // Claims the cache's key prefix and the vhost: another deployment pointed at either is refused. Not for a
    // database in memory: every start of it would be a new deployment, refused what the last start claimed.
    const deployment =
      settings.databaseUrl === 'pglite://memory' ? undefined : await deploymentIdOf(database);
    const registry = createProcessRegistry();
    const cache = await openCache(
      { redisUrl: settings.redisUrl, ...settings.cache, registry, ...(deployment ? { deployment } : {}) },
      logger,
    );
    closers.push(() => cache.close());
    let bus: MessageBus | undefined;
    let relay: OutboxRelay | undefined;
    if (options.bus) {
      const opened = openMessageBus(settings.amqpUrl, logger, options.connectionName, deployment);
      bus = opened;
      closers.push(() => opened.close());
      const topology = messagingTopology(settings.worker.partitions);
      /** Left to the relay, before its first publish: the broker did not answer at start. */
      let undeclared: Topology | undefined;
      if (settings.amqpUrl === 'memory:') {
        // One such process per database: another would take writes whose events only one of them sees.
        const busLock = await holdInProcessBusLock(database, logger);
        closers.push(() => busLock.release());
        await opened.declareTopology(topology);
        // Dead letters outlive the bus's dead-letter queues, as RabbitMQ's durable ones do.
        const recorder = await recordDeadLetters({ database, bus: opened, topology, logger });
        closers.push(() => recorder.stop());
        // The last process's queues died with it: what its worker had neither handled nor dead-lettered is sent again.
        const resent = await resendUnhandled(database, Exchanges.students, WORKER_INBOX);
        if (resent > 0)
          logger.info(
            { resent },
            'in-process bus: events the worker had not handled before the restart are sent again',
          );
      } else if (await brokerAnswers(opened, BROKER_CONNECT_WAIT_MS)) {
        // A broker that answers takes the topology now: one it refuses (an exchange type the broker lacks, a queue
        // declared otherwise) stops the start, as any setting that cannot work does.
        await opened.declareTopology(topology);
      } else {
        // The reason tells a broker that is down from one that refuses this AMQP_URL (ACCESS_REFUSED, no such vhost).
        if (options.reportsUnreachableBroker !== false)
          logger.warn(
            { reason: opened.status().detail },
            'broker unreachable: starting anyway; writes wait in the outbox until it is back',
          );
        undeclared = topology;
      }
      const started = startOutboxRelay({
        database,
        bus: opened,
        ...(undeclared ? { topology: undeclared } : {}),
        resilience: settings.resilience,
        options: { retentionMs: settings.outbox.sentRetentionSeconds * 1_000 },
        logger,
        beforePublish: cacheBeforeNotifying(new SqlStudentQueries(database.sql), cache.students),
      });
      relay = started;
      closers.push(async () => {
        await started.stop();
        // Counted while the database is still open (it closes after the relay).
        outboxUnsent = await started.backlogIfAnswered();
      });
      registerRelayMetrics(registry, started);
    }
    return { database, cache, registry, bus, relay, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

/**
 * A role that consumes from the broker cannot run alone on the in-process bus: nothing else would ever
 * publish to it. Says so and exits with status 2 before anything starts.
 */
export function requireBrokerForLoneRole(amqpUrl: string, role: string): void {
  if (amqpUrl !== 'memory:') return;
  process.stderr.write(
    `AMQP_URL=memory: cannot work for the ${role} alone: the in-process bus only connects roles that run in ` +
      `one process (npm start). Set AMQP_URL=amqp://user:pass@host:5672/vhost to run the ${role} on its own.\n`,
  );
  process.exit(2);
}
