// Composition root of the notifications service: queue → replay log → SSE streams and the SignalR hub.
import { randomUUID } from 'node:crypto';
import { registerFastifyHub } from '@tbe/signalr';
import { Registry } from 'prom-client';
import type { MessageBus } from '../../application/ports/message-bus.ts';
import type { ReplayLog } from '../../application/ports/replay-log.ts';
import { authSummary, loadConfigOrExit, type Config } from '../../config.ts';
import { messagingTopology } from '../../contracts/messaging.ts';
import { NotificationRoutes } from '../../contracts/notifications.ts';
import { createJwtVerifier } from '../../infrastructure/auth/jwt-verifier.ts';
import { brokerCheck, type HealthCheck } from '../../infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../infrastructure/http/health.routes.ts';
import { createHttpServer, listenOn } from '../../infrastructure/http/http-server.ts';
import { createLogger, type Logger } from '../../infrastructure/logging/logger.ts';
import { openMessageBus } from '../../infrastructure/messaging/open-message-bus.ts';
import { createProcessRegistry } from '../../infrastructure/observability/metrics.ts';
import { startTracing } from '../../infrastructure/observability/tracing.ts';
import { openReplayLog } from '../../infrastructure/replay-log/open-replay-log.ts';
import { declareOnceBrokerAnswers } from '../../infrastructure/runtime/broker-at-start.ts';
import { requireBrokerForLoneRole } from '../../infrastructure/runtime/process-resources.ts';
import { createStartup } from '../../infrastructure/runtime/startup.ts';
import { isEntryPoint, runUntilSignal } from '../../infrastructure/runtime/run-until-signal.ts';
import { LogFanOut } from './fan-out.ts';
import { ConnectionLimits } from './connection-limits.ts';
import { createNotificationsHub, resetHub, sendToHub } from './notifications-hub.ts';
import { createNotificationsObservability } from './notifications-observability.ts';
import { consumeNotifications, type NotificationsConsumer } from './notifications.consumer.ts';
import { registerPageRoutes } from './pages.routes.ts';
import { registerSseRoutes } from './sse.routes.ts';

export interface Notifications {
  /**
   * Starts tailing the log, listens on HOST:NOTIFICATIONS_PORT, declares the topology once the broker answers and
   * starts consuming; resolves with the base URL.
   */
  start(): Promise<string>;
  /** Stops consuming, ends SSE streams and hub connections (clients reconnect elsewhere), closes the log if it owns it. */
  stop(): Promise<NotificationsStopped>;
}

/** What a stop cut off or handed on, for the shutdown's log line. */
export interface NotificationsStopped {
  /** SSE streams ended (with a retry hint: their clients reconnect, to another instance or after the restart). */
  readonly sseStreamsEnded: number;
  /** SignalR hub connections closed (with allowReconnect). */
  readonly hubConnectionsClosed: number;
  /** Messages in flight that went back to the queue: another instance, or the next start, appends them. */
  readonly messagesReturned: number;
}

export interface NotificationsDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** Owned by the caller, who closes it after stop(). */
  readonly bus: MessageBus;
  /** Shared with other roles in one process; when absent it is opened from config (and closed by stop()). */
  readonly replayLog?: ReplayLog;
  /** Messages consumed at once (different students run concurrently; one student's stay in order). */
  readonly prefetch?: number;
  /** Unsent bytes an SSE client may hold before it is closed as too slow. */
  readonly maxBufferedBytes?: number;
  /** The process's metrics, served at /metrics; a registry of its own by default. */
  readonly registry?: Registry;
  /**
   * Where the pages send their writes (the webapi, on this host): API_PORT by default; the port the webapi bound
   * when one process runs both, which differs when API_PORT is 0.
   */
  readonly apiPort?: number;
}

export async function createNotifications({
  config,
  logger,
  bus,
  replayLog,
  prefetch = 50,
  maxBufferedBytes = 1024 * 1024,
  registry = new Registry(),
  apiPort = config.ports.api,
}: NotificationsDeps): Promise<Notifications> {
  const log = logger.child({ service: 'notifications' });
  const replay =
    replayLog ??
    (await openReplayLog(
      {
        redisUrl: config.redisUrl,
        keyPrefix: config.notifications.replayLogKeyPrefix,
        maxEntries: config.notifications.replayLogMaxEntries,
        dedupTtlSeconds: 86_400,
      },
      log,
    ));
  const app = createHttpServer(log, {
    service: 'notifications',
    registry,
    maxHeaderBytes: config.maxHeaderBytes,
    trustedProxies: config.trustedProxies,
    drainTimeoutMs: config.httpDrainTimeoutMs,
    // DELETE: a long-polling SignalR client ends its connection with one.
    cors: { origins: config.corsOrigins, methods: ['DELETE'] },
    // The test pages call the webapi on another port, or wherever their `?api=` points.
    connectSources: ['http:', 'https:'],
    // The hub's connection token: whoever holds it may poll, feed or end that connection.
    secretQueryParameters: ['id'],
  });
  const verifier = createJwtVerifier(config.auth);
  const limits = new ConnectionLimits(
    config.notifications.maxConnections,
    config.notifications.maxConnectionsPerUser,
    // Observability exists once the hub it reads does (below), before any connection can be refused.
    (refusal) => observability.metrics.refused(refusal),
  );
  const heartbeatMs = config.notifications.heartbeatSeconds * 1_000;
  const hub = await createNotificationsHub(verifier, limits, log, app.observeUpgrade, heartbeatMs);
  // `sse` is read at scrape and push time, once the routes below exist.
  const observability = createNotificationsObservability(registry, { sse: () => sse.count, hub });
  const fanOut = new LogFanOut(replay, { observe: observability.observePush, logger: log });
  const sse = await registerSseRoutes(app, {
    log: replay,
    fanOut,
    heartbeatMs,
    verifier,
    limits,
    maxBufferedBytes,
    logger: log,
  });
  await registerFastifyHub(app, NotificationRoutes.hub, hub);
  registerPageRoutes(app, { apiPort });
  const instanceId = randomUUID();
  let consumer: NotificationsConsumer | undefined;
  const startup = createStartup();

  registerHealthRoutes(app, [
    brokerCheck(bus),
    {
      name: 'consumer',
      // Standing by is healthy while another instance, holding the writer lease, consumes.
      check: async () => {
        // Before its consumer exists, the start waits for the broker (as the worker's says), or was stopped first.
        const state =
          consumer?.state ??
          (startup.signal.aborted
            ? 'stopped'
            : bus.status().connected
              ? 'starting'
              : 'waiting for the broker');
        return {
          status: state === 'consuming' || state === 'standby' ? 'Healthy' : 'Unhealthy',
          data: { state, instanceId, prefetch },
        };
      },
    },
    replayLogCheck(replay),
    {
      name: 'clients',
      check: async () => ({ status: 'Healthy', data: { sse: sse.count, signalr: hub.stats() } }),
    },
  ]);

  return {
    start() {
      return startup.run(async (step) => {
        fanOut.subscribe('signalr', {
          receive: (entry) => sendToHub(hub, entry, log),
          missed: (retention) => resetHub(hub, retention, log),
        });
        await step(fanOut.start());
        // Serving while the broker is awaited: clients get what the log holds, and /health says what is missing.
        const url = await step(listenOn(app, config.host, config.ports.notifications, 'NOTIFICATIONS_PORT'));
        await step(
          declareOnceBrokerAnswers(bus, messagingTopology(config.worker.partitions), {
            signal: startup.signal,
            onUnreachable: () =>
              log.warn(
                { url, reason: bus.status().detail },
                'broker unreachable: serving the replay log; consuming once the broker answers',
              ),
          }),
        );
        // Kept before the check, for stop() to end it.
        consumer = await consumeNotifications({
          bus,
          log: replay,
          instanceId,
          prefetch,
          logger: log,
          metrics: observability.metrics,
        });
        startup.signal.throwIfAborted();
        return url;
      });
    },
    async stop() {
      // A start under way ends first; what it had set up is stopped below with the rest.
      await startup.stop('the notifications service stopped while it started');
      const messagesReturned = (await consumer?.stop()) ?? 0;
      // Counted as the close below ends them: first (preClose) SSE streams end with a retry hint and hub connections
      // with allowReconnect.
      const sseStreamsEnded = sse.count;
      const hubConnectionsClosed = hub.stats().connections;
      await app.close();
      await hub.close();
      await fanOut.stop();
      if (!replayLog) await replay.close();
      return { sseStreamsEnded, hubConnectionsClosed, messagesReturned };
    },
  };
}

function replayLogCheck(replay: ReplayLog): HealthCheck {
  return {
    name: 'replay-log',
    async check() {
      const { adapter, connected, detail } = replay.status();
      // Said in the service's terms, as the webapi's cache check does; the cause goes in `error`.
      const unreachable = (error: string) => ({
        status: 'Unhealthy' as const,
        description:
          'replay log unreachable: notifications are neither appended nor resumed until it answers',
        data: { adapter, error },
      });
      // Down for a while, a command would only wait for the reconnects to fail: a probe gets its answer now.
      if (!connected && detail !== undefined) return unreachable(detail);
      try {
        return { status: 'Healthy', data: { adapter, ...(await replay.retention()) } };
      } catch (error) {
        return unreachable(error instanceof Error ? error.message : String(error));
      }
    },
  };
}

/** Runs the notifications service alone: `npm run start:notifications`. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  requireBrokerForLoneRole(config.amqpUrl, 'notifications service');
  const logger = createLogger({ ...config.log, name: 'notifications' });
  const tracing = startTracing(config.tracing, 'notifications', logger);
  if (config.redisUrl === 'memory:')
    logger.warn(
      "REDIS_URL=memory: the replay log is this instance's own; run one instance, or set REDIS_URL",
    );
  let bus: MessageBus | undefined;
  let notifications: Notifications | undefined;
  await runUntilSignal(
    {
      async start() {
        bus = openMessageBus(config.amqpUrl, logger, 'notifications');
        notifications = await createNotifications({
          config,
          logger,
          bus,
          registry: createProcessRegistry(),
        });
        logger.info(
          { url: await notifications.start(), auth: authSummary(config.auth) },
          'notifications listening',
        );
      },
      async stop() {
        const stopped = { notifications: await notifications?.stop() };
        await bus?.close();
        await tracing.shutdown();
        return stopped;
      },
    },
    logger,
    config.shutdownTimeoutMs,
  );
}

if (isEntryPoint(import.meta.url)) await main();
