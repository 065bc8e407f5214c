// `npm start`'s process (every role, embedded) on SIGTERM: clients are told to come back, and it exits 0.
import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { HttpTransportType, HubConnectionBuilder, LogLevel } from '@microsoft/signalr';
import { startAllRoles } from '../support/all-roles.ts';

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
