// The whole system under faults: every role its own process on PostgreSQL, RabbitMQ and Redis servers of this
// test's own, under a steady write load, while RabbitMQ, Redis and PostgreSQL are restarted, the worker and one of
// two notifications instances are SIGKILLed. An SSE client behind a load balancer (reconnecting with Last-Event-ID,
// as browsers do) must receive every notification of every accepted write exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import {
  privateServersAvailable,
  startPrivatePostgres,
  startPrivateRabbitMq,
  startPrivateRedis,
  type PrivateServer,
} from '../support/private-servers.ts';
import { rolesOn, startRole, type RoleProcess } from '../support/role-process.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const WRITES_PER_SECOND = 25;
// A request that fails while PostgreSQL is down may complete a little after it is back (pool reconnecting).
const OUTAGE_GRACE_MS = 5_000;

interface Write {
  readonly status: number;
  readonly studentId?: string;
  readonly endedAt: number;
  readonly error?: string;
}

/** POSTs students at a fixed rate until stopped; every outcome is kept. */
function steadyWrites(apiUrl: string) {
  const writes: Write[] = [];
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  const write = async () => {
    try {
      const response = await fetch(`${apiUrl}/api/students`, {
        method: 'POST',
        signal: AbortSignal.timeout(15_000),
      });
      const body = await response.text();
      writes.push({
        status: response.status,
        endedAt: Date.now(),
        ...(response.status === 201
          ? { studentId: (JSON.parse(body) as { id: string }).id }
          : { error: body }),
      });
    } catch (error) {
      const cause = error instanceof Error && error.cause ? error.cause : error;
      writes.push({ status: 0, endedAt: Date.now(), error: String(cause) });
    }
  };
  const loop = (async () => {
    while (!stopped) {
      const pending = write();
      inFlight.add(pending);
      void pending.finally(() => inFlight.delete(pending));
      await pause(1_000 / WRITES_PER_SECOND);
    }
  })();
  return {
    writes,
    async stop() {
      stopped = true;
      await loop;
      await Promise.all(inFlight);
    },
  };
}

/** An SSE client that reconnects on its own, recording per student the notification types in arrival order. */
function recordingSseClient(url: string) {
  const perStudent = new Map<string, string[]>();
  let connections = 0;
  let received = 0;
  const source = new EventSource(url);
  source.addEventListener('connected', () => connections++);
  for (const type of ['StudentCreated', 'StudentUpdated', 'StudentCached', 'StudentDeleted'])
    source.addEventListener(type, (event) => {
      const { student } = JSON.parse(event.data) as { student: { id: string } };
      const types = perStudent.get(student.id) ?? [];
      types.push(type);
      perStudent.set(student.id, types);
      received++;
    });
  return {
    perStudent,
    get connections() {
      return connections;
    },
    get received() {
      return received;
    },
    close: () => source.close(),
  };
}

/** Takes a server down for `downMs`, then up again; the window in which it was unreachable. */
async function outage(server: PrivateServer, downMs: number): Promise<{ from: number; to: number }> {
  const from = Date.now();
  await server.stop();
  try {
    await pause(downMs);
  } finally {
    await server.start();
  }
  return { from, to: Date.now() };
}

/**
 * With `partitions` > 1, the worker's events are spread over that many queues, shared out by two workers: the one
 * SIGKILLed below hands its partitions to the other, and takes a share again once restarted.
 */
function faultSuite(partitions: number) {
  const name =
    partitions === 1
      ? 'the system under faults'
      : `the system under faults, worker events over ${partitions} partitions shared by two workers`;
  describe(name, privateServersAvailable(), () => {
    const servers: PrivateServer[] = [];
    const roles: RoleProcess[] = [];
    let postgres: PrivateServer;
    let rabbitMq: PrivateServer;
    let redis: PrivateServer;
    let env: Record<string, string>;
    let balancer: TcpProxy | undefined;

    before(async () => {
      // Each registered as soon as it runs, so after() stops it even when another fails to start.
      const started = async (open: () => Promise<PrivateServer>) => {
        const server = await open();
        servers.push(server);
        return server;
      };
      [postgres, redis, rabbitMq] = await Promise.all([
        started(startPrivatePostgres),
        started(startPrivateRedis),
        started(() =>
          startPrivateRabbitMq({ plugins: partitions > 1 ? ['rabbitmq_consistent_hash_exchange'] : [] }),
        ),
      ]);
      env = {
        ...rolesOn({ database: postgres.url, amqp: rabbitMq.url, redis: redis.url }),
        WORKER_PARTITIONS: String(partitions),
        // Quick recovery; the defaults are tuned for production.
        RESILIENCE_DURATION_OF_BREAK_MS: '2000',
        RESILIENCE_BASE_DELAY_MS: '100',
        RESILIENCE_MAX_DELAY_MS: '1000',
        RESILIENCE_TIMEOUT_MS: '5000',
      };
    });
    // Whatever happened: every role stopped, every private server stopped and deleted (the shared ones never touched).
    after(async () => {
      await balancer?.stop();
      await Promise.all(roles.map((role) => role.kill()));
      await Promise.all(servers.map((server) => server.dispose()));
    });

    test('RabbitMQ, Redis and PostgreSQL restarted, worker and a notifications instance SIGKILLed under load: every accepted write notified exactly once', async () => {
      const start = (role: string) =>
        startRole(`src/apps/${role}/main.ts`, env).then((process) => {
          roles.push(process);
          return process;
        });
      const webapi = await start('webapi');
      let worker = await start('worker');
      const otherWorker = partitions > 1 ? await start('worker') : undefined;
      const [notificationsA, notificationsB] = await Promise.all([
        start('notifications'),
        start('notifications'),
      ]);
      const targets = [notificationsA!, notificationsB!].map((instance) => {
        const { hostname, port } = new URL(instance.url);
        return { host: hostname, port: Number(port) };
      });
      balancer = await TcpProxy.balance(targets);
      // The first connection through the balancer goes to A, the instance killed below.
      const sse = recordingSseClient(`http://127.0.0.1:${balancer.port}/api/notifications/stream`);
      await until(() => sse.connections === 1, 'the SSE client connected', 30_000, 200);

      const load = steadyWrites(webapi.url);
      const t0 = Date.now();
      const mark = (what: string) => console.log(`fault timeline: +${Date.now() - t0} ms ${what}`);
      await pause(4_000);
      mark('rabbitmq down');
      await outage(rabbitMq, 3_000);
      mark('rabbitmq up');
      await pause(4_000);
      mark('redis down');
      await outage(redis, 2_000);
      mark('redis up');
      await pause(4_000);
      mark('postgres down');
      const postgresDown = await outage(postgres, 3_000);
      mark('postgres up');
      await pause(4_000);
      mark('worker killed');
      await worker.kill();
      await pause(1_000);
      worker = await start('worker');
      await pause(4_000);
      mark('notifications A killed');
      await notificationsA!.kill();
      await pause(6_000);
      await load.stop();
      const died = roles.filter((role) => role !== notificationsA && role.child.exitCode !== null);
      for (const role of died)
        console.log(`a role exited with ${role.child.exitCode}:\n${role.output().slice(-4_000)}`);

      const accepted = load.writes.filter((write) => write.status === 201).map((write) => write.studentId!);
      const expected = accepted.length * 2;
      const notifiedInFull = () => accepted.every((id) => (sse.perStudent.get(id)?.length ?? 0) >= 2);
      await until(notifiedInFull, 'every notification of every accepted write', 180_000, 200).catch(
        () => undefined,
      );
      await pause(2_000); // room for a late duplicate to show up
      sse.close();

      let lost = 0;
      let duplicated = 0;
      const outOfOrder: string[] = [];
      for (const id of accepted) {
        const types = sse.perStudent.get(id) ?? [];
        const created = types.filter((type) => type === 'StudentCreated').length;
        const cached = types.filter((type) => type === 'StudentCached').length;
        lost += Number(created === 0) + Number(cached === 0);
        duplicated += Math.max(0, created - 1) + Math.max(0, cached - 1);
        if (types.join() !== 'StudentCreated,StudentCached' && created === 1 && cached === 1)
          outOfOrder.push(id);
      }
      const serverErrors = load.writes.filter((write) => write.status >= 500 || write.status === 0);
      const allowed = (write: Write) =>
        write.status === 503 &&
        write.endedAt >= postgresDown.from &&
        write.endedAt <= postgresDown.to + OUTAGE_GRACE_MS;
      const unexpected = serverErrors.filter((write) => !allowed(write));
      const other4xx = load.writes.filter((write) => write.status >= 400 && write.status < 500);
      console.log(
        `faults: ${load.writes.length} writes sent, ${accepted.length} accepted, notifications expected ${expected}, ` +
          `delivered ${sse.received - duplicated}, lost ${lost}, duplicated ${duplicated}; ` +
          `5xx: ${serverErrors.length - unexpected.length} × 503 while PostgreSQL was down, ${unexpected.length} other; ` +
          `SSE connections ${sse.connections}`,
      );

      assert.deepEqual(
        unexpected.slice(0, 3).map(({ status, error }) => ({ status, error })),
        [],
        'no 5xx other than 503 while PostgreSQL was down, no failed connection',
      );
      assert.deepEqual(other4xx.slice(0, 3), [], 'no 4xx for valid writes');
      assert.ok(accepted.length > WRITES_PER_SECOND * 20, 'writes kept succeeding through the faults');
      assert.equal(lost, 0, 'no notification lost');
      assert.equal(duplicated, 0, 'no notification twice');
      for (const id of outOfOrder.slice(0, 5))
        console.log(
          `out of order: created at +${parseInt(id.replaceAll('-', '').slice(0, 12), 16) - t0} ms: ${sse.perStudent.get(id)?.join()}`,
        );
      assert.deepEqual(outOfOrder.slice(0, 3), [], 'Created before Cached for every student');
      assert.ok(sse.connections >= 2, 'the SSE client reconnected after its instance was killed');

      // Every part recovered by itself: the surviving processes report ready.
      for (const role of [webapi, worker, ...(otherWorker ? [otherWorker] : []), notificationsB!]) {
        const base = role.url.replace(/\/health$/, '');
        const response = await fetch(`${base}/health/ready`);
        assert.equal(response.status, 200, `${base} ready: ${await response.text()}`);
      }
    });
  });
}

faultSuite(1);
faultSuite(4);
