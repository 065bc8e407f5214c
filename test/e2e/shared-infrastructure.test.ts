// Two deployments pointed at the same Redis key prefix or the same RabbitMQ vhost would serve each other's cached
// students and idempotent replays, or consume each other's events, all the while healthy. The first to use either
// claims it; the second is refused at start, with what to change. Two processes of one deployment share both.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import {
  openProcessResources,
  type ProcessResources,
} from '../../src/infrastructure/runtime/process-resources.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { createProxiedVhost, createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import {
  REDIS_URL,
  deleteRedisKeys,
  needsPostgres,
  needsRabbitMq,
  needsRedis,
  uniqueName,
} from '../support/services.ts';
import { until } from '../support/until.ts';

const servers = [await needsPostgres(), await needsRabbitMq(), await needsRedis()];
const skip = servers.find((requirement) => requirement.skip)?.skip ?? false;

const databases: { url: string; drop(): Promise<void> }[] = [];
const vhosts: TestVhost[] = [];
const prefixes: string[] = [];

before(async () => {
  if (skip) return;
  databases.push(await createPostgresDatabase(), await createPostgresDatabase());
  vhosts.push(await createTestVhost('shared_infra'), await createTestVhost('shared_infra'));
});

after(async () => {
  await Promise.all([
    ...databases.map((database) => database.drop()),
    ...vhosts.map((vhost) => vhost.delete()),
    ...prefixes.map((prefix) => deleteRedisKeys(prefix)),
  ]);
});

function prefix(): string {
  const made = `${uniqueName('shared_infra')}:`;
  prefixes.push(made);
  return made;
}

/** `vhost`: the test vhost, or an AMQP URL to it (through a proxy). */
function open(database: string, vhost: TestVhost | string, keyPrefix: string): Promise<ProcessResources> {
  const config = parseConfig({
    DATABASE_URL: database,
    AMQP_URL: typeof vhost === 'string' ? vhost : vhost.url,
    REDIS_URL,
    CACHE_KEY_PREFIX: keyPrefix,
    LOG_LEVEL: 'silent',
  });
  return openProcessResources(config, silentLogger, { connectionName: 'test', bus: true });
}

test(
  'a second deployment on the same cache key prefix is refused at start, saying what to change',
  { skip },
  async () => {
    const shared = prefix();
    const first = await open(databases[0]!.url, vhosts[0]!, shared);
    try {
      await assert.rejects(open(databases[1]!.url, vhosts[1]!, shared), (error: Error) => {
        assert.equal(error.name, 'DeploymentConflictError');
        assert.match(error.message, new RegExp(`Redis key prefix "${shared}" belongs to another deployment`));
        assert.match(error.message, /give each deployment its own CACHE_KEY_PREFIX/);
        return true;
      });
      // Refused before it could take anything: the first deployment's cache still answers.
      assert.equal(
        await first.cache
          .healthCheck('')
          .check()
          .then((result) => result.status),
        'Healthy',
      );
    } finally {
      await first.close();
    }
  },
);

test(
  'a second deployment on the same vhost is refused at start, saying what to change',
  { skip },
  async () => {
    const first = await open(databases[0]!.url, vhosts[0]!, prefix());
    try {
      await assert.rejects(open(databases[1]!.url, vhosts[0]!, prefix()), (error: Error) => {
        assert.equal(error.name, 'DeploymentConflictError');
        assert.match(
          error.message,
          new RegExp(`RabbitMQ vhost "${vhosts[0]!.name}" belongs to another deployment`),
        );
        assert.match(error.message, /its own vhost/);
        return true;
      });
    } finally {
      await first.close();
    }
  },
);

test('processes of one deployment share its key prefix and vhost', { skip }, async () => {
  const shared = prefix();
  const first = await open(databases[0]!.url, vhosts[0]!, shared);
  try {
    const second = await open(databases[0]!.url, vhosts[0]!, shared);
    try {
      for (const resources of [first, second])
        assert.equal((await resources.cache.healthCheck('').check()).status, 'Healthy');
    } finally {
      await second.close();
    }
  } finally {
    await first.close();
  }
});

test(
  'deployments claiming one vhost at once: one wins, every process of the other is refused, naming it',
  { skip },
  async () => {
    const vhost = vhosts[1]!;
    const claims = Array.from({ length: 12 }, (_, index) => {
      const deployment = index % 2 === 0 ? 'deployment-a' : 'deployment-b';
      const bus = new RabbitMqMessageBus({ url: vhost.url, deployment });
      return { deployment, bus };
    });
    try {
      const outcomes = await Promise.allSettled(
        claims.map(({ bus }) => bus.declareTopology({ exchanges: [], queues: [], bindings: [] })),
      );
      const winners = new Set(
        claims.filter((_, index) => outcomes[index]!.status === 'fulfilled').map((claim) => claim.deployment),
      );
      assert.equal(winners.size, 1, 'one deployment claimed the vhost');
      const [winner] = winners;
      for (const [index, outcome] of outcomes.entries()) {
        if (claims[index]!.deployment === winner) {
          assert.equal(outcome.status, 'fulfilled', 'every process of the winner shares the vhost');
          continue;
        }
        assert.equal(outcome.status, 'rejected');
        assert.match(
          String((outcome as PromiseRejectedResult).reason),
          new RegExp(`another deployment \\(${winner}\\)`),
        );
      }
      // Read again, all at once, by the winner's processes: each finds its own claim, whoever else reads it meanwhile.
      await Promise.all(
        claims
          .filter((claim) => claim.deployment === winner)
          .map(({ bus }) => bus.declareTopology({ exchanges: [], queues: [], bindings: [] })),
      );
    } finally {
      await Promise.all(claims.map(({ bus }) => bus.close()));
    }
  },
);

test(
  "one process's topology declared twice at once (its worker's start and its relay's) claims the vhost once",
  { skip },
  async () => {
    const vhost = await createTestVhost('shared_infra');
    const bus = new RabbitMqMessageBus({ url: vhost.url, deployment: 'deployment-a' });
    const other = new RabbitMqMessageBus({ url: vhost.url, deployment: 'deployment-b' });
    try {
      const empty = { exchanges: [], queues: [], bindings: [] };
      await Promise.all([bus.declareTopology(empty), bus.declareTopology(empty), bus.declareTopology(empty)]);
      // The exclusive-queue lock does not keep a connection from itself: each declaration found the claim in
      // another's hands, or none, and left one more copy behind.
      assert.ok(((await bus.inspectQueue('deployment'))?.messages ?? 0) <= 1, 'claim copies left behind');
      await assert.rejects(other.declareTopology(empty), /another deployment \(deployment-a\)/);
    } finally {
      await Promise.all([bus.close(), other.close()]);
      await vhost.delete();
    }
  },
);

test(
  "a deployment that meets another one's claim only once the broker is back publishes nothing, and its broker check says why",
  { skip },
  async () => {
    const broker = await createProxiedVhost('shared_infra');
    try {
      const first = await open(databases[0]!.url, broker.vhost, prefix());
      try {
        await broker.proxy.pause();
        // The broker away: the second starts, its writes wait in the outbox, its relay declares the topology later.
        const second = await open(databases[1]!.url, broker.url, prefix());
        try {
          await broker.proxy.resume();
          const check = second.relay!.healthCheck();
          await until(async () => (await check.check()).status === 'Unhealthy', 'the conflict reported');
          assert.match(
            (await check.check()).description ?? '',
            /RabbitMQ vhost ".*" belongs to another deployment/,
          );
        } finally {
          await second.close();
        }
      } finally {
        await first.close();
      }
    } finally {
      await broker.delete();
    }
  },
);
