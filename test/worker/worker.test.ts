import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { recordSpans } from '../support/tracing.ts';
import { embedded, realServers } from './worker-harness.ts';
import { workerScenarios } from './worker.scenarios.ts';

// Traced, as a role is with an OTLP endpoint: the notifications carry the trace of the event they answer.
recordSpans();

workerScenarios('PGlite and the in-process bus', embedded, {});

const [postgres, rabbit] = await Promise.all([needsPostgres(), needsRabbitMq()]);
workerScenarios('PostgreSQL and RabbitMQ', realServers, { skip: postgres.skip ?? rabbit.skip });
