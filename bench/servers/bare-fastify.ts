// Baseline: a bare Fastify route that returns the same student JSON from a Map (serialized string kept).
import Fastify from 'fastify';

const [id, json] = [process.env.BENCH_ID ?? '', process.env.BENCH_JSON ?? '{}'];
const students = new Map([[id, json]]);
const app = Fastify();
app.get<{ Params: { id: string } }>('/api/students/:id', (request, reply) => {
  const student = students.get(request.params.id);
  if (!student) return reply.code(404).send();
  return reply.type('application/json; charset=utf-8').send(student);
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
