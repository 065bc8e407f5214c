import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { embedded, realServers } from './worker-harness.ts';
import { workerScenarios } from './worker.scenarios.ts';

workerScenarios('PGlite and the in-process bus', embedded, {});

const [postgres, rabbit] = await Promise.all([needsPostgres(), needsRabbitMq()]);
workerScenarios('PostgreSQL and RabbitMQ', realServers, { skip: postgres.skip ?? rabbit.skip });
