import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually, RawClient, startHub } from './helpers.ts';

test('a client that stops reading is closed once its outgoing buffer is full; the others get everything', async () => {
  const running = await startHub({ maxBufferedBytes: 256 * 1024 });
  const stalled = await RawClient.handshaken(running.url);
  const healthy = await RawClient.handshaken(running.url);
  let healthyGot = 0;
  healthy.ws.on('message', (data: Buffer) => (healthyGot += data.toString().split('\u001e').length - 1));
  try {
    stalled.ws.pause();
    await eventually(() => running.hub.stats().connections === 2);
    const payload = 'x'.repeat(4096);
    const total = 4_000;
    for (let i = 0; i < total; i++) {
      await running.hub.clients.all.send('notify', i, payload);
      // Bursts well under the limit: a reading client drains between them, a stalled one does not.
      if (i % 8 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await eventually(() => running.hub.stats().connections === 1, 10_000);
    await eventually(() => healthy.records.filter((r) => r.target === 'notify').length === total, 10_000);
    assert.ok(healthyGot >= total);
  } finally {
    stalled.close();
    healthy.close();
    await running.close();
  }
});
