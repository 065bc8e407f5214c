// The route both HTTP baselines serve (bare, and on our plumbing): GET /api/students/:id answered with the student's
// JSON, kept serialized, from a Map. One definition, so the rows measure the same route.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

export interface MapRouteOptions {
  /** CPU the handler burns per request, to show what a microsecond of work costs the baseline. */
  readonly busyMicroseconds?: number;
  /** Response headers to send besides Content-Type; an `x-request-id` among them gets a fresh UUID per response. */
  readonly headers?: Readonly<Record<string, string>>;
}

export function serveStudentFromMap(
  app: Pick<FastifyInstance, 'get'>,
  { busyMicroseconds = 0, headers }: MapRouteOptions = {},
): void {
  const students = new Map([[process.env.BENCH_ID ?? '', process.env.BENCH_JSON ?? '{}']]);
  const busyMs = busyMicroseconds / 1_000;
  // A copy: its request id is replaced for each response.
  const responseHeaders = headers && { ...headers };
  const freshRequestId = responseHeaders !== undefined && 'x-request-id' in responseHeaders;
  app.get<{ Params: { id: string } }>('/api/students/:id', (request, reply) => {
    if (busyMs > 0) burn(busyMs);
    const student = students.get(request.params.id);
    if (!student) return reply.code(404).send();
    if (responseHeaders) {
      if (freshRequestId) responseHeaders['x-request-id'] = randomUUID();
      void reply.headers(responseHeaders);
    }
    return reply.type('application/json; charset=utf-8').send(student);
  });
}

function burn(milliseconds: number): void {
  const until = performance.now() + milliseconds;
  while (performance.now() < until);
}
