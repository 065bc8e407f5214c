// Composition root of the webapi: builds the adapters, hands them to the use cases, returns start()/stop().
import cors from '@fastify/cors';
import { createStudent } from '../../application/students/create-student.ts';
import { deleteStudent } from '../../application/students/delete-student.ts';
import type { StudentQueries } from '../../application/ports/student-queries.ts';
import { getStudent } from '../../application/students/get-student.ts';
import { listStudents } from '../../application/students/list-students.ts';
import { updateStudent } from '../../application/students/update-student.ts';
import { evictingOnDelete, writingThrough } from '../../application/students/write-through.ts';
import { loadConfigOrExit, type Config } from '../../config.ts';
import { openCache, type Cache } from '../../infrastructure/caching/open-cache.ts';
import { pingCheck, type HealthCheck } from '../../infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../infrastructure/http/health.routes.ts';
import { createHttpServer, type HttpServer } from '../../infrastructure/http/http-server.ts';
import { registerOpenApi } from '../../infrastructure/http/openapi.ts';
import { createLogger, type Logger } from '../../infrastructure/logging/logger.ts';
import type { Database } from '../../infrastructure/persistence/database.ts';
import { DrizzleStudentQueries } from '../../infrastructure/persistence/drizzle-student-queries.ts';
import { DrizzleUnitOfWork } from '../../infrastructure/persistence/drizzle-unit-of-work.ts';
import {
  openProcessResources,
  type ProcessResources,
} from '../../infrastructure/runtime/process-resources.ts';
import { isEntryPoint, runUntilSignal } from '../../infrastructure/runtime/run-until-signal.ts';
import { fakerStudentGenerator } from '../../infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../infrastructure/system/uuid-v7-generator.ts';
import { Registry } from 'prom-client';
import dedupPlugin from './plugins/dedup.plugin.ts';
import idempotencyPlugin from './plugins/idempotency.plugin.ts';
import { registerStudentRoutes } from './routes/students.routes.ts';

export interface WebApi {
  readonly app: HttpServer;
  /** Listens on HOST:API_PORT; resolves with the base URL (the real port when API_PORT is 0). */
  start(): Promise<string>;
  stop(): Promise<void>;
}

export interface WebApiDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** Shared with the other roles when they run in one process; migrated by whoever opened it. */
  readonly database: Database;
  /** Shared with the worker in one process; when absent the webapi opens (and closes) its own from config. */
  readonly cache?: Cache;
  /** The read side; defaults to the database's. */
  readonly queries?: StudentQueries;
  /** Checks of parts this process runs besides the API (e.g. the outbox relay's broker check). */
  readonly healthChecks?: readonly HealthCheck[];
}

export async function createWebApi({ config, logger, database, ...deps }: WebApiDeps): Promise<WebApi> {
  const app = createHttpServer(logger.child({ service: 'webapi' }));
  // The notifications pages (another origin) create, update and delete students from the browser.
  await app.register(cors, {
    origin: config.corsOrigins.includes('*') ? true : [...config.corsOrigins],
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    exposedHeaders: ['ETag', 'Location', 'X-Deduplicated', 'Idempotent-Replayed', 'X-Request-Id'],
    // An OPTIONS without Origin is no preflight, but a valid request: strict mode answered a text/plain 400.
    strictPreflight: false,
  });
  await registerOpenApi(app, {
    title: 'The Background Experience: Student API',
    version: '1.0.0',
    description: 'Student CRUD. Every write is stored with its domain events in one transaction (outbox).',
  });
  const cache =
    deps.cache ??
    (await openCache({ redisUrl: config.redisUrl, ...config.cache, registry: new Registry() }, logger));
  registerHealthRoutes(app, [
    pingCheck('database', () => database.ping(), { kind: database.kind }),
    cache.health,
    ...(deps.healthChecks ?? []),
  ]);
  // Before the routes: they pick up their hooks from each route's config as it is added.
  await app.register(idempotencyPlugin, {
    store: cache.idempotency,
    ttlSeconds: config.idempotencyTtlSeconds,
  });
  await app.register(dedupPlugin, { store: cache.responses, metrics: cache.metrics });

  const unitOfWork = new DrizzleUnitOfWork(database.db, uuidV7Generator);
  const queries = deps.queries ?? new DrizzleStudentQueries(database.db);
  const writeDeps = {
    unitOfWork,
    ids: uuidV7Generator,
    clock: systemClock,
    generator: fakerStudentGenerator,
  };
  registerStudentRoutes(
    app,
    {
      create: writingThrough(createStudent(writeDeps), cache.students),
      update: writingThrough(updateStudent(writeDeps), cache.students),
      remove: evictingOnDelete(deleteStudent(writeDeps), cache.students),
      get: getStudent(queries, cache.students),
      list: listStudents(queries),
    },
    { dedup: config.dedup },
  );

  return {
    app,
    async start() {
      return app.listen({ host: config.host, port: config.ports.api });
    },
    // Fastify's close stops accepting, lets in-flight requests finish, then closes idle connections.
    async stop() {
      await app.close();
      if (!deps.cache) await cache.close();
    },
  };
}

/** Runs the webapi alone: `npm run start:webapi`. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger({ ...config.log, name: 'webapi' });
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
        const { database, cache, relay } = resources;
        webApi = await createWebApi({
          config,
          logger,
          database,
          cache,
          healthChecks: relay ? [relay.healthCheck()] : [],
        });
        logger.info({ url: await webApi.start() }, 'webapi listening');
      },
      async stop() {
        await webApi?.stop();
        await resources?.close();
      },
    },
    logger,
    config.shutdownTimeoutMs,
  );
}

if (isEntryPoint(import.meta.url)) await main();
