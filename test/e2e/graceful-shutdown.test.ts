// `npm start`'s process (every role, embedded) on SIGTERM: clients are told to come back, and it exits 0.
import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { test } from 'node:test';
import { HttpTransportType, HubConnectionBuilder, LogLevel } from '@microsoft/signalr';
import { startAllRoles } from '../support/all-roles.ts';
import { until } from '../support/until.ts';

const SHUTDOWN_TIMEOUT_MS = 15_000;

/** A raw SSE stream, to see every field the server sends (EventSource hides `retry:`) and whether it ended. */
function openStream(url: string) {
  let text = '';
  let connected!: () => void;
  const isConnected = new Promise<void>((resolve) => (connected = resolve));
  const ended = new Promise<'ended' | 'aborted'>((resolve, reject) => {
    get(url, (response: IncomingMessage) => {
      assert.equal(response.statusCode, 200);
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
        if (text.includes('event: connected')) connected();
      });
      response.on('end', () => resolve('ended'));
      response.on('aborted', () => resolve('aborted'));
    }).on('error', reject);
  });
  return { isConnected, ended, text: () => text };
}

test('SIGTERM: SSE streams end with a retry hint, hub clients get Close with allowReconnect, exit code 0', async () => {
  const allRoles = startAllRoles({ SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) });
  const { pages } = await allRoles.ready;
  const stream = openStream(`${pages}/api/notifications/stream`);
  const hub = new HubConnectionBuilder()
    .withUrl(`${pages}/hubs/notifications`, { transport: HttpTransportType.WebSockets })
    .withAutomaticReconnect([60_000])
    .configureLogging(LogLevel.None)
    .build();
  const connected = new Promise<void>((resolve) => hub.on('Connected', () => resolve()));
  // Reconnecting, not closed for good: the Close message carried allowReconnect.
  const outcome = new Promise<string>((resolve) => {
    hub.onreconnecting((error) => resolve(`reconnecting: ${error?.message}`));
    hub.onclose((error) => resolve(`closed: ${error?.message}`));
  });
  try {
    await hub.start();
    await Promise.all([stream.isConnected, connected]);

    allRoles.child.kill('SIGTERM');

    // close-with-grace exits 1 when stopping takes longer than SHUTDOWN_TIMEOUT_MS: 0 means it drained in time.
    assert.equal(await allRoles.exited, 0, allRoles.output());
    assert.equal(await stream.ended, 'ended');
    assert.match(stream.text(), /\nretry: \d+\n\n$/, 'the last thing on the stream is the reconnect delay');
    assert.equal(await outcome, 'reconnecting: Server returned an error on close: Server is shutting down.');
    assert.match(allRoles.output(), /"msg":"stopped"/);
  } finally {
    await hub.stop();
    if (allRoles.child.exitCode === null) allRoles.child.kill('SIGKILL');
  }
});

/** A POST whose head is sent and whose body is not: in flight until `finish()` sends the body. */
function requestInFlight(api: string) {
  const { hostname, port } = new URL(api);
  let answer = '';
  const socket = connect(Number(port), hostname, () =>
    socket.write(
      `POST /api/students HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{`,
    ),
  );
  socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  return { finish: () => socket.write('}'), closed, answer: () => answer };
}

test('SIGTERM: the stopped line says what the stop cut off and how long it took', async () => {
  // Requests in flight wait SHUTDOWN_TIMEOUT_MS / 2 before they are cut off.
  const allRoles = startAllRoles({ SHUTDOWN_TIMEOUT_MS: '6000' });
  const { api, pages } = await allRoles.ready;
  const streams = [1, 2].map(() => openStream(`${pages}/api/notifications/stream`));
  const hub = new HubConnectionBuilder()
    .withUrl(`${pages}/hubs/notifications`, { transport: HttpTransportType.WebSockets })
    .configureLogging(LogLevel.None)
    .build();
  const hubConnected = new Promise<void>((resolve) => hub.on('Connected', () => resolve()));
  const answered = requestInFlight(api);
  const cutOff = requestInFlight(api);
  try {
    await hub.start();
    await Promise.all([...streams.map((stream) => stream.isConnected), hubConnected]);
    // Both heads have reached the server: a request sent on a connection after them is answered first.
    assert.equal((await fetch(`${api}/health`)).ok, true);

    allRoles.child.kill('SIGTERM');
    await until(() => allRoles.output().includes('"msg":"stopping"'), 'the stop began');
    answered.finish();

    assert.equal(await allRoles.exited, 0, allRoles.output());
    await Promise.all([answered.closed, cutOff.closed]);
    assert.match(answered.answer(), /^HTTP\/1\.1 201 /);
    assert.equal(cutOff.answer(), '');
    const stopped = logLine(allRoles.output(), 'stopped');
    assert.deepEqual(stopped.webapi, { requestsInFlight: 2, requestsAnswered: 1 });
    assert.deepEqual(stopped.notifications, {
      sseStreamsEnded: 2,
      hubConnectionsClosed: 1,
      messagesReturned: 0,
    });
    assert.deepEqual(stopped.worker, { messagesReturned: 0 });
    assert.equal(typeof stopped.outboxUnsent, 'number');
    assert.ok(typeof stopped.durationMs === 'number' && stopped.durationMs >= 2_500, `${stopped.durationMs}`);
  } finally {
    await hub.stop();
    if (allRoles.child.exitCode === null) allRoles.child.kill('SIGKILL');
  }
});

function logLine(output: string, msg: string): Record<string, unknown> {
  const line = output.split('\n').find((text) => text.includes(`"msg":"${msg}"`));
  assert.ok(line, `no "${msg}" line in:\n${output}`);
  return JSON.parse(line) as Record<string, unknown>;
}
