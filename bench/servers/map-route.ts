// The route both HTTP baselines serve (bare, and on our plumbing): GET /api/students/:id answered with the student's
// JSON, kept serialized, from a Map. One definition, so the two rows measure the same route.
import type { FastifyInstance } from 'fastify';

export function serveStudentFromMap(app: Pick<FastifyInstance, 'get'>): void {
  const students = new Map([[process.env.BENCH_ID ?? '', process.env.BENCH_JSON ?? '{}']]);
  app.get<{ Params: { id: string } }>('/api/students/:id', (request, reply) => {
    const student = students.get(request.params.id);
    if (!student) return reply.code(404).send();
    return reply.type('application/json; charset=utf-8').send(student);
  });
}
