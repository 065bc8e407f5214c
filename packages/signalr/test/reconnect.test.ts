import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
import { WebSocket } from 'ws';
import { defineHub } from '../src/index.ts';
import {
  afterServerClose,
  buildClient,
  delay,
  eventually,
  nextInvocation,
  RawClient,
  type RunningHub,
  startHub,
  within,
} from './helpers.ts';

for (const protocol of ['json', 'messagepack'] as const) {
  test(`stateful reconnect (${protocol}): after the server-side socket drops, messages sent meanwhile arrive in order, once, on the same connection`, async () => {
    const running = await startHub();
    const client = buildClient(running.url, { stateful: true, protocol, reconnectDelays: [0] });
    const received: number[] = [];
    client.on('notify', (value: number) => received.push(value));
    let reconnecting = false;
    client.onreconnecting(() => (reconnecting = true));
    await client.start();
    try {
      const connectionId = client.connectionId;
      await client.invoke('JoinGroup', 'g');
      for (let i = 0; i < 5; i++) await running.hub.clients.group('g').send('notify', i);
      await eventually(() => received.length === 5);

      assert.equal(running.upgradedSockets.length, 1);
      running.upgradedSockets[0]!.destroy();
      for (let i = 5; i < 10; i++) await running.hub.clients.group('g').send('notify', i);
      const echoed = client.invoke('Echo', 'sent during the outage');

      assert.equal(await echoed, 'sent during the outage');
      await eventually(() => received.length >= 10);
      await delay(300);
      assert.deepEqual(received, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal(running.upgradedSockets.length, 2, 'the client came back on a new socket');
      assert.equal(client.connectionId, connectionId);
      assert.equal(reconnecting, false, 'a resume is invisible to the app');
      await running.hub.clients.group('g').send('notify', 10);
      await eventually(() => received.length === 11);
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

test('a stateful resume replaces a socket the server still thinks is open (half-open), and replays what it missed', async () => {
  const running = await startHub();
  const clients: RawClient[] = [];
  try {
    const negotiated = (await (
      await fetch(`${running.url}/negotiate?negotiateVersion=1&useStatefulReconnect=true`, { method: 'POST' })
    ).json()) as { connectionToken: string };
    const connectionUrl = `${running.url}?id=${negotiated.connectionToken}`;
    const first = await RawClient.connect(connectionUrl);
    clients.push(first);
    first.send({ protocol: 'json', version: 2 });
    await first.next((record) => Object.keys(record).length === 0);
    first.send({ type: 6 });
    await running.hub.clients.all.send('notify', 'unacked');
    await first.next((record) => record.target === 'notify');

    // The client gave up on its first socket without the server noticing, and resumes on a new one.
    const resumed = await RawClient.connect(connectionUrl);
    clients.push(resumed);
    await resumed.next((record) => record.target === 'notify');
    assert.equal(resumed.records[0]!.type, 9, 'the resume starts with a Sequence message');
    assert.equal(await first.closed, 1000, 'the server ended the replaced socket');
    resumed.send(
      { type: 9, sequenceId: 1 },
      { type: 1, invocationId: 'after', target: 'Add', arguments: [1, 2] },
    );
    assert.deepEqual(await resumed.next((record) => record.invocationId === 'after'), {
      type: 3,
      invocationId: 'after',
      result: 3,
    });
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});

test('a stateful resume after the client acked everything: what the server sends next arrives, none of it taken for a duplicate', async () => {
  const running = await startHub();
  const client = buildClient(running.url, { stateful: true, reconnectDelays: [0] });
  const received: number[] = [];
  client.on('notify', (value: number) => received.push(value));
  await client.start();
  try {
    await running.hub.clients.all.send('notify', 1);
    await eventually(() => received.length === 1);
    // The client acks about a second after it receives: then the server has nothing left to replay.
    await delay(2_000);
    running.upgradedSockets[0]!.destroy();
    await eventually(() => running.upgradedSockets.length === 2);
    assert.equal(await within(client.invoke('Add', 1, 2)), 3, 'the answer to a call after the resume');
    await running.hub.clients.all.send('notify', 2);
    await eventually(() => received.length === 2);
    assert.deepEqual(received, [1, 2]);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a call the server handled but had not acked when the socket dropped is resent by the client on resume, and not handled twice', async () => {
  let handled = 0;
  const running: RunningHub = await startHub({
    hub: defineHub({
      methods: {
        // The socket drops right after the call arrives, before the server's next Ack could leave.
        Count: () => {
          if (++handled === 1) running.upgradedSockets[0]!.destroy();
        },
        Add: (_context, a: number, b: number) => a + b,
      },
    }),
  });
  const client = buildClient(running.url, { stateful: true, reconnectDelays: [0] });
  let reconnecting = false;
  client.onreconnecting(() => (reconnecting = true));
  await client.start();
  try {
    const connectionId = client.connectionId;
    await client.send('Count');
    await eventually(() => running.upgradedSockets.length === 2);
    assert.equal(await within(client.invoke('Add', 1, 2)), 3);
    assert.equal(handled, 1, 'the resent call was a duplicate');
    assert.equal(client.connectionId, connectionId);
    assert.equal(reconnecting, false, 'resumed, not reconnected');
  } finally {
    await client.stop();
    await running.close();
  }
});

/** Negotiates a stateful connection and opens its first socket, handshaken with version 2. */
async function statefulRawClient(
  running: RunningHub,
  handshakeVersion = 2,
): Promise<{ url: string; first: RawClient }> {
  const negotiated = (await (
    await fetch(`${running.url}/negotiate?negotiateVersion=1&useStatefulReconnect=true`, { method: 'POST' })
  ).json()) as { connectionToken: string };
  const url = `${running.url}?id=${negotiated.connectionToken}`;
  const first = await RawClient.connect(url);
  first.send({ protocol: 'json', version: handshakeVersion });
  await first.next((record) => Object.keys(record).length === 0);
  return { url, first };
}

test('a stateful client whose socket drops before it sent anything gets what was sent meanwhile once, on resume', async () => {
  const running = await startHub();
  const clients: RawClient[] = [];
  try {
    const { url, first } = await statefulRawClient(running);
    clients.push(first);
    // The official client pings right after the handshake; this one loses its socket first.
    await running.hub.clients.all.send('notify', 'held');
    first.close();
    await once(running.upgradedSockets[0]!, 'close');

    const resumed = await RawClient.connect(url);
    clients.push(resumed);
    await resumed.next((record) => record.target === 'notify');
    resumed.send(
      { type: 9, sequenceId: 1 },
      { type: 1, invocationId: 'after', target: 'Add', arguments: [1, 2] },
    );
    await resumed.next((record) => record.invocationId === 'after');
    await delay(100);
    assert.deepEqual(
      resumed.records.filter((record) => record.type === 1).map((record) => record.target),
      ['Connected', 'notify'],
      'each once',
    );
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});

test('frames still arriving on a socket a resume replaced are ignored: a call sent on it is not handled', async () => {
  const running = await startHub();
  const clients: RawClient[] = [];
  try {
    const { url, first } = await statefulRawClient(running);
    clients.push(first);
    first.send({ type: 6 });
    // Half-open: the first socket reads nothing more (not even the server's close), but what it sent still arrives.
    first.ws.pause();
    const resumed = await RawClient.connect(url);
    clients.push(resumed);
    await resumed.next((record) => record.type === 9);
    resumed.send(
      { type: 9, sequenceId: 1 },
      { type: 1, invocationId: 'fresh', target: 'Add', arguments: [1, 1] },
    );
    await resumed.next((record) => record.invocationId === 'fresh');
    first.send({ type: 1, invocationId: 'stale', target: 'Add', arguments: [2, 2] });
    await delay(100);
    resumed.send({ type: 1, invocationId: 'later', target: 'Add', arguments: [3, 3] });
    await resumed.next((record) => record.invocationId === 'later');
    assert.equal(
      resumed.records.some((record) => record.invocationId === 'stale'),
      false,
      'the call on the replaced socket was not handled',
    );
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});

test('without stateful reconnect, a dropped socket ends the connection and automatic reconnect gets a new id', async () => {
  const running = await startHub();
  const client = buildClient(running.url, { reconnectDelays: [0, 100] });
  await client.start();
  try {
    const first = client.connectionId;
    const reconnected = new Promise<string | undefined>((resolve) => client.onreconnected(resolve));
    running.upgradedSockets[0]!.destroy();
    const second = await reconnected;
    assert.notEqual(second, first);
    await eventually(() => running.hub.stats().connections === 1);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('withAutomaticReconnect reconnects after the server restarts on the same port', async () => {
  let running = await startHub();
  const client = buildClient(running.url, {
    reconnectDelays: [0, 200, 200, 200, 200, 200, 200, 200, 200, 200],
  });
  await client.start();
  try {
    const first = client.connectionId;
    const reconnected = new Promise<string | undefined>((resolve) => client.onreconnected(resolve));
    const port = running.port;
    await running.close();
    running = await startHub({}, { port });
    const second = await reconnected;
    assert.ok(second && second !== first, 'a new connection id');
    assert.equal(client.state, HubConnectionState.Connected);
    assert.equal(await client.invoke('Add', 20, 22), 42);
    const notified = nextInvocation(client, 'notify');
    await client.invoke('JoinGroup', 'again');
    await running.hub.clients.group('again').send('notify', 'back');
    assert.deepEqual(await notified, ['back']);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('closeConnection with an error is final for the client; with allowReconnect it reconnects', async () => {
  const running = await startHub();
  const final = buildClient(running.url, { reconnectDelays: [0] });
  const retrying = buildClient(running.url, { reconnectDelays: [0] });
  await Promise.all([final.start(), retrying.start()]);
  try {
    const closed = new Promise<Error | undefined>((resolve) => final.onclose(resolve));
    assert.equal(running.hub.closeConnection(final.connectionId!, 'You are done.'), true);
    assert.equal((await closed)?.message, 'Server returned an error on close: You are done.');

    const reconnecting = new Promise<Error | undefined>((resolve) => retrying.onreconnecting(resolve));
    const reconnected = new Promise<string | undefined>((resolve) => retrying.onreconnected(resolve));
    const first = retrying.connectionId;
    running.hub.closeConnection(first!, 'Come back.', true);
    assert.equal((await reconnecting)?.message, 'Server returned an error on close: Come back.');
    assert.notEqual(await reconnected, first);
    assert.equal(running.hub.closeConnection('unknown'), false);
  } finally {
    await Promise.all([final.stop(), retrying.stop()]);
    await running.close();
  }
});

test('a long-polling client waiting in a poll gets the reason of a final close, and does not reconnect', async () => {
  const running = await startHub();
  const client = buildClient(running.url, {
    transport: HttpTransportType.LongPolling,
    reconnectDelays: [0],
  });
  await client.start();
  try {
    assert.equal(await client.invoke('Add', 1, 2), 3);
    await delay(200); // the client's next poll is held: nothing to send
    const { outcome } = afterServerClose(client);
    assert.equal(running.hub.closeConnection(client.connectionId!, 'You are done.'), true);
    assert.equal(await outcome, 'closed: Server returned an error on close: You are done.');
  } finally {
    await client.stop();
    await running.close();
  }
});

for (const transport of [
  HttpTransportType.WebSockets,
  HttpTransportType.ServerSentEvents,
  HttpTransportType.LongPolling,
]) {
  test(`close() ends every connection with allowReconnect (${HttpTransportType[transport]}): clients with automatic reconnect come back`, async () => {
    let running = await startHub();
    const client = buildClient(running.url, {
      transport,
      reconnectDelays: [100, 200, 200, 200, 200, 200, 200, 200],
    });
    await client.start();
    try {
      const { outcome, reconnected } = afterServerClose(client);
      const port = running.port;
      await running.hub.close();
      assert.equal(
        await outcome,
        'reconnecting: Server returned an error on close: Server is shutting down.',
      );
      await running.close();
      running = await startHub({}, { port });
      assert.ok(await reconnected);
      assert.equal(await client.invoke('Add', 1, 2), 3);
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

test('after close() the hub takes no new connection (503), so a client that reconnects at once is not parked on it', async () => {
  const running = await startHub();
  try {
    await running.hub.close();
    const negotiate = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(negotiate.status, 503);
    assert.equal(negotiate.headers.get('retry-after'), '5', 'when to try again');
    await assert.rejects(
      buildClient(running.url, { transport: HttpTransportType.LongPolling }).start(),
      /Status code '503'/,
    );
    const direct = new WebSocket(running.url.replace(/^http/, 'ws'));
    const [request, response] = (await once(direct, 'unexpected-response')) as [
      ClientRequest,
      IncomingMessage,
    ];
    assert.equal(response.statusCode, 503, 'nor a WebSocket without negotiate');
    assert.equal(response.headers['retry-after'], '5');
    request.destroy();
    assert.equal(running.hub.stats().connections, 0);
  } finally {
    await running.close();
  }
});

test('a stateful connection whose unacked messages outgrow the buffer holds later sends until acks free space', async () => {
  const running = await startHub({ statefulReconnectBufferSize: 4096 });
  const client = buildClient(running.url, { stateful: true });
  const received: number[] = [];
  client.on('notify', (value: number) => received.push(value));
  let closed = false;
  client.onclose(() => (closed = true));
  await client.start();
  try {
    // The client acks about once a second, so a quick burst outgrows the buffer before any ack.
    for (let i = 0; i < 10; i++) await running.hub.clients.all.send('notify', i, 'x'.repeat(1000));
    await eventually(() => received.length === 10);
    assert.deepEqual(received, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(closed, false);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a stateful client that acks nothing while sends are held is closed with allowReconnect after the client timeout', async () => {
  const running = await startHub({ statefulReconnectBufferSize: 4096 });
  const negotiated = (await (
    await fetch(`${running.url}/negotiate?negotiateVersion=1&useStatefulReconnect=true`, { method: 'POST' })
  ).json()) as { connectionToken: string };
  const client = await RawClient.connect(`${running.url}?id=${negotiated.connectionToken}`);
  client.send({ protocol: 'json', version: 2 });
  await client.next((record) => Object.keys(record).length === 0);
  // Pings keep the ordinary client timeout away; only the missing Acks count.
  const pinging = setInterval(() => client.send({ type: 6 }), 200);
  try {
    client.send({ type: 6 });
    for (let i = 0; i < 10; i++) await running.hub.clients.all.send('notify', i, 'x'.repeat(1000));
    const started = Date.now();
    assert.deepEqual(await client.next((record) => record.type === 7), {
      type: 7,
      error: 'The stateful reconnect buffer is full.',
      allowReconnect: true,
    });
    assert.ok(Date.now() - started >= 1_500, 'closed only after waiting for acks');
    assert.ok(client.records.filter((record) => record.type === 1).length < 10, 'held sends were not sent');
  } finally {
    clearInterval(pinging);
    client.close();
    await running.close();
  }
});

test('a server stream to a stateful client goes on after its socket drops and the client resumes: every item once, in order', async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const running = await startHub({
    hub: defineHub({
      methods: {},
      streams: {
        Rows: async function* (_context, count: number) {
          for (let i = 0; i < count; i++) {
            if (i === 3) await gate;
            yield i;
          }
        },
      },
    }),
  });
  const client = buildClient(running.url, { stateful: true });
  await client.start();
  try {
    const received: number[] = [];
    const completed = new Promise<void>((resolve, reject) => {
      client
        .stream('Rows', 200)
        .subscribe({ next: (i: number) => received.push(i), complete: resolve, error: reject });
    });
    completed.catch(() => undefined);
    await eventually(() => received.length === 3);
    const socket = running.upgradedSockets[0]!;
    socket.destroy();
    await once(socket, 'close');
    open(); // the stream goes on while the server has no socket: it waits for the resume
    await completed;
    assert.deepEqual(
      received,
      Array.from({ length: 200 }, (_, i) => i),
    );
    assert.equal(running.upgradedSockets.length, 2, 'the client resumed on a new socket');
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a client that negotiated stateful reconnect but shakes hands with version 1 gets a plain connection, as from ASP.NET', async () => {
  const running = await startHub();
  try {
    const { first: client } = await statefulRawClient(running, 1);
    // A stateful connection would hold Connected until the client's first message, and ack what it handles.
    await client.next((record) => record.target === 'Connected');
    client.send({ type: 1, invocationId: '1', target: 'Add', arguments: [1, 2] });
    await client.next((record) => record.invocationId === '1');
    await delay(1_500);
    assert.deepEqual(
      client.records.filter((record) => record.type === 8 || record.type === 9),
      [],
      'no Ack or Sequence',
    );
    client.close();
  } finally {
    await running.close();
  }
});

test('a stateful client whose Sequence claims more than it sent is closed with the reason', async () => {
  const running = await startHub();
  try {
    const { first: client } = await statefulRawClient(running);
    // It has sent nothing trackable: 1 is where it stands, 2 is one past it.
    client.send({ type: 6 }, { type: 9, sequenceId: 1 });
    client.send({ type: 1, invocationId: 'still-fine', target: 'Add', arguments: [1, 1] });
    await client.next((record) => record.invocationId === 'still-fine');
    client.send({ type: 9, sequenceId: 3 });
    assert.deepEqual(await client.next((record) => record.type === 7), {
      type: 7,
      error: 'Sequence ID greater than amount of messages we have received.',
    });
    await client.closed;
  } finally {
    await running.close();
  }
});

test('a stateful resume replays only what the client has not acked, starting with the first unacked sequence id', async () => {
  const running = await startHub();
  const clients: RawClient[] = [];
  try {
    const { url: connectionUrl, first: client } = await statefulRawClient(running);
    client.send({ type: 6 });
    clients.push(client);
    await client.next((record) => record.target === 'Connected'); // sequence id 1
    await running.hub.clients.all.send('notify', 'second');
    await running.hub.clients.all.send('notify', 'third');
    await client.next((record) => (record.arguments as unknown[] | undefined)?.[0] === 'third');
    client.send(
      { type: 8, sequenceId: 2 },
      { type: 1, invocationId: 'after-ack', target: 'Add', arguments: [1, 1] },
    );
    // Handled in order: once the call is answered, the Ack before it has been taken.
    await client.next((record) => record.invocationId === 'after-ack');
    client.close();
    await once(running.upgradedSockets[0]!, 'close');

    const resumed = await RawClient.connect(connectionUrl);
    clients.push(resumed);
    await resumed.next((record) => record.invocationId === 'after-ack');
    assert.deepEqual(
      resumed.records.filter((record) => record.type !== 6 && record.type !== 8),
      [
        { type: 9, sequenceId: 3 },
        { type: 1, target: 'notify', arguments: ['third'] },
        { type: 3, invocationId: 'after-ack', result: 2 },
      ],
    );
    // Until the client's Sequence arrives, the server ignores what the client sends. Its call was its first
    // message the server counts: it goes on from the second.
    resumed.send(
      { type: 1, invocationId: 'before-sequence', target: 'Add', arguments: [1, 1] },
      { type: 9, sequenceId: 2 },
      { type: 1, invocationId: 'after-sequence', target: 'Add', arguments: [2, 2] },
    );
    assert.equal((await resumed.next((record) => record.invocationId === 'after-sequence')).result, 4);
    assert.equal(
      resumed.records.find((record) => record.invocationId === 'before-sequence'),
      undefined,
    );
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});

test('a stateful connection counts a CancelInvocation like the other calls: its Ack covers it', async () => {
  const running = await startHub();
  try {
    const { first: client } = await statefulRawClient(running);
    client.send({ type: 6 });
    client.send(
      { type: 4, invocationId: 'stream', target: 'SlowCounter', arguments: [100] },
      { type: 5, invocationId: 'stream' },
      { type: 1, invocationId: 'add', target: 'Add', arguments: [1, 2] },
    );
    await client.next((record) => record.invocationId === 'add');
    assert.deepEqual(await client.next((record) => record.type === 8 && record.sequenceId === 3), {
      type: 8,
      sequenceId: 3,
    });
    client.close();
  } finally {
    await running.close();
  }
});

test('a stateful client away longer than the client timeout while sends wait for its Acks gets its time again on resume', async () => {
  // Connected alone fills this buffer: everything after it waits for the client's Ack.
  const running = await startHub({
    statefulReconnectBufferSize: 16,
    clientTimeoutMs: 1_000,
    disconnectTimeoutMs: 10_000,
  });
  const clients: RawClient[] = [];
  try {
    const { url: connectionUrl, first: client } = await statefulRawClient(running);
    client.send({ type: 6 });
    clients.push(client);
    await client.next((record) => record.target === 'Connected');
    client.close();
    await delay(100);
    await running.hub.clients.all.send('notify', 'while away');
    await delay(1_500);

    const resumed = await RawClient.connect(connectionUrl);
    clients.push(resumed);
    await resumed.next((record) => record.target === 'Connected');
    // Acks come about a second after the replay; a resumed client gets that long, as a new one would.
    await delay(400);
    resumed.send({ type: 9, sequenceId: 1 }, { type: 8, sequenceId: 1 });
    await resumed.next((record) => record.target === 'notify');
    assert.equal(
      resumed.records.find((record) => record.type === 7),
      undefined,
      'no Close',
    );
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});
