// Baseline: a bare Fastify route that returns the same student JSON from a Map (serialized string kept);
// BENCH_BUSY_MICROSECONDS adds that much CPU per request (the calibration row).
import Fastify from 'fastify';
import { serveStudentFromMap } from './map-route.ts';

const app = Fastify();
serveStudentFromMap(app, Number(process.env.BENCH_BUSY_MICROSECONDS ?? 0));
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
