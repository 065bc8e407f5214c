import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Routes } from '../../contracts/routes.ts';
import { runHealthChecks, type HealthCheck } from '../health/health.ts';

/** `/health` (detail per dependency), `/health/ready` (503 while a dependency is Unhealthy), `/health/live`. */
export function registerHealthRoutes(app: FastifyInstance, checks: readonly HealthCheck[]): void {
  const hidden = { schema: { hide: true } };
  const report = (detailed: boolean) => async (_request: FastifyRequest, reply: FastifyReply) => {
    const health = await runHealthChecks(checks);
    return reply
      .code(health.status === 'Unhealthy' ? 503 : 200)
      .send(detailed ? health : { status: health.status });
  };
  app.get(Routes.health, hidden, report(true));
  app.get(Routes.healthReady, hidden, report(false));
  app.get(Routes.healthLive, hidden, async () => ({ status: 'Healthy' }));
}
