import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createHttpServer } from '../../src/infrastructure/http/http-server.ts';

test('the request log masks an access_token in the query (EventSource and SignalR clients send one)', async () => {
  let logged = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged += chunk.toString();
      done();
    },
  });
  const app = createHttpServer(pino({ level: 'info' }, sink), {
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
  assert.match(logged, /"url":"\/stream\?types=A&access_token=\[redacted\]&x=1"/);
  assert.doesNotMatch(logged, /secret\.jwt\.value/);
});
