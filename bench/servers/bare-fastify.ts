// Baseline: a bare Fastify route that returns the same student JSON from a Map (serialized string kept).
// BENCH_BUSY_MICROSECONDS adds that much CPU per request (the calibration row); BENCH_HEADERS (a JSON object) adds
// those response headers (the row that sends what the webapi's replay sends).
import Fastify from 'fastify';
import { serveStudentFromMap } from './map-route.ts';

const app = Fastify();
serveStudentFromMap(app, {
  busyMicroseconds: Number(process.env.BENCH_BUSY_MICROSECONDS ?? 0),
  ...(process.env.BENCH_HEADERS
    ? { headers: JSON.parse(process.env.BENCH_HEADERS) as Record<string, string> }
    : {}),
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
