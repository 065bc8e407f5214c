// A Redis that refuses REDIS_URL's login (a wrong password, an ACL user disabled): the log and /health say so, and
// never repeat the password, which ioredis hangs on the refusal with the AUTH command it answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { openCache } from '../../src/infrastructure/caching/open-cache.ts';
import { recordingLogger } from '../support/logger.ts';
import { needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

const PASSWORD = 'p@ss:w/rd%';

test(
  'a refused Redis login is said, in the log and /health, without the password',
  await needsRedis(),
  async () => {
    const url = new URL(REDIS_URL);
    // A user this Redis does not have: AUTH is refused (WRONGPASS), as for a wrong password.
    url.username = uniqueName('tbe-refused');
    url.password = encodeURIComponent(PASSWORD);
    const { logger, logged } = recordingLogger();
    const cache = await openCache(
      {
        redisUrl: url.href,
        keyPrefix: `${uniqueName('refused-login')}:`,
        ttlSeconds: 60,
        registry: new Registry(),
      },
      logger,
    );
    try {
      await until(() => logged().includes('WRONGPASS'), 'the refusal logged');
      const health = await cache.healthCheck('the cache is off').check();
      assert.equal(health.status, 'Degraded');
      assert.match(String(health.data?.error), /^WRONGPASS /);
      // The outage's line says why, not only that Redis is unreachable.
      assert.match(logged(), /"reason":"WRONGPASS [^"]*","msg":"cache unavailable \(Redis\)/);
      assert.ok(!logged().includes(PASSWORD), logged());
      assert.ok(!logged().includes(url.password), logged());
      // Every line about it says why, the first ones too.
      assert.match(
        logged(),
        /"reason":"WRONGPASS [^"]*","msg":"cannot subscribe to cache invalidations yet"/,
      );
    } finally {
      await cache.close();
    }
  },
);
