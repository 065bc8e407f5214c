// `npm run stack` on real PostgreSQL, RabbitMQ and Redis: every role its own process. One write is followed
// from the HTTP request to the SSE and SignalR pushes as ONE trace (the roles export with their real OTLP
// exporter to a receiver in this test), /metrics of every role is checked, and so is the shutdown.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { createPostgresDatabase } from '../support/databases.ts';
import { hubClient, sseClient } from '../notifications/support.ts';
import { until } from '../support/until.ts';
import {
  SpanKinds,
  startOtlpReceiver,
  type OtlpReceiver,
  type ReceivedSpan,
} from '../support/otlp-receiver.ts';
import { parseExposition, type Exposition } from '../support/prometheus-text.ts';
import { createProxiedVhost, createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { rolesOn } from '../support/role-process.ts';
import {
  REDIS_URL,
  deleteRedisKeys,
  needsPostgres,
  needsRabbitMq,
  needsRedis,
  uniqueName,
} from '../support/services.ts';

const servers =
  [await needsPostgres(), await needsRabbitMq(), await needsRedis()].find(
    (requirement) => requirement.skip,
  ) ?? {};

const ROLES = ['webapi', 'worker', 'notifications'] as const;
type Role = (typeof ROLES)[number];

interface Stack {
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Base URL of each role (the worker's is its health/metrics port). */
  readonly urls: Record<Role, string>;
  /** Process id of each role, from its log lines. */
  readonly pids: Record<Role, number>;
  /** Every line the stack printed, prefix included. */
  readonly lines: string[];
}

/** The width of the role names column, as the stack aligns it. */
const NAME_WIDTH = Math.max(...ROLES.map((role) => role.length));

/**
 * Starts `npm run stack`'s script (as npm would, minus npm) and waits until every role is listening. In a process
 * group of its own, as in a terminal: a Ctrl-C there reaches every process of the group.
 */
async function startStack(env: Record<string, string>): Promise<Stack> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/stack.ts'], {
    env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  // Once its output is read to the end too: the lines tell how it ended.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const lines: string[] = [];
  const urls: Partial<Record<Role, string>> = {};
  const pids: Partial<Record<Role, number>> = {};
  for (const stream of [child.stdout, child.stderr])
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      const [, role, json] = /^(\w+)\s+\| (\{.*\})$/.exec(line) ?? [];
      if (!role || !json) return;
      const entry = JSON.parse(json) as { pid?: number; msg?: string; url?: string; health?: string };
      pids[role as Role] ??= entry.pid;
      // "webapi listening", "notifications listening" (url), "worker consuming" (health URL).
      const url = entry.url ?? entry.health?.replace(/\/health$/, '');
      if (url && /^(\w+ listening|worker consuming)$/.test(entry.msg ?? '')) urls[role as Role] = url;
    });
  await Promise.race([
    until(() => ROLES.every((role) => urls[role]), 'every role listening', 120_000),
    exited.then((code) => {
      throw new Error(`the stack exited with ${code} before every role listened:\n${lines.join('\n')}`);
    }),
  ]);
  return {
    process: child,
    exited,
    urls: urls as Record<Role, string>,
    pids: pids as Record<Role, number>,
    lines,
  };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function metricsOf(url: string): Promise<Exposition> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

async function createStudent(api: string): Promise<string> {
  const response = await fetch(`${api}/api/students`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ firstName: 'Grace' }),
  });
  assert.equal(response.status, 201);
  return ((await response.json()) as { id: string }).id;
}

describe('npm run stack on PostgreSQL, RabbitMQ and Redis', servers, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let vhost: TestVhost;
  let receiver: OtlpReceiver;
  let stack: Stack;
  let sse: ReturnType<typeof sseClient>;
  let hub: Awaited<ReturnType<typeof hubClient>>;
  const keyPrefix = `${uniqueName('tbe_stack_test')}:`;
  let env: Record<string, string>;

  before(async () => {
    [database, vhost, receiver] = await Promise.all([
      createPostgresDatabase(),
      createTestVhost('stack_test'),
      startOtlpReceiver(),
    ]);
    env = rolesOn({ database: database.url, amqp: vhost.url, redis: REDIS_URL }, keyPrefix);
    stack = await startStack({
      ...env,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      // Standard SDK settings: export finished spans after 100 ms instead of 5 s.
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    sse = sseClient(stack.urls.notifications);
    hub = await hubClient(stack.urls.notifications);
    await until(() => sse.control.length === 1 && hub.connected.length === 1, 'both clients connected');
  });
  after(async () => {
    sse?.close();
    await hub?.close();
    if (stack && stack.process.exitCode === null) {
      stack.process.kill('SIGTERM');
      await stack.exited;
    }
    await receiver?.close();
    await vhost?.delete().catch(() => undefined);
    await database?.drop();
    await deleteRedisKeys(keyPrefix);
  });

  test('one write is ONE trace: HTTP request, outbox, relay, worker, notifications, SSE push and SignalR send', async () => {
    receiver.spans.length = 0;
    const id = await createStudent(stack.urls.webapi);
    const arrived = (client: { received: readonly { type: string; data: { student: { id: string } } }[] }) =>
      client.received.filter((event) => event.data.student.id === id).length === 2;
    await until(() => arrived(sse) && arrived(hub), 'StudentCreated and StudentCached on both clients');
    const named = (name: string) => receiver.spans.filter((span) => span.name === name);
    // Each process exports on its own schedule: wait for every span the write should give.
    const expected = {
      'POST /api/students': 1,
      transaction: 2,
      'create students': 1,
      'publish students': 1,
      'process students.worker': 1,
      'create notifications': 2,
      'publish notifications': 2,
      'process notifications': 2,
      'sse push': 2,
      'signalr send': 2,
    };
    await until(
      () => Object.entries(expected).every(([name, count]) => named(name).length >= count),
      'every span of the write exported',
    );
    assert.deepEqual(
      Object.fromEntries(Object.keys(expected).map((name) => [name, named(name).length])),
      expected,
      'each step once',
    );

    const byId = new Map(receiver.spans.map((span) => [span.spanId, span]));
    const parentOf = (span: ReceivedSpan | undefined) => byId.get(span?.parentSpanId ?? '');
    const only = (name: string, service?: string) => {
      const found = named(name).filter((span) => !service || span.service === service);
      assert.equal(found.length, 1, `one ${name} span${service ? ` from ${service}` : ''}`);
      return found[0]!;
    };
    const childrenOf = (parent: ReceivedSpan, name: string) =>
      named(name).filter((span) => span.parentSpanId === parent.spanId);

    const request = only('POST /api/students', 'webapi');
    assert.equal(request.kind, SpanKinds.server);
    assert.equal(
      request.parentSpanId,
      undefined,
      'the client sent no trace context: the request starts the trace',
    );
    assert.equal(request.attributes['http.response.status_code'], 201);
    const trace = request.traceId;
    // Other HTTP requests (the clients' connections) are traces of their own.
    const ofTheWrite = receiver.spans.filter((span) => span.kind !== SpanKinds.server || span === request);
    assert.deepEqual(
      [...new Set(ofTheWrite.map((span) => span.traceId))],
      [trace],
      'every span of this write is in one trace',
    );

    // webapi: the request's transaction writes the student and creates the event's outbox message.
    const [writeTx] = childrenOf(request, 'transaction');
    assert.equal(writeTx?.service, 'webapi');
    const [eventCreated] = childrenOf(writeTx!, 'create students');
    assert.equal(eventCreated?.kind, SpanKinds.producer);

    // relay (whichever process leads): publishes it, a child of and linked to its creation context.
    const [eventPublished] = childrenOf(eventCreated!, 'publish students');
    assert.ok(eventPublished && ['webapi', 'worker'].includes(eventPublished.service));
    assert.deepEqual(eventPublished.links, [{ traceId: trace, spanId: eventCreated!.spanId }]);
    assert.equal(eventPublished.attributes['messaging.system'], 'rabbitmq');

    // worker: processes it (consumer of the creation context) in a transaction that writes two notifications.
    // Their create spans are children of the processing (events processed together share one transaction).
    const [processed] = childrenOf(eventCreated!, 'process students.worker');
    assert.equal(processed?.service, 'worker');
    assert.equal(processed.kind, SpanKinds.consumer);
    assert.deepEqual(processed.links, [{ traceId: trace, spanId: eventCreated!.spanId }]);
    assert.equal(childrenOf(processed, 'transaction').length, 1, 'the worker transaction');
    const notificationsCreated = childrenOf(processed, 'create notifications');
    assert.equal(notificationsCreated.length, 2, 'StudentCreated and StudentCached');

    for (const created of notificationsCreated) {
      const [published] = childrenOf(created, 'publish notifications');
      assert.ok(published, 'the relay published each notification');
      // notifications service: consumes it into the replay log, then pushes it to SSE and SignalR clients.
      const [consumed] = childrenOf(created, 'process notifications');
      assert.equal(consumed?.service, 'notifications');
      const pushes = [...childrenOf(consumed, 'sse push'), ...childrenOf(consumed, 'signalr send')];
      assert.deepEqual(pushes.map((span) => span.name).sort(), ['signalr send', 'sse push']);
      for (const push of pushes) assert.equal(push.attributes['notification.clients'], 1);
    }
    assert.equal(
      parentOf(parentOf(parentOf(named('sse push')[0]))),
      processed,
      'push → consume → create → worker processing',
    );
    assert.deepEqual([...new Set(ofTheWrite.map((span) => span.service))].sort(), [
      'notifications',
      'webapi',
      'worker',
    ]);
    assert.ok(
      receiver.requests.every((request) => request.contentType === 'application/json'),
      'exported by the OTLP/HTTP JSON exporter',
    );
  });

  test('/metrics on every role parses as Prometheus text, and the counters move when work happens', async () => {
    const snapshot = () => Promise.all(ROLES.map((role) => metricsOf(stack.urls[role])));
    const [webapiBefore, workerBefore, notificationsBefore] = await snapshot();
    const relayPublished = (webapi: Exposition, worker: Exposition) =>
      webapi.sum('outbox_relay_published_total') + worker.sum('outbox_relay_published_total');
    const created = { service: 'webapi', method: 'POST', route: '/api/students', status_code: '201' };

    const id = await createStudent(stack.urls.webapi);
    await until(() => sse.received.filter((event) => event.data.student.id === id).length === 2, 'notified');
    // Once the worker has refreshed the cache, two callers read: the first read may reload (it can race that
    // refresh), the second is served from the cache (another caller, so no deduplication replay of the first).
    for (const authorization of ['Bearer first-reader', 'Bearer second-reader'])
      assert.equal(
        (await fetch(`${stack.urls.webapi}/api/students/${id}`, { headers: { authorization } })).status,
        200,
      );
    await until(async () => {
      const [webapi, worker] = await snapshot();
      return relayPublished(webapi!, worker!) - relayPublished(webapiBefore!, workerBefore!) === 3;
    }, 'the relay published the event and both notifications');
    const [webapi, worker, notifications] = await snapshot();

    const moved = (after: Exposition, before: Exposition, name: string, labels?: Record<string, string>) =>
      after.sum(name, labels) - before.sum(name, labels);
    assert.equal(moved(webapi!, webapiBefore!, 'http_server_request_duration_seconds_count', created), 1);
    assert.ok(moved(webapi!, webapiBefore!, 'student_cache_hits_total') >= 1, 'the second read was a hit');
    assert.ok((webapi!.value('student_cache_hit_ratio') ?? 0) > 0);
    assert.equal(moved(worker!, workerBefore!, 'worker_messages_total', { outcome: 'processed' }), 1);
    assert.equal(moved(worker!, workerBefore!, 'worker_message_processing_seconds_count'), 1);
    assert.equal(moved(worker!, workerBefore!, 'message_age_seconds_count', { queue: 'students.worker' }), 1);
    assert.equal(
      moved(notifications!, notificationsBefore!, 'notifications_appended_total', { outcome: 'appended' }),
      2,
    );
    assert.equal(
      moved(notifications!, notificationsBefore!, 'message_age_seconds_count', { queue: 'notifications' }),
      2,
    );
    for (const transport of ['sse', 'signalr'])
      assert.equal(
        moved(notifications!, notificationsBefore!, 'notifications_delivered_total', { transport }),
        2,
        transport,
      );
    assert.equal(notifications!.value('notifications_connected_clients', { transport: 'sse' }), 1);
    assert.equal(
      notifications!.value('notifications_connected_clients', { transport: 'signalr_websockets' }),
      1,
    );
    assert.equal(webapi!.value('outbox_backlog_messages'), 0);
    const leaders = [webapi!, worker!].map((exposition) =>
      exposition.value('outbox_relay_role', { role: 'leader' }),
    );
    assert.deepEqual(leaders.sort(), [0, 1], 'one relay leads, the other stands by');
    for (const exposition of [webapi!, worker!, notifications!]) {
      assert.ok((exposition.value('process_resident_memory_bytes') ?? 0) > 0, "Node's own metrics");
      assert.equal(exposition.types.get('http_server_request_duration_seconds'), 'histogram');
    }
  });

  test("it names the servers without their passwords, and prefixes each role's lines with its name, aligned", () => {
    const password = new URL(vhost.url).password;
    assert.ok(password, 'the test vhost has a password to hide');
    const rabbitLine = stack.lines.find((line) => line.includes('| RabbitMQ '));
    assert.equal(
      rabbitLine,
      `${' '.repeat(NAME_WIDTH)} | RabbitMQ   ${vhost.url.replace(`:${password}@`, ':***@')}`,
    );
    assert.ok(
      stack.lines.every((line) => !line.includes(`:${password}@`)),
      'no line shows the password',
    );
    for (const role of ROLES) {
      const own = stack.lines.filter((line) => line.startsWith(`${role} `));
      assert.ok(own.length > 0, role);
      for (const line of own) assert.ok(line.startsWith(`${role.padEnd(NAME_WIDTH)} | `), line);
    }
  });

  test('SIGTERM stops every role gracefully and the stack exits 0', async () => {
    sse.close();
    await hub.close();
    stack.process.kill('SIGTERM');
    assert.equal(await stack.exited, 0, stack.lines.slice(-30).join('\n'));
    for (const role of ROLES) {
      assert.equal(isRunning(stack.pids[role]), false, `${role} is gone`);
      assert.ok(
        stack.lines.some((line) => line.startsWith(role) && line.includes('"msg":"stopped"')),
        `${role} stopped gracefully`,
      );
    }
  });

  test('when a role dies, the stack stops the others and exits 1', async () => {
    const second = await startStack(env);
    process.kill(second.pids.worker, 'SIGKILL');
    assert.equal(await second.exited, 1);
    for (const role of ROLES) assert.equal(isRunning(second.pids[role]), false, `${role} is gone`);
    assert.ok(second.lines.some((line) => /worker was killed by SIGKILL on its own/.test(line)));
  });

  test('when what reads its output goes away (`npm run stack | head`), the stack stops every role', async () => {
    const second = await startStack(env);
    second.process.stdout!.destroy();
    second.process.stderr!.destroy();
    // A request makes the webapi log a line, which the stack then fails to write (a probe's is at debug).
    assert.equal((await fetch(`${second.urls.webapi}/api/students?limit=1`)).status, 200);
    assert.equal(await second.exited, 0);
    for (const role of ROLES) assert.equal(isRunning(second.pids[role]), false, `${role} is gone`);
  });

  test('a role that stops on its own, even cleanly, fails the stack too', async () => {
    const second = await startStack(env);
    process.kill(second.pids.worker, 'SIGTERM');
    assert.equal(await second.exited, 1);
    for (const role of ROLES) assert.equal(isRunning(second.pids[role]), false, `${role} is gone`);
    assert.ok(second.lines.some((line) => /worker exited with status 0 on its own/.test(line)));
  });

  test('Ctrl-C in the terminal (its process group, and again from npm) stops every role once, gracefully: exit 0', async () => {
    const second = await startStack(env);
    // The terminal signals the whole group; npm forwards the same Ctrl-C a moment later.
    process.kill(-second.process.pid!, 'SIGINT');
    second.process.kill('SIGINT');
    assert.equal(await second.exited, 0, second.lines.slice(-30).join('\n'));
    for (const role of ROLES) {
      assert.equal(isRunning(second.pids[role]), false, `${role} is gone`);
      const own = (msg: string) =>
        second.lines.filter((line) => line.startsWith(role) && line.includes(`"msg":"${msg}"`));
      // Signalled by the stack alone: the terminal's Ctrl-C does not reach the roles on top of the stack's SIGTERM.
      assert.equal(own('stopping').length, 1, `${role} was asked to stop once`);
      assert.equal(own('stopped').length, 1, `${role} stopped gracefully`);
    }
  });
});

describe('npm run stack when the roles cannot stop (their broker went silent)', servers, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let broker: Awaited<ReturnType<typeof createProxiedVhost>>;
  const keyPrefix = `${uniqueName('tbe_stack_stuck')}:`;
  const env = (shutdownTimeoutMs: number) => ({
    ...rolesOn({ database: database.url, amqp: broker.url, redis: REDIS_URL }, keyPrefix),
    SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs),
  });

  before(async () => {
    [database, broker] = await Promise.all([createPostgresDatabase(), createProxiedVhost('stack_stuck')]);
  });
  after(async () => {
    await broker?.delete().catch(() => undefined);
    await database?.drop();
    await deleteRedisKeys(keyPrefix);
  });

  test('roles cut short by SHUTDOWN_TIMEOUT_MS exit 1, and so does the stack', async () => {
    const stack = await startStack(env(1_000));
    try {
      assert.ok(broker.proxy.silence() > 0, 'the roles are connected to the broker');
      stack.process.kill('SIGTERM');
      assert.equal(await stack.exited, 1);
      assert.ok(
        stack.lines.some((line) => /^ +\| worker exited with status 1$/.test(line)),
        stack.lines.slice(-30).join('\n'),
      );
    } finally {
      stack.process.kill('SIGKILL');
    }
  });

  test('a second Ctrl-C, later than npm would forward the first, kills the roles still stopping', async () => {
    const stack = await startStack(env(120_000));
    try {
      assert.ok(broker.proxy.silence() > 0, 'the roles are connected to the broker');
      stack.process.kill('SIGINT');
      await until(() => stack.lines.some((line) => /SIGINT: stopping every role/.test(line)), 'the stop');
      // Only a signal more than a second after the first is a person's second Ctrl-C (see REPEATED_SIGNAL_MS).
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      stack.process.kill('SIGINT');
      assert.equal(await stack.exited, 1);
      assert.ok(stack.lines.some((line) => /another SIGINT: killing the roles still running/.test(line)));
      for (const role of ROLES) {
        assert.equal(isRunning(stack.pids[role]), false, `${role} is gone`);
        assert.ok(
          stack.lines.some((line) => line.endsWith(`| ${role} was killed by SIGKILL`)),
          role,
        );
      }
    } finally {
      stack.process.kill('SIGKILL');
    }
  });
});

/** Runs the stack with `env` for a start it must refuse: its exit status and what it wrote to stderr. */
async function refusedStack(env: Record<string, string>): Promise<{ code: unknown; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/stack.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
  const code = await new Promise((resolve) => child.once('close', resolve));
  return { code, stderr };
}

test('the stack refuses embedded adapters: separate processes cannot share them', async () => {
  const { code, stderr } = await refusedStack({ AMQP_URL: 'memory:', DATABASE_URL: 'pglite://./.data/pg' });
  assert.equal(code, 2);
  assert.match(stderr, /DATABASE_URL=pglite:\/\/\.\/\.data\/pg, AMQP_URL=memory:/);
  assert.match(stderr, /npm start/);
});

test('a configuration mistake is reported once, as the roles would report it, with exit 2', async () => {
  const { code, stderr } = await refusedStack({ API_PORT: 'abc' });
  assert.equal(code, 2);
  assert.equal(
    stderr,
    'Invalid configuration:\n  - API_PORT: must be an integer from 0 to 65535 (0 = any free port) (got "abc")\n',
  );
});
