import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createHttpServer } from '../../src/infrastructure/http/http-server.ts';
import { recordingLogger } from '../support/logger.ts';

test('the request log masks an access_token in the query (EventSource and SignalR clients send one)', async () => {
  const { logger, logged } = recordingLogger();
  const app = createHttpServer(logger, {
    service: 'test',
    registry: new Registry(),
    maxHeaderBytes: 16_384,
  });
  app.get('/stream', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    assert.equal((await fetch(`${url}/stream?types=A&access_token=secret.jwt.value&x=1`)).status, 200);
  } finally {
    await app.close();
  }
  assert.match(logged(), /"url":"\/stream\?types=A&access_token=\[redacted\]&x=1"/);
  assert.doesNotMatch(logged(), /secret\.jwt\.value/);
});
