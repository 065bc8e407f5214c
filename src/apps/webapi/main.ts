// Composition root of the webapi: builds the adapters, hands them to the use cases, returns start()/stop().
import { createStudent } from '../../application/students/create-student.ts';
import { deleteStudent } from '../../application/students/delete-student.ts';
import type { StudentQueries } from '../../application/ports/student-queries.ts';
import { getStudent } from '../../application/students/get-student.ts';
import { listStudents } from '../../application/students/list-students.ts';
import { updateStudent } from '../../application/students/update-student.ts';
import { addingToCache, evictingOnDelete, writingThrough } from '../../application/students/write-through.ts';
import { authSummary, loadConfigOrExit, type Config } from '../../config.ts';
import { openCache, type Cache } from '../../infrastructure/caching/open-cache.ts';
import { createJwtVerifier } from '../../infrastructure/auth/jwt-verifier.ts';
import { databaseCheck, type HealthCheck } from '../../infrastructure/health/health.ts';
import { requireToken } from '../../infrastructure/http/require-token.ts';
import { registerHealthRoutes } from '../../infrastructure/http/health.routes.ts';
import { createHttpServer, listenOn, type HttpServer } from '../../infrastructure/http/http-server.ts';
import { registerOpenApi } from '../../infrastructure/http/openapi.ts';
import { createLogger, type Logger } from '../../infrastructure/logging/logger.ts';
import { startTracing } from '../../infrastructure/observability/tracing.ts';
import type { Database } from '../../infrastructure/persistence/database.ts';
import { pruneIdempotencyKeys, schedulePruning } from '../../infrastructure/persistence/retention.ts';
import { SqlStudentQueries } from '../../infrastructure/persistence/sql-student-queries.ts';
import { isKeyUsed, SqlUnitOfWork } from '../../infrastructure/persistence/sql-unit-of-work.ts';
import {
  openProcessResources,
  type ProcessResources,
} from '../../infrastructure/runtime/process-resources.ts';
import type { Periodic } from '../../infrastructure/runtime/periodic.ts';
import { isEntryPoint, runUntilSignal } from '../../infrastructure/runtime/run-until-signal.ts';
import { fakerStudentGenerator } from '../../infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../infrastructure/system/uuid-v7-generator.ts';
import { Registry } from 'prom-client';
import conditionalGetPlugin from './plugins/conditional-get.plugin.ts';
import dedupPlugin from './plugins/dedup.plugin.ts';
import idempotencyPlugin from './plugins/idempotency.plugin.ts';
import { limitWrites, RATE_LIMIT_HEADERS } from './plugins/write-rate-limit.ts';
import { registerStudentRoutes } from './routes/students.routes.ts';

export interface WebApi {
  readonly app: HttpServer;
  /** Listens on HOST:API_PORT; resolves with the base URL (the real port when API_PORT is 0). */
  start(): Promise<string>;
  stop(): Promise<WebApiStopped>;
}

/** What a stop cut off, for the shutdown's log line. */
export interface WebApiStopped {
  /** Requests in flight when the server began to close. */
  readonly requestsInFlight: number;
  /** How many of those were answered; the rest were cut off at the drain deadline, or given up on by their clients. */
  readonly requestsAnswered: number;
}

/**
 * How often expired idempotency keys are deleted from the database (a claim takes an expired one over anyway): hourly,
 * or as often as keys expire with a shorter IDEMPOTENCY_TTL_SECONDS (else the table holds an hour of them), but not
 * more than once a minute.
 */
const IDEMPOTENCY_KEYS_PRUNE_EVERY_MS = { most: 3_600_000, least: 60_000 };

export interface WebApiDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** Shared with the other roles when they run in one process; migrated by whoever opened it. */
  readonly database: Database;
  /** Shared with the worker in one process; when absent the webapi opens (and closes) its own from config. */
  readonly cache?: Cache;
  /** The read side; defaults to the database's. */
  readonly queries?: StudentQueries;
  /** Checks of parts this process runs besides the API (e.g. the outbox relay's `rabbitmq` check). */
  readonly healthChecks?: readonly HealthCheck[];
  /** The process's metrics, served at /metrics; a registry of its own by default. */
  readonly registry?: Registry;
}

export async function createWebApi({
  config,
  logger,
  database,
  registry = new Registry(),
  ...deps
}: WebApiDeps): Promise<WebApi> {
  const log = logger.child({ service: 'webapi' });
  const app = createHttpServer(log, {
    service: 'webapi',
    registry,
    maxHeaderBytes: config.maxHeaderBytes,
    trustedProxies: config.trustedProxies,
    drainTimeoutMs: config.httpDrainTimeoutMs,
    // The notifications pages (another origin) create, update and delete students from the browser.
    cors: {
      origins: config.corsOrigins,
      methods: ['PUT', 'DELETE'],
      // What a page needs to act on an answer: its version, where it is, whether it was a replay, when to come
      // back, how many writes are left, and why a token was refused.
      exposedHeaders: [
        'ETag',
        'Location',
        'X-Deduplicated',
        'Idempotent-Replayed',
        'Retry-After',
        ...Object.keys(RATE_LIMIT_HEADERS),
        'WWW-Authenticate',
      ],
    },
  });
  const verifier = createJwtVerifier(config.auth);
  await registerOpenApi(
    app,
    {
      title: 'The Background Experience: Student API',
      version: '1.0.0',
      description: 'Student CRUD. Every write is stored with its domain events in one transaction (outbox).',
    },
    { bearerAuth: verifier !== undefined },
  );
  const cache =
    deps.cache ?? (await openCache({ redisUrl: config.redisUrl, ...config.cache, registry }, logger));
  // In the original's order: database, rabbitmq (the outbox relay's, among `deps.healthChecks`), redis.
  registerHealthRoutes(app, [
    databaseCheck(database, {
      status: 'Degraded',
      whatIsOff: 'reads are served; every write is answered 503 until it takes writes again',
    }),
    ...(deps.healthChecks ?? []),
    cache.healthCheck(
      'caching, deduplication and the write rate limit are off; reads use the database, and Idempotency-Key is ' +
        'kept by the database alone',
    ),
  ]);
  // Before the routes: they pick up their hooks from each route's config as it is added.
  await app.register(idempotencyPlugin, {
    store: cache.idempotency,
    isKeyUsed: (key) => isKeyUsed(database.sql, key),
    ...config.idempotency,
  });
  await app.register(dedupPlugin, { store: cache.responses, metrics: cache.metrics });
  // After deduplication, which stores the 200 that a conditional GET then turns into a 304.
  await app.register(conditionalGetPlugin);

  // A request behind a hot row is answered 503 in seconds, rather than hold its connection for the statement timeout.
  const unitOfWork = new SqlUnitOfWork(database, uuidV7Generator, {
    lockTimeoutMs: config.databaseLockTimeoutMs,
  });
  const queries = deps.queries ?? new SqlStudentQueries(database.sql);
  const writeDeps = {
    unitOfWork,
    ids: uuidV7Generator,
    clock: systemClock,
    generator: fakerStudentGenerator,
  };
  // The API's own scope: health, OpenAPI and the docs above stay public; a token (when auth is on) and the
  // write budget apply to the students routes only.
  await app.register(async (api) => {
    // The limit's hook runs on each route, after the token check's scope-wide one whatever the order here: a 401 or
    // 403 is not counted. Registered first, the limit documents its headers before the check adds its 401 and 403.
    if (config.rateLimit.writesPerMinute > 0)
      await limitWrites(api, {
        writesPerMinute: config.rateLimit.writesPerMinute,
        ...(cache.redis ? { redis: cache.redis } : {}),
        keyPrefix: config.cache.keyPrefix,
      });
    if (verifier) requireToken(api, verifier);
    registerStudentRoutes(
      api,
      {
        create: addingToCache(createStudent(writeDeps), cache.students),
        update: writingThrough(updateStudent(writeDeps), cache.students),
        remove: evictingOnDelete(deleteStudent(writeDeps), cache.students),
        get: getStudent(queries, cache.students),
        list: listStudents(queries),
      },
      { dedup: config.dedup, idempotencyTtlSeconds: config.idempotency.ttlSeconds },
    );
  });

  let pruning: Periodic | undefined;
  return {
    app,
    async start() {
      // Every instance prunes (deleting the same expired keys twice is harmless).
      pruning = schedulePruning((stopping) => pruneIdempotencyKeys(database, new Date(), stopping), {
        everyMs: Math.max(
          IDEMPOTENCY_KEYS_PRUNE_EVERY_MS.least,
          Math.min(IDEMPOTENCY_KEYS_PRUNE_EVERY_MS.most, config.idempotency.ttlSeconds * 1_000),
        ),
        logger: log,
        what: 'idempotency keys',
      });
      return listenOn(app, config.host, config.ports.api, 'API_PORT');
    },
    // Fastify's close stops accepting, lets in-flight requests finish, then closes idle connections.
    async stop() {
      await app.close();
      await pruning?.stop();
      if (!deps.cache) await cache.close();
      const requests = app.requestsAtClose();
      return { requestsInFlight: requests?.inFlight ?? 0, requestsAnswered: requests?.answered ?? 0 };
    },
  };
}

/** A webapi over a process's shared adapters, reporting its outbox relay's view of the broker. */
export function createWebApiOver(
  { database, cache, relay, registry }: ProcessResources,
  { config, logger }: Pick<WebApiDeps, 'config' | 'logger'>,
): Promise<WebApi> {
  return createWebApi({
    config,
    logger,
    database,
    cache,
    registry,
    healthChecks: relay ? [relay.healthCheck()] : [],
  });
}

/** Runs the webapi alone: `npm run start:webapi`. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger({ ...config.log, name: 'webapi' });
  const tracing = startTracing(config.tracing, 'webapi', logger);
  // Alone, an in-process bus would have no consumer: then events wait in the outbox for a relay with a broker.
  const bus = config.amqpUrl !== 'memory:';
  let resources: ProcessResources | undefined;
  let webApi: WebApi | undefined;
  await runUntilSignal(
    {
      async start() {
        resources = await openProcessResources(config, logger, { connectionName: 'webapi', bus });
        if (!bus)
          logger.warn(
            'AMQP_URL=memory: with the webapi alone: events wait in the outbox (npm start runs every role)',
          );
        webApi = await createWebApiOver(resources, { config, logger });
        logger.info({ url: await webApi.start(), auth: authSummary(config.auth) }, 'webapi listening');
      },
      async stop() {
        const stopped = { webapi: await webApi?.stop(), ...(await resources?.close()) };
        await tracing.shutdown();
        return stopped;
      },
    },
    logger,
    config.shutdownTimeoutMs,
  );
}

if (isEntryPoint(import.meta.url)) await main();
