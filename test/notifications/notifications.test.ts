// The notifications service in process (in-process bus, memory replay log), observed by real clients.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { get } from 'node:http';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { outcome, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import { compareLogIds, laterLogId, type ReplayLogEntry } from '../../src/application/ports/replay-log.ts';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { Exchanges, MESSAGING_TOPOLOGY, deadLetterNames } from '../../src/contracts/messaging.ts';
import type { ResetMessage } from '../../src/contracts/notifications.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { exchange } from '../support/raw-http.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { hubClient, notificationMessage, sseClient } from './support.ts';
import { until } from '../support/until.ts';

describe('the notifications service (embedded adapters)', () => {
  const bus = new InProcessMessageBus();
  const logEntries = 100;
  const replayLog = new MemoryRingReplayLog({ maxEntries: logEntries });
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', SSE_HEARTBEAT_SECONDS: '1', CORS_ORIGINS: '*' });
  let notifications: Notifications;
  let url: string;
  const deadLetters: ReceivedMessage[] = [];

  before(async () => {
    notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
    url = await notifications.start();
    await bus.declareTopology(MESSAGING_TOPOLOGY);
    await bus.consume(deadLetterNames('notifications').queue, {
      prefetch: 10,
      handler: (message) => {
        deadLetters.push(message);
        return outcome.ack();
      },
    });
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });

  test('an SSE client gets `connected`, then each notification named by its type with a log id, once', async () => {
    const client = sseClient(url);
    try {
      await until(() => client.control.length > 0, 'connected');
      const [connected] = client.control;
      assert.equal(connected?.type, 'connected');
      assert.match((connected?.data as { clientId: string }).clientId, /^[\w-]{36}$/);
      const student = randomUUID();
      const message = notificationMessage('StudentCreated', student);
      await bus.publish([message, message, notificationMessage('StudentCached', student, 1)]);
      await until(() => client.received.length >= 2, 'two notifications');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(
        client.received.map((event) => event.type),
        ['StudentCreated', 'StudentCached'],
        'the redelivered copy is not sent again',
      );
      assert.equal(client.received[0]?.data.student.id, student);
      assert.equal(client.received[0]?.data.routingKey, 'student.created');
      assert.match(client.received[0]?.id ?? '', /^\d+-\d+$/);
      // The payload as the relay published it, the whole student included.
      const published = JSON.parse(message.body.toString()) as { data: unknown };
      assert.deepEqual(client.received[0]?.data, published.data);
    } finally {
      client.close();
    }
  });

  test('Last-Event-ID resumes after that id: the missed notifications, then live ones; ?types= filters', async () => {
    const first = sseClient(url);
    await until(() => first.control.length > 0, 'connected');
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(() => first.received.length === 1, 'first');
    const lastId = first.lastEventId;
    first.close();
    const missed = [notificationMessage('StudentUpdated'), notificationMessage('StudentDeleted')];
    await bus.publish(missed);
    await until(async () => (await replayLog.readAfter(lastId ?? '', 10)).length === 2, 'both in the log');

    const resumed = sseClient(url, { lastEventId: lastId });
    // How the test page resumes: EventSource cannot set the header on a new connection.
    const byQuery = sseClient(url, { query: `?lastEventId=${lastId}` });
    // An empty header is no id (WHATWG's EventSource never sends one); the query's still counts.
    const byQueryEmptyHeader = sseClient(url, {
      query: `?lastEventId=${lastId}`,
      headers: { 'Last-Event-ID': '' },
    });
    const deletesOnly = sseClient(url, { lastEventId: lastId, query: '?types=StudentDeleted' });
    try {
      await until(
        () =>
          resumed.received.length >= 2 &&
          byQuery.received.length >= 2 &&
          byQueryEmptyHeader.received.length >= 2 &&
          deletesOnly.received.length >= 1,
        'the missed ones',
      );
      await bus.publish([notificationMessage('StudentCached')]);
      await until(
        () => [resumed, byQuery, byQueryEmptyHeader].every((client) => client.received.length >= 3),
        'the live one',
      );
      for (const client of [resumed, byQuery, byQueryEmptyHeader])
        assert.deepEqual(
          client.received.map((event) => event.type),
          ['StudentUpdated', 'StudentDeleted', 'StudentCached'],
        );
      assert.deepEqual(
        deletesOnly.received.map((event) => event.type),
        ['StudentDeleted'],
      );
    } finally {
      resumed.close();
      byQuery.close();
      byQueryEmptyHeader.close();
      deletesOnly.close();
    }
  });

  test('a malformed or repeated Last-Event-ID is a 400 problem naming Last-Event-ID', async () => {
    for (const [id, query] of [
      ['banana', ''],
      ['1-2-3', ''],
      ['', '?lastEventId=1-0&lastEventId=2-0'],
    ]) {
      const response = await fetch(`${url}/api/notifications/stream${query}`, {
        headers: id ? { 'last-event-id': id } : {},
      });
      assert.equal(response.status, 400);
      assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const body = (await response.json()) as { errors: { field: string }[] };
      assert.equal(body.errors[0]?.field, 'Last-Event-ID');
    }
    // Two header lines, which Node hands on joined by a comma: said to be two, not one malformed id.
    const twice = await exchange(
      new URL(url).port,
      'GET /api/notifications/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\r\nLast-Event-ID: 2-0\r\nConnection: close\r\n\r\n',
    );
    assert.match(twice, /^HTTP\/1\.1 400 /);
    assert.match(twice, /"field":"Last-Event-ID","reason":"must be given once"/);
  });

  test('?types= with a type that does not exist is a 400 naming types and the known ones', async () => {
    const response = await fetch(`${url}/api/notifications/stream?types=StudentCreated,StudentCreatd`);
    assert.equal(response.status, 400);
    const body = (await response.json()) as { errors: { field: string; reason: string }[] };
    assert.equal(body.errors[0]?.field, 'types');
    assert.match(body.errors[0]?.reason ?? '', /StudentDeleted.*not StudentCreatd$/);
  });

  for (const [how, query] of [
    ['repeated', '?types=StudentDeleted&types=StudentCached'],
    // As people write a list: spaces around a type, an empty item.
    [
      'written as a list with spaces and an empty item',
      `?types=${encodeURIComponent('StudentDeleted, StudentCached,')}`,
    ],
  ])
    test(`?types= ${how} means the same as a comma-separated list`, async () => {
      const client = sseClient(url, { query });
      try {
        await until(() => client.control.length > 0 || client.failures.length > 0, 'connected');
        assert.deepEqual(client.failures, [], 'no error status');
        await bus.publish([
          notificationMessage('StudentCreated'),
          notificationMessage('StudentCached'),
          notificationMessage('StudentDeleted'),
        ]);
        await until(() => client.received.length >= 2, 'the two wanted');
        assert.deepEqual(
          client.received.map((event) => event.type),
          ['StudentCached', 'StudentDeleted'],
        );
      } finally {
        client.close();
      }
    });

  /** What the log holds now, oldest first. */
  const held = async () => replayLog.readAfter((await replayLog.retention()).trimmedThrough, 10 * logEntries);

  test('a Last-Event-ID older than the retention window gets `reset`, then all the log still holds, then live ones', async () => {
    const holds = await held();
    assert.ok(holds.length > 0, "the log holds the earlier tests' notifications");
    const client = sseClient(url, { lastEventId: '1-0' });
    try {
      await until(() => client.control.some((event) => event.type === 'reset'), 'reset');
      const reset = client.control.find((event) => event.type === 'reset');
      assert.equal(
        (reset?.data as ResetMessage).oldestId,
        holds[0]?.id,
        'the oldest notification it can still resume from, the first it gets',
      );
      await until(() => client.received.length === holds.length, 'what the log holds');
      assert.deepEqual(
        client.received.map((entry) => entry.id),
        holds.map((entry) => entry.id),
      );
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => client.received.length === holds.length + 1, 'a live one');
    } finally {
      client.close();
    }
  });

  test('a Last-Event-ID at exactly where the log was last trimmed resumes without `reset`: nothing after it is lost', async () => {
    // One more than the ring keeps: the first is trimmed, the rest fill the ring.
    const watcher = sseClient(url);
    let resumed: ReturnType<typeof sseClient> | undefined;
    try {
      await until(() => watcher.control.length === 1, 'connected');
      await bus.publish(Array.from({ length: logEntries + 1 }, () => notificationMessage('StudentUpdated')));
      await until(() => watcher.received.length === logEntries + 1, 'every notification appended');
      const { trimmedThrough } = await replayLog.retention();
      assert.equal(trimmedThrough, watcher.received[0]?.id, 'the first one was trimmed');

      const client = (resumed = sseClient(url, { lastEventId: trimmedThrough }));
      await until(() => client.received.length === logEntries, 'what the log holds after it');
      assert.deepEqual(
        client.control.map((event) => event.type),
        ['connected'],
      );
      assert.deepEqual(
        client.received.map((entry) => entry.id),
        watcher.received.slice(1).map((entry) => entry.id),
      );
    } finally {
      watcher.close();
      resumed?.close();
    }
  });

  test('a Last-Event-ID newer than every entry (from a log that was lost) gets `reset` too, not an error', async () => {
    // An error status would end EventSource's reconnecting for good.
    const holds = await held();
    const client = sseClient(url, { lastEventId: `${Date.now() + 3_600_000}-0` });
    try {
      await until(() => client.control.some((event) => event.type === 'reset'), 'reset');
      const reset = client.control.find((event) => event.type === 'reset');
      assert.equal((reset?.data as { reason: string }).reason, 'Last-Event-ID is not in the replay log');
      assert.deepEqual(client.failures, []);
      // Its ids came from another log: every entry of this one is news to it.
      await until(() => client.received.length === holds.length, 'what the log holds');
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => client.received.length === holds.length + 1, 'a live one');
    } finally {
      client.close();
    }
  });

  test('the alias path streams too, with CORS for any origin and heartbeat comments', async () => {
    const controller = new AbortController();
    const response = await fetch(`${url}/api/notifications/students/stream`, {
      headers: { origin: 'http://elsewhere.example' },
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    // Neither a cache nor a buffering proxy (nginx) may hold events back.
    assert.equal(response.headers.get('cache-control'), 'no-cache, no-transform');
    assert.equal(response.headers.get('x-accel-buffering'), 'no');
    // Ended by closing the connection, not framed chunk by chunk: one write per event and client.
    assert.equal(response.headers.get('transfer-encoding'), null);
    const reader = response.body!.getReader();
    let text = '';
    while (!text.includes(': heartbeat')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
  });

  test("HEAD on the stream answers the GET's headers and completes, without opening a stream", async () => {
    const response = await fetch(`${url}/api/notifications/stream`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const health = (await (await fetch(`${url}/health`)).json()) as HealthBody;
    assert.equal(checkNamed<{ sse: number }>(health, 'clients')?.data.sse, 0);
  });

  test("a client that drops before its first notification resumes from `connected`'s id: it misses nothing", async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(url).port));
    const client = sseClient(`http://127.0.0.1:${proxy.port}`);
    try {
      await until(() => client.control.length > 0, 'connected');
      assert.equal(client.control[0]?.id, (await replayLog.retention()).lastId);
      proxy.hold();
      const student = randomUUID();
      await bus.publish([notificationMessage('StudentCreated', student)]);
      await until(() => client.failures.length > 0, 'the client noticing the drop');
      proxy.release();
      await client.arrived('StudentCreated', student);
    } finally {
      client.close();
      await proxy.stop();
    }
  });

  test("entries a ?types= filter skips move the client's id on: after they leave the log, it resumes without `reset`", async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(url).port));
    const client = sseClient(`http://127.0.0.1:${proxy.port}`, { query: '?types=StudentDeleted' });
    try {
      await until(() => client.control.length > 0, 'connected');
      await bus.publish([notificationMessage('StudentDeleted')]);
      await until(() => client.received.length === 1, 'a wanted one');
      // More than the log keeps, none of them wanted; then a heartbeat.
      const { lastId } = await replayLog.retention();
      await bus.publish(Array.from({ length: logEntries + 10 }, () => notificationMessage('StudentCreated')));
      await until(
        async () => compareLogIds((await replayLog.retention()).trimmedThrough, lastId) > 0,
        'the wanted one trimmed',
      );
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      proxy.hold();
      await bus.publish([notificationMessage('StudentDeleted')]);
      await until(() => client.failures.length > 0, 'the client noticing the drop');
      proxy.release();
      await until(() => client.received.length === 2, 'the one sent while it was away');
      assert.deepEqual(
        client.control.map((event) => event.type),
        ['connected', 'connected'],
      );
    } finally {
      client.close();
      await proxy.stop();
    }
  });

  test('a ?types= client resuming after a heartbeat does not get its last notification again: a skipped entry before it never moves its id back', async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(url).port));
    const client = sseClient(`http://127.0.0.1:${proxy.port}`, { query: '?types=StudentDeleted' });
    try {
      await until(() => client.control.length > 0, 'connected');
      const [deleted, later] = [randomUUID(), randomUUID()];
      // An unwanted entry, then a wanted one; then a heartbeat (every second here).
      await bus.publish([
        notificationMessage('StudentCreated'),
        notificationMessage('StudentDeleted', deleted),
      ]);
      await client.arrived('StudentDeleted', deleted);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      proxy.hold();
      await until(() => client.failures.length > 0, 'the client noticing the drop');
      proxy.release();
      await until(
        () => client.control.filter((event) => event.type === 'connected').length === 2,
        'connected again',
      );
      await bus.publish([notificationMessage('StudentDeleted', later)]);
      await client.arrived('StudentDeleted', later);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(
        client.received.map((event) => event.data.student.id),
        [deleted, later],
        'each once',
      );
    } finally {
      client.close();
      await proxy.stop();
    }
  });

  test('a message that is not a notification CloudEvent is dead-lettered with the reason, and counted', async () => {
    const deadLettered = async () =>
      parseExposition(await (await fetch(`${url}/metrics`)).text()).sum('notifications_appended_total', {
        outcome: 'dead_lettered',
      });
    const before = await deadLettered();
    await bus.publish([
      {
        exchange: Exchanges.notifications,
        routingKey: 'student.created',
        messageId: randomUUID(),
        body: '{"x":1}',
      },
    ]);
    await until(() => deadLetters.length === 1, 'the dead letter');
    assert.match(deadLetters[0]?.headers['x-death-reason'] ?? '', /not a notification CloudEvent/);
    assert.equal(await deadLettered(), before + 1);
  });

  test('a notification whose envelope contradicts its data is dead-lettered, not sent under the wrong type or student', async () => {
    const client = sseClient(url);
    const before = deadLetters.length;
    try {
      await until(() => client.control.length > 0, 'connected');
      const retyped = notificationMessage('StudentCreated');
      const wrongType = JSON.parse(retyped.body.toString()) as Record<string, unknown>;
      wrongType.type = 'StudentDeleted';
      const moved = notificationMessage('StudentUpdated');
      const wrongSubject = JSON.parse(moved.body.toString()) as Record<string, unknown>;
      wrongSubject.subject = randomUUID();
      await bus.publish([
        { ...retyped, body: JSON.stringify(wrongType) },
        { ...moved, body: JSON.stringify(wrongSubject) },
      ]);
      await until(() => deadLetters.length === before + 2, 'both dead-lettered');
      assert.deepEqual(
        deadLetters
          .slice(before)
          .map((message) => message.headers['x-death-reason'])
          .sort(),
        [
          'not a notification CloudEvent: subject: subject must be the id of data.student',
          'not a notification CloudEvent: type: type must equal data.eventType',
        ],
      );
      assert.deepEqual(client.received, [], 'neither reached the client');
    } finally {
      client.close();
    }
  });

  test('a notification missing what every CloudEvent on our broker carries is dead-lettered, as the worker does', async () => {
    const client = sseClient(url);
    const before = deadLetters.length;
    try {
      await until(() => client.control.length > 0, 'connected');
      const broken = (change: (event: Record<string, unknown>) => void) => {
        const message = notificationMessage('StudentCreated');
        const event = JSON.parse(message.body.toString()) as Record<string, unknown>;
        change(event);
        return { ...message, body: JSON.stringify(event) };
      };
      await bus.publish([
        broken((event) => delete event.source),
        broken((event) => delete event.time),
        // The id keys the replay log's duplicate check in Redis.
        broken((event) => (event.id = 'i'.repeat(257))),
      ]);
      await until(() => deadLetters.length === before + 3, 'all three dead-lettered');
      const reasons = deadLetters.slice(before).map((message) => message.headers['x-death-reason'] ?? '');
      assert.deepEqual(
        reasons.map((reason) => /not a notification CloudEvent: (\w+):/.exec(reason)?.[1]).sort(),
        ['id', 'source', 'time'],
      );
      assert.deepEqual(client.received, [], 'none reached the client');
    } finally {
      client.close();
    }
  });

  test('/metrics counts notifications appended (a redelivery as duplicate), their queue age, and pushes to connected clients only', async () => {
    const metrics = async () => parseExposition(await (await fetch(`${url}/metrics`)).text());
    const clients = async (transport: string) =>
      (await metrics()).value('notifications_connected_clients', { transport });
    await until(
      async () => (await clients('sse')) === 0 && (await clients('signalr_websockets')) === 0,
      'the clients of earlier tests gone',
    );
    const before = await metrics();
    const message = notificationMessage('StudentCreated');
    await bus.publish([message, message]);
    const moved = async (name: string, labels: Record<string, string>) =>
      (await metrics()).sum(name, labels) - before.sum(name, labels);
    await until(
      async () => (await moved('notifications_appended_total', { outcome: 'duplicate' })) === 1,
      'the redelivery taken from the queue',
    );
    const client = sseClient(url);
    try {
      await until(() => client.control.length > 0, 'connected');
      assert.equal(await clients('sse'), 1);
      await bus.publish([notificationMessage('StudentUpdated')]);
      await until(() => client.received.length === 1, 'the notification');
      assert.equal(await moved('notifications_appended_total', { outcome: 'appended' }), 2);
      assert.equal(await moved('message_age_seconds_count', { queue: 'notifications' }), 3);
      assert.equal(
        await moved('notifications_delivered_total', { transport: 'sse' }),
        1,
        'the one pushed while an SSE client was connected',
      );
      assert.equal(
        await moved('notifications_delivered_total', { transport: 'signalr' }),
        0,
        'no hub connection',
      );
    } finally {
      client.close();
    }
  });

  test('a SignalR client gets Connected, notifications of group Students, and can follow one student', async () => {
    const client = await hubClient(url);
    try {
      await until(() => client.connected.length === 1, 'Connected');
      const student = randomUUID();
      await client.connection.invoke('JoinGroup', `student:${student}`);
      await bus.publish([notificationMessage('StudentCreated', student)]);
      await until(() => client.received.length === 1, 'the notification');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(client.received.length, 1, 'once, although in two targeted groups');
      await client.connection.invoke('LeaveGroup', 'Students');
      await bus.publish([
        notificationMessage('StudentUpdated'),
        notificationMessage('StudentDeleted', student),
      ]);
      await until(() => client.received.length === 2, 'the followed student');
      assert.equal(client.received[1]?.type, 'StudentDeleted');
      const health = (await (await fetch(`${url}/health`)).json()) as HealthBody;
      const clients = checkNamed<{ signalr: { connections: number } }>(health, 'clients');
      assert.equal(clients?.data.signalr.connections, 1);
    } finally {
      await client.close();
    }
  });

  test('a student followed by its id in upper case is the same student, as in the REST API', async () => {
    const client = await hubClient(url);
    try {
      await until(() => client.connected.length === 1, 'Connected');
      await client.connection.invoke('LeaveGroup', 'Students');
      const student = randomUUID();
      await client.connection.invoke('JoinGroup', `student:${student.toUpperCase()}`);
      await bus.publish([notificationMessage('StudentUpdated', student)]);
      await until(() => client.received.length === 1, 'the followed student, named in upper case');
      await client.connection.invoke('LeaveGroup', `student:${student.toUpperCase()}`);
      await client.connection.invoke('JoinGroup', 'Students');
      await bus.publish([notificationMessage('StudentDeleted', student)]);
      await until(() => client.received.length === 2, 'the next one, through group Students');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(client.received.length, 2, 'left: not through its own group too');
    } finally {
      await client.close();
    }
  });

  test('JoinGroup and LeaveGroup refuse a group name that is not a string; the connection stays usable', async () => {
    const client = await hubClient(url);
    try {
      for (const name of [42, null, { toString: 'Students' }, ['Students']])
        for (const method of ['JoinGroup', 'LeaveGroup'])
          await assert.rejects(client.connection.invoke(method, name), /The group name must be a string/);
      await client.connection.invoke('JoinGroup', 'Students');
    } finally {
      await client.close();
    }
  });

  test('a connection joins at most 100 groups (Students included), each named in at most 200 characters', async () => {
    const client = await hubClient(url);
    try {
      await assert.rejects(
        client.connection.invoke('JoinGroup', 'g'.repeat(201)),
        /The group name must be at most 200 characters/,
      );
      await client.connection.invoke('JoinGroup', 'g'.repeat(200));
      for (let i = 2; i < 100; i++) await client.connection.invoke('JoinGroup', `group-${i}`);
      await assert.rejects(
        client.connection.invoke('JoinGroup', 'one-too-many'),
        /A connection may be in at most 100 groups/,
      );
      await client.connection.invoke('JoinGroup', 'group-2'); // already a member: no new group
      await client.connection.invoke('LeaveGroup', 'group-2');
      await client.connection.invoke('JoinGroup', 'one-too-many');
    } finally {
      await client.close();
    }
  });
});

describe('the notifications service just restarted (a new, empty memory log)', () => {
  let bus: InProcessMessageBus;
  let replayLog: MemoryRingReplayLog;
  let notifications: Notifications;
  let url: string;
  beforeEach(async () => {
    bus = new InProcessMessageBus();
    replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
    const config = parseConfig({ NOTIFICATIONS_PORT: '0' });
    notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
    url = await notifications.start();
    await bus.declareTopology(MESSAGING_TOPOLOGY);
  });
  afterEach(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });
  /** A client whose last id came from the log before the restart. */
  const fromBeforeTheRestart = () => sseClient(url, { lastEventId: `${Date.now() - 60_000}-0` });

  test('a client resuming from before the restart gets `reset`, then every notification the new log took before it came back', async () => {
    const watcher = sseClient(url);
    try {
      // The events the restart sent again, notified while the client was still reconnecting.
      await until(() => watcher.control.length > 0, 'connected');
      await bus.publish(Array.from({ length: 5 }, () => notificationMessage('StudentCreated')));
      await until(() => watcher.received.length === 5, 'appended');
      const resuming = fromBeforeTheRestart();
      try {
        await until(() => resuming.received.length === 5, 'what it missed since the restart');
        assert.deepEqual(
          resuming.control.map((event) => event.type),
          ['connected', 'reset'],
        );
        assert.deepEqual(
          resuming.received.map((entry) => entry.id),
          watcher.received.map((entry) => entry.id),
        );
      } finally {
        resuming.close();
      }
    } finally {
      watcher.close();
    }
  });

  test('a client resuming from before the restart gets one `reset`; resuming from its id, no other', async () => {
    const resuming = fromBeforeTheRestart();
    await until(() => resuming.control.some((event) => event.type === 'reset'), 'reset');
    const resetId = resuming.control.find((event) => event.type === 'reset')?.id;
    resuming.close();
    assert.ok(resetId, 'the reset carries the id to resume from');
    // What EventSource sends on its next reconnect, before any notification arrived.
    const again = sseClient(url, { lastEventId: resetId });
    try {
      await until(() => again.control.some((event) => event.type === 'connected'), 'connected');
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => again.received.length === 1, 'the live one');
      assert.deepEqual(
        again.control.map((event) => event.type),
        ['connected'],
      );
    } finally {
      again.close();
    }
  });
});

describe('the notifications service restarting on its port', () => {
  test("a ?types= client's id moves past the entries it skipped when the server closes: it resumes on the next one without `reset`", async () => {
    const bus = new InProcessMessageBus();
    const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
    const start = async (port: string) => {
      // No heartbeat during the test: only the close moves the client's id on.
      const config = parseConfig({ NOTIFICATIONS_PORT: port, SSE_HEARTBEAT_SECONDS: '3600' });
      const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
      return { notifications, url: await notifications.start() };
    };
    const first = await start('0');
    await bus.declareTopology(MESSAGING_TOPOLOGY);
    let second: Notifications | undefined;
    const client = sseClient(first.url, { query: '?types=StudentDeleted' });
    try {
      await until(() => client.control.length > 0, 'connected');
      await bus.publish([notificationMessage('StudentDeleted')]);
      await until(() => client.received.length === 1, 'a wanted one');
      // More than the log keeps, none of them wanted: the wanted one leaves the log.
      const { lastId } = await replayLog.retention();
      await bus.publish(Array.from({ length: 110 }, () => notificationMessage('StudentCreated')));
      await until(
        async () => compareLogIds((await replayLog.retention()).trimmedThrough, lastId) > 0,
        'the wanted one trimmed',
      );
      await first.notifications.stop();
      second = (await start(new URL(first.url).port)).notifications;
      await until(
        () => client.control.filter((event) => event.type === 'connected').length === 2,
        'connected to the next server',
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(
        client.control.map((event) => event.type),
        ['connected', 'connected'],
      );
    } finally {
      client.close();
      await first.notifications.stop();
      await second?.stop();
      await bus.close();
      await replayLog.close();
    }
  });
});

/** A memory ring that runs `beforeRead` before each page a catch-up reads. */
class HookedReadLog extends MemoryRingReplayLog {
  reads = 0;
  beforeRead: (read: number) => Promise<void> = async () => undefined;

  override async readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]> {
    await this.beforeRead(++this.reads);
    return super.readAfter(afterId, limit);
  }
}

/** A raw stream (EventSource hides the `id:` of events nobody listens to): what arrives, and whether it ended. */
function rawStream(url: string, lastEventId: string) {
  const result = { body: '', ended: false };
  const request = get(url, { headers: { 'last-event-id': lastEventId } }, (response) => {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (result.body += chunk));
    response.on('end', () => (result.ended = true));
  });
  request.on('error', () => undefined);
  return { result, request };
}

describe('a ?types= client whose catch-up the log trims past', () => {
  test("the entries its filter skipped before the `reset` never move its id back behind the reset's", async () => {
    const bus = new InProcessMessageBus();
    const replayLog = new HookedReadLog({ maxEntries: 600 });
    // No heartbeat during the test: the close sends the id of what the filter skipped.
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', SSE_HEARTBEAT_SECONDS: '3600' });
    const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
    const url = await notifications.start();
    await bus.declareTopology(MESSAGING_TOPOLOGY);
    const unwanted = (count: number) =>
      Array.from({ length: count }, () => notificationMessage('StudentCreated'));
    let stream: ReturnType<typeof rawStream> | undefined;
    try {
      const empty = await replayLog.retention();
      const from = laterLogId(empty.lastId, empty.trimmedThrough);
      // More than a page (500) of entries the client does not want.
      await bus.publish(unwanted(550));
      await until(async () => (await replayLog.retention()).length === 550, 'the backlog in the log');
      // While the client's second page is read, the log trims past the first.
      replayLog.beforeRead = async (read) => {
        if (read !== 2) return;
        const { lastId } = await replayLog.retention();
        await bus.publish(unwanted(600));
        await until(
          async () => compareLogIds((await replayLog.retention()).trimmedThrough, lastId) >= 0,
          'the backlog trimmed',
        );
      };
      stream = rawStream(`${url}/api/notifications/stream?types=StudentDeleted`, from);
      const { result } = stream;
      await until(() => result.body.includes('event: reset'), 'reset');
      await notifications.stop();
      await until(() => result.ended, 'the stream ended');
      const resetId = /^id: (.+)\nevent: reset$/m.exec(result.body)?.[1];
      assert.ok(resetId, 'the reset carries the id to resume from');
      const ids = [...result.body.matchAll(/^id: (.+)$/gm)].map(([, id]) => id);
      // An older one would be a Last-Event-ID older than the log: a second `reset` at the reconnect.
      assert.equal(ids.at(-1), resetId, "the client's last id is the reset's");
    } finally {
      stream?.request.destroy();
      await notifications.stop();
      await bus.close();
      await replayLog.close();
    }
  });
});
