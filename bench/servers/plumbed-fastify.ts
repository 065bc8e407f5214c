// The bare baseline's Map route on the project's HTTP plumbing (createHttpServer: security headers, request ids,
// access log, metrics, problem+json; CORS as the webapi has it): what the webapi adds beyond this is its own path.
import { Registry } from 'prom-client';
import { createHttpServer } from '../../src/infrastructure/http/http-server.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { serveStudentFromMap } from './map-route.ts';

// The level the webapi benchmark runs at (bench/servers/webapi.ts).
const app = createHttpServer(createLogger({ level: 'warn', pretty: false }), {
  service: 'bench',
  registry: new Registry(),
  maxHeaderBytes: 16_384,
  cors: { origins: ['*'] },
});
serveStudentFromMap(app);
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
