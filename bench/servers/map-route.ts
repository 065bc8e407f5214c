// The route both HTTP baselines serve (bare, and on our plumbing): GET /api/students/:id answered with the student's
// JSON, kept serialized, from a Map. One definition, so the rows measure the same route.
import type { FastifyInstance } from 'fastify';

/** `busyMicroseconds`: CPU the handler burns per request, to show what a microsecond of work costs the baseline. */
export function serveStudentFromMap(app: Pick<FastifyInstance, 'get'>, busyMicroseconds = 0): void {
  const students = new Map([[process.env.BENCH_ID ?? '', process.env.BENCH_JSON ?? '{}']]);
  const busyMs = busyMicroseconds / 1_000;
  app.get<{ Params: { id: string } }>('/api/students/:id', (request, reply) => {
    if (busyMs > 0) burn(busyMs);
    const student = students.get(request.params.id);
    if (!student) return reply.code(404).send();
    return reply.type('application/json; charset=utf-8').send(student);
  });
}

function burn(milliseconds: number): void {
  const until = performance.now() + milliseconds;
  while (performance.now() < until);
}
