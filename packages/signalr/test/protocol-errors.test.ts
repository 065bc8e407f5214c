import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { decode } from '@msgpack/msgpack';
import { WebSocket } from 'ws';
import { defineHub } from '../src/index.ts';
import {
  buildClient,
  delay,
  eventually,
  RawClient,
  type RunningHub,
  startHub,
  testHub,
  within,
} from './helpers.ts';

let running: RunningHub;
/** A healthy client that must keep working while others misbehave. */
let bystander: RawClient;

before(async () => {
  running = await startHub({ maxMessageSize: 1024, clientTimeoutMs: 400 });
  bystander = await RawClient.handshaken(running.url);
});
after(async () => {
  // Proves the server kept serving everyone else through every failure below.
  bystander.send({ type: 1, invocationId: 'still-here', target: 'Add', arguments: [1, 1] });
  assert.deepEqual(await bystander.next((r) => r.invocationId === 'still-here'), {
    type: 3,
    invocationId: 'still-here',
    result: 2,
  });
  bystander.close();
  await running.close();
});

const isClose = (record: Record<string, unknown>): boolean => record.type === 7;

async function expectClosedWith(client: RawClient, error: string): Promise<void> {
  assert.deepEqual(await client.next(isClose), { type: 7, error });
  assert.equal(await client.closed, 1011, 'a WebSocket ended by an error closes with 1011');
}

test('a malformed frame closes that connection with a Close message and a reason', async () => {
  const client = await RawClient.handshaken(running.url);
  client.ws.send('{"type":1,"target":\u001e');
  await expectClosedWith(client, 'Invalid payload: a message is not valid JSON.');
});

test('an unknown message type closes that connection with a reason', async () => {
  const client = await RawClient.handshaken(running.url);
  client.send({ type: 42 });
  await expectClosedWith(client, "Unknown message type '42'.");
});

test('an invocation without a target closes the connection with a reason', async () => {
  const client = await RawClient.handshaken(running.url);
  client.send({ type: 1, arguments: [] });
  await expectClosedWith(client, "Invalid payload for message type 1: 'target' must be a non-empty string.");
});

test('a message over the size limit closes the connection, even before its separator arrives', async () => {
  const client = await RawClient.handshaken(running.url);
  client.send({ type: 1, target: 'Echo', arguments: ['x'.repeat(2000)] });
  await expectClosedWith(client, 'The maximum message size of 1024B was exceeded.');

  const partial = await RawClient.handshaken(running.url);
  partial.ws.send('{"type":1,"target":"Echo","arguments":["' + 'y'.repeat(2000));
  await expectClosedWith(partial, 'The maximum message size of 1024B was exceeded.');
});

test('the official client sees an oversized invoke close its connection with the server error', async () => {
  const client = buildClient(running.url);
  const closed = new Promise<Error | undefined>((resolve) => client.onclose(resolve));
  await client.start();
  void client.invoke('Echo', 'z'.repeat(4096)).catch(() => undefined);
  const error = await closed;
  assert.equal(
    error?.message,
    'Server returned an error on close: The maximum message size of 1024B was exceeded.',
  );
});

test('a frame of megabytes is still judged by the hub: a final Close with the reason, not a bare 1009 that reconnects', async () => {
  const client = buildClient(running.url, { reconnectDelays: [0] });
  const events: string[] = [];
  client.onreconnecting((error) => events.push(`reconnecting: ${error?.message}`));
  client.onclose((error) => events.push(`closed: ${error?.message}`));
  await client.start();
  void client.invoke('Echo', 'z'.repeat(2_000_000)).catch(() => undefined);
  await eventually(() => events.length > 0);
  assert.deepEqual(events, [
    'closed: Server returned an error on close: The maximum message size of 1024B was exceeded.',
  ]);
  await client.stop();
});

test('a message over 2 MiB is refused as it arrives (1009): one socket cannot make the server hold more', async () => {
  const client = await RawClient.handshaken(running.url);
  client.ws.send('x'.repeat(2 * 1024 * 1024 + 1));
  assert.equal(await client.closed, 1009);
});

for (const [handshake, error] of [
  [{ protocol: 'xml', version: 1 }, "The protocol 'xml' is not supported."],
  [{ protocol: 'json', version: 3 }, "The server does not support version 3 of the 'json' protocol."],
  [{ version: 1 }, 'Handshake request must have a protocol name and an integer version.'],
] as const) {
  test(`a bad handshake (${JSON.stringify(handshake)}) gets a handshake error and a close`, async () => {
    const client = await RawClient.connect(running.url);
    client.send(handshake);
    assert.deepEqual(await client.next(() => true), { error });
    assert.equal(await client.closed, 1000);
  });
}

test('a handshake that never comes is canceled after the handshake timeout', async () => {
  const client = await RawClient.connect(running.url);
  assert.deepEqual(await client.next(() => true), { error: 'Handshake was canceled.' });
  await client.closed;
});

test('several messages in one frame are all handled, and send() without an id gets no Completion', async () => {
  const client = await RawClient.handshaken(running.url);
  client.send(
    { type: 1, target: 'SendToCaller', arguments: ['fire-and-forget'] },
    { type: 1, invocationId: 'a', target: 'Add', arguments: [1, 2] },
    { type: 1, invocationId: 'b', target: 'Echo', arguments: ['two'] },
  );
  await client.next((r) => r.invocationId === 'b');
  await delay(100);
  const replies = client.records.filter((r) => r.type !== undefined && r.type !== 6);
  assert.equal(replies[0]?.target, 'Connected');
  assert.deepEqual(replies.slice(1), [
    { type: 1, target: 'notify', arguments: ['fire-and-forget'] },
    { type: 3, invocationId: 'a', result: 3 },
    { type: 3, invocationId: 'b', result: 'two' },
  ]);
  client.close();
});

test('the server pings an idle client and closes one that stops pinging after the client timeout', async () => {
  const client = await RawClient.handshaken(running.url);
  await client.next((r) => r.type === 6);
  client.send({ type: 6 });
  assert.deepEqual(await client.next(isClose), {
    type: 7,
    error: 'Connection closed with an error.',
    allowReconnect: true,
  });
  await client.closed;
});

test('MessagePack: a malformed body and an unknown type close the connection with a binary Close', async () => {
  for (const [body, error] of [
    [Buffer.from([0x02, 0xc1, 0xc1]), 'Invalid payload: a message is not valid MessagePack.'],
    [Buffer.from([0x02, 0x91, 0x2a]), "Unknown message type '42'."],
  ] as const) {
    const ws = new WebSocket(running.url.replace(/^http/, 'ws'));
    await once(ws, 'open');
    const frames: Buffer[] = [];
    ws.on('message', (data: Buffer) => frames.push(data));
    const closed = once(ws, 'close');
    ws.send('{"protocol":"messagepack","version":1}\u001e');
    await eventually(() => frames.length > 0);
    assert.deepEqual(frames[0], Buffer.from('{}\u001e'));
    ws.send(body);
    await closed;
    const close = frames
      .slice(1)
      .map((frame) => decode(frame.subarray(1)) as unknown[])
      .find((m) => m[0] === 7);
    assert.deepEqual(close, [7, error, false]);
  }
});

test('a handshake that grows past the message size limit without its separator is refused at once, not left to grow', async () => {
  const running = await startHub({ maxMessageSize: 1024, handshakeTimeoutMs: 60_000 });
  try {
    const client = await RawClient.connect(running.url);
    client.ws.send(`{"protocol":"json","version":1,"padding":"${'x'.repeat(2000)}`);
    assert.deepEqual(await client.next(() => true), {
      error: 'The handshake request exceeds the maximum message size.',
    });
    await client.closed;
  } finally {
    await running.close();
  }
});

test('the size limit is exact: a message of the limit is handled, one byte more closes the connection', async () => {
  const empty = JSON.stringify({ type: 1, invocationId: 'edge', target: 'Echo', arguments: [''] });
  const echoOfSize = (bytes: number): { record: string; text: string } => {
    const text = 'x'.repeat(bytes - empty.length);
    return { record: empty.replace('[""]', JSON.stringify([text])) + '\u001e', text };
  };
  const client = await RawClient.handshaken(running.url);
  const largest = echoOfSize(1024);
  client.ws.send(largest.record);
  assert.equal((await client.next((r) => r.invocationId === 'edge')).result, largest.text);
  client.ws.send(echoOfSize(1025).record);
  await expectClosedWith(client, 'The maximum message size of 1024B was exceeded.');
});

test('nothing a client sends after its Close message is handled, even in the same frame', async () => {
  const member = await RawClient.handshaken(running.url);
  member.send({ type: 1, invocationId: 'join', target: 'JoinGroup', arguments: ['after-close'] });
  await member.next((r) => r.invocationId === 'join');
  const leaving = await RawClient.handshaken(running.url);
  leaving.send({ type: 7 }, { type: 1, target: 'SendToGroup', arguments: ['after-close', 'too late'] });
  await leaving.closed;
  await delay(200);
  assert.equal(
    member.records.find((r) => r.target === 'notify'),
    undefined,
  );
  member.close();
});

test('a client silent while its call runs is timed out, as in ASP.NET (a call with its slot does not hold the reading); one that pings is not', async () => {
  let askedClient!: Promise<unknown>;
  const slow = await startHub({
    clientTimeoutMs: 300,
    hub: defineHub({
      ...testHub,
      methods: {
        ...testHub.methods,
        TakesLonger: async () => {
          await delay(1_000);
          return 'done';
        },
        // Awaits a client result the silent client never sends.
        AsksTheCaller: async (context) => {
          askedClient = context.clients.caller.invoke('Answer');
          return askedClient;
        },
      },
    }),
  });
  try {
    const pinging = await RawClient.handshaken(slow.url);
    pinging.send({ type: 6 }, { type: 1, invocationId: 'long', target: 'TakesLonger', arguments: [] });
    const pings = setInterval(() => pinging.send({ type: 6 }), 100);
    try {
      assert.equal((await pinging.next((r) => r.invocationId === 'long')).result, 'done');
    } finally {
      clearInterval(pings);
    }
    assert.equal(pinging.records.find(isClose), undefined, 'a client that pings is not closed');
    pinging.close();

    for (const target of ['TakesLonger', 'AsksTheCaller']) {
      const silent = await RawClient.handshaken(slow.url);
      silent.send({ type: 6 }, { type: 1, invocationId: 'call', target, arguments: [] });
      // Closed while the call still runs: before TakesLonger's second is up, and AsksTheCaller's answer never comes.
      assert.deepEqual(
        await within(
          silent.next((r) => isClose(r) || r.invocationId === 'call'),
          900,
        ),
        { type: 7, error: 'Connection closed with an error.', allowReconnect: true },
        target,
      );
      silent.close();
    }
    await assert.rejects(askedClient, /connection ended/, 'the client result it awaited is given up');
  } finally {
    await slow.close();
  }
});
