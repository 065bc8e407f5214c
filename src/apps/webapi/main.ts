// Composition root of the webapi: builds the adapters, hands them to the use cases, returns start()/stop().
import { createStudent } from '../../application/students/create-student.ts';
import { deleteStudent } from '../../application/students/delete-student.ts';
import { getStudent } from '../../application/students/get-student.ts';
import { listStudents } from '../../application/students/list-students.ts';
import { updateStudent } from '../../application/students/update-student.ts';
import { loadConfigOrExit, type Config } from '../../config.ts';
import { pingCheck } from '../../infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../infrastructure/http/health.routes.ts';
import { createHttpServer, type HttpServer } from '../../infrastructure/http/http-server.ts';
import { registerOpenApi } from '../../infrastructure/http/openapi.ts';
import { createLogger, type Logger } from '../../infrastructure/logging/logger.ts';
import { openDatabase, type Database } from '../../infrastructure/persistence/database.ts';
import { DrizzleStudentQueries } from '../../infrastructure/persistence/drizzle-student-queries.ts';
import { DrizzleUnitOfWork } from '../../infrastructure/persistence/drizzle-unit-of-work.ts';
import { isEntryPoint, runUntilSignal } from '../../infrastructure/runtime/run-until-signal.ts';
import { fakerStudentGenerator } from '../../infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../infrastructure/system/uuid-v7-generator.ts';
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
}

export async function createWebApi({ config, logger, database }: WebApiDeps): Promise<WebApi> {
  const app = createHttpServer(logger.child({ service: 'webapi' }));
  await registerOpenApi(app, {
    title: 'The Background Experience: Student API',
    version: '1.0.0',
    description: 'Student CRUD. Every write is stored with its domain events in one transaction (outbox).',
  });
  registerHealthRoutes(app, [pingCheck('database', () => database.ping(), { kind: database.kind })]);

  const unitOfWork = new DrizzleUnitOfWork(database.db, uuidV7Generator);
  const queries = new DrizzleStudentQueries(database.db);
  const writeDeps = {
    unitOfWork,
    ids: uuidV7Generator,
    clock: systemClock,
    generator: fakerStudentGenerator,
  };
  registerStudentRoutes(app, {
    create: createStudent(writeDeps),
    update: updateStudent(writeDeps),
    remove: deleteStudent(writeDeps),
    get: getStudent(queries),
    list: listStudents(queries),
  });

  return {
    app,
    async start() {
      return app.listen({ host: config.host, port: config.ports.api });
    },
    // Fastify's close stops accepting, lets in-flight requests finish, then closes idle connections.
    stop: () => app.close(),
  };
}

/** Runs the webapi alone: `npm run start:webapi`. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger({ ...config.log, name: 'webapi' });
  let database: Database | undefined;
  let webApi: WebApi | undefined;
  await runUntilSignal(
    {
      async start() {
        database = await openDatabase(config.databaseUrl, logger);
        await database.migrate();
        webApi = await createWebApi({ config, logger, database });
        logger.info({ url: await webApi.start() }, 'webapi listening');
      },
      async stop() {
        await webApi?.stop();
        await database?.close();
      },
    },
    logger,
    config.shutdownTimeoutMs,
  );
}

if (isEntryPoint(import.meta.url)) await main();
