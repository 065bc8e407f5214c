// What the notifications service's health says while its replay log (Redis) cannot be reached.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createNotifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RedisStreamReplayLog } from '../../src/infrastructure/replay-log/redis-stream-replay-log.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('a replay log Redis refuses: readiness is 503, and health names the refusal, not the client library', async () => {
  const port = await closedPort();
  const replayLog = new RedisStreamReplayLog(
    { url: `redis://127.0.0.1:${port}`, keyPrefix: 'unreachable:', maxEntries: 100, dedupTtlSeconds: 60 },
    silentLogger,
  );
  const bus = new InProcessMessageBus();
  const config = parseConfig({ NOTIFICATIONS_PORT: '0' });
  const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
  try {
    const url = await notifications.start();
    await until(() => replayLog.status().detail !== undefined, 'a refused connection attempt');
    assert.equal((await fetch(`${url}/health/ready`)).status, 503);
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 503);
    const replayLogCheck = checkNamed<{ error: string }>((await health.json()) as HealthBody, 'replay-log');
    assert.equal(replayLogCheck?.status, 'Unhealthy');
    assert.match(replayLogCheck?.description ?? '', /replay log unreachable/);
    assert.match(replayLogCheck?.data.error ?? '', new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  } finally {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  }
});
