import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
import { defineHub } from '../src/index.ts';
import {
  afterServerClose,
  buildClient,
  delay,
  eventually,
  RawClient,
  startHub,
  startStallingProxy,
} from './helpers.ts';

const MiB = 1024 * 1024;

/**
 * The official client pings only every 15 s (keepAliveIntervalInMilliseconds), so a client busy taking in what the
 * server sent says nothing for that long: the server's client timeout must allow that, as its default 30 s does.
 * fastTimers' 2 s does not: on a slow machine a client that reads was closed for silence, not for lagging behind.
 */
const OFFICIAL_CLIENT_TIMEOUT = { clientTimeoutMs: 30_000 };

/** Busies the thread for `ms`: a client whose handling of each message takes time (a slow machine, a slow handler). */
const busy = (ms: number) => {
  for (const end = performance.now() + ms; performance.now() < end;);
};

for (const [transport, handlingMs] of [
  [HttpTransportType.WebSockets, 0],
  [HttpTransportType.ServerSentEvents, 0],
  [HttpTransportType.LongPolling, 0],
  // 6,000 notifications at 0.4 ms each: longer than fastTimers' 2 s client timeout without a word from the client.
  [HttpTransportType.WebSockets, 0.4],
] as const) {
  const reads = handlingMs > 0 ? 'reads slowly' : 'reads';
  test(`a client that ${reads} (${HttpTransportType[transport]}) gets a 2 MiB result, a burst and a long stream, and stays connected`, async () => {
    const running = await startHub({ maxBufferedBytes: MiB, ...OFFICIAL_CLIENT_TIMEOUT });
    const client = buildClient(running.url, { transport });
    let notified = 0;
    client.on('item', () => {
      notified++;
      busy(handlingMs);
    });
    await client.start();
    try {
      assert.equal(((await client.invoke('Repeat', 'x', 2 * MiB)) as string).length, 2 * MiB);
      // 6,000 notifications of 250 bytes, produced in one event-loop turn: 1.5 MiB before the socket sees any.
      assert.equal(await client.invoke('Burst', 6_000, 200), 6_000);
      await eventually(() => notified === 6_000);
      let streamed = 0;
      await new Promise<void>((resolve, reject) => {
        client
          .stream('Payloads', 6_000, 200)
          .subscribe({ next: () => streamed++, complete: resolve, error: reject });
      });
      assert.equal(streamed, 6_000);
      await delay(100);
      assert.equal(client.state, HubConnectionState.Connected);
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

test('a large message the client is still reading does not count against it: only what piles up behind it does', async () => {
  const running = await startHub({ maxBufferedBytes: 256 * 1024 });
  const client = await RawClient.handshaken(running.url);
  try {
    await eventually(() => running.hub.stats().connections === 1);
    client.ws.pause(); // a slow network: the big message takes a while to arrive
    await running.hub.clients.all.send('big', 'x'.repeat(16 * MiB));
    for (let i = 0; i < 20; i++) {
      await delay(5);
      await running.hub.clients.all.send('small', i);
    }
    client.ws.resume();
    await eventually(() => client.records.filter((r) => r.target === 'small').length === 20, 10_000);
    assert.equal(client.records.filter((r) => r.target === 'big').length, 1);
    assert.equal(running.hub.stats().connections, 1);
  } finally {
    client.close();
    await running.close();
  }
});

test('a server stream to a client that stops reading waits for it (bounded), instead of closing it', async () => {
  let produced = 0;
  const total = 2_000;
  const running = await startHub({
    maxBufferedBytes: 256 * 1024,
    hub: defineHub({
      methods: {},
      streams: {
        Chunks: async function* () {
          const text = 'y'.repeat(16 * 1024);
          for (; produced < total; produced++) yield text;
        },
      },
    }),
  });
  const client = await RawClient.handshaken(running.url);
  try {
    client.ws.pause();
    client.send({ type: 4, invocationId: 'chunks', target: 'Chunks', arguments: [] });
    await delay(500);
    assert.ok(produced < total / 2, `the stream waits for the socket (${produced} of ${total} produced)`);
    assert.equal(running.hub.stats().connections, 1);
    client.ws.resume();
    await client.next((r) => r.type === 3 && r.invocationId === 'chunks', 20_000);
    assert.equal(client.records.filter((r) => r.type === 2).length, total);
  } finally {
    client.close();
    await running.close();
  }
});

test('a client that stops reading is closed once its outgoing buffer is full; the others get everything', async () => {
  const running = await startHub({ maxBufferedBytes: 256 * 1024 });
  const stalled = await RawClient.handshaken(running.url);
  const healthy = await RawClient.handshaken(running.url);
  let healthyGot = 0;
  healthy.ws.on('message', (data: Buffer) => (healthyGot += data.toString().split('\u001e').length - 1));
  try {
    stalled.ws.pause();
    await eventually(() => running.hub.stats().connections === 2);
    const payload = 'x'.repeat(4096);
    const total = 4_000;
    for (let i = 0; i < total; i++) {
      await running.hub.clients.all.send('notify', i, payload);
      // Bursts well under the limit: a reading client drains between them, a stalled one does not.
      if (i % 8 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await eventually(() => running.hub.stats().connections === 1, 10_000);
    await eventually(() => healthy.records.filter((r) => r.target === 'notify').length === total, 10_000);
    assert.ok(healthyGot >= total);
  } finally {
    stalled.close();
    healthy.close();
    await running.close();
  }
});

for (const stateful of [false, true])
  test(`a ${stateful ? 'stateful ' : ''}client closed for not keeping up is closed with allowReconnect: automatic reconnect brings it back`, async () => {
    const running = await startHub({
      maxBufferedBytes: 256 * 1024,
      // A stateful client's sends wait for Acks past its buffer; what waits counts toward the limit too, once no Ack
      // has freed room for a few seconds: long before the client timeout would end the wait.
      ...(stateful
        ? { statefulReconnectBufferSize: 16 * 1024, clientTimeoutMs: 60_000 }
        : OFFICIAL_CLIENT_TIMEOUT),
    });
    const proxy = await startStallingProxy(running);
    const client = buildClient(proxy.url, { reconnectDelays: [0, 100, 200], stateful });
    await client.start();
    try {
      const { outcome, reconnected } = afterServerClose(client);
      const first = client.connectionId;
      proxy.stall();
      const payload = 'x'.repeat(4096);
      const deadline = Date.now() + 20_000;
      for (let i = 0; running.hub.stats().connections === 1; i++) {
        assert.ok(Date.now() < deadline, 'the stalled client is closed');
        await running.hub.clients.all.send('notify', i, payload);
        if (i % 8 === 0) await delay(stateful ? 10 : 1);
      }
      proxy.resume();
      assert.equal(
        await outcome,
        'reconnecting: Server returned an error on close: The client did not keep up with its messages.',
      );
      assert.notEqual(await reconnected, first);
      assert.equal(await client.invoke('Add', 1, 2), 3);
    } finally {
      await client.stop();
      await proxy.close();
      await running.close();
    }
  });

test('a stateful client that reads takes a burst far over the limits in one go, and stays connected', async () => {
  // The default stateful buffer (1 MiB): a client acks about once a second, so that much a second is what it takes.
  const running = await startHub({ maxBufferedBytes: 256 * 1024 });
  const client = buildClient(running.url, { stateful: true });
  let received = 0;
  client.on('notify', () => received++);
  await client.start();
  try {
    const total = 12_000; // about 3 MiB: two of them wait for Acks, eight times what may wait unread
    const payload = 'x'.repeat(256);
    for (let i = 0; i < total; i++) void running.hub.clients.all.send('notify', i, payload);
    await eventually(() => received === total, 20_000);
    assert.equal(client.state, HubConnectionState.Connected);
  } finally {
    await client.stop();
    await running.close();
  }
});

test("a stateful client sends far more than its resend buffer (100 KB by default): the server's Acks free it, so its sends go on", async () => {
  const running = await startHub();
  const client = buildClient(running.url, { stateful: true });
  await client.start();
  try {
    const payload = 'x'.repeat(10_000);
    // send() resolves once the client may send more: past its buffer, once the server acked what it got.
    const sent = (async () => {
      for (let i = 0; i < 30; i++) await client.send('Echo', payload);
      return 'all sent';
    })();
    assert.equal(await Promise.race([sent, delay(5_000).then(() => 'stuck')]), 'all sent');
    assert.equal(await client.invoke('Add', 1, 2), 3);
    assert.equal(client.state, HubConnectionState.Connected);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a server stream to a stateful client that stops reading waits for its Acks: the server holds about one stateful buffer, and every item still arrives in order', async () => {
  const bufferSize = 16 * 1024;
  const size = 1_000;
  const total = 48;
  let produced = 0;
  const running = await startHub({
    statefulReconnectBufferSize: bufferSize,
    clientTimeoutMs: 10_000, // the stall below must not pass for a client that acks nothing
    hub: defineHub({
      methods: {},
      streams: {
        Rows: async function* (_context, count: number) {
          for (let i = 0; i < count; i++) {
            produced++;
            yield { i, text: 'r'.repeat(size) };
          }
        },
      },
    }),
  });
  const proxy = await startStallingProxy(running);
  const client = buildClient(proxy.url, { stateful: true });
  await client.start();
  try {
    proxy.stall(); // the client reads (and acks) nothing for a while
    const received: number[] = [];
    const completed = new Promise<void>((resolve, reject) => {
      client.stream('Rows', total).subscribe({
        next: (row: { i: number }) => received.push(row.i),
        complete: resolve,
        error: reject,
      });
    });
    completed.catch(() => undefined); // awaited below; an early failure must not also surface as unhandled
    await delay(500);
    // Everything produced is on the server (the client got nothing): the unacked buffer plus the item past it.
    const bound = Math.ceil(bufferSize / size) + 2;
    assert.ok(
      produced <= bound,
      `the stream waits for Acks (${produced} of ${total} produced, at most ${bound})`,
    );
    assert.equal(running.hub.stats().connections, 1);
    proxy.resume();
    await completed;
    assert.deepEqual(
      received,
      Array.from({ length: total }, (_, i) => i),
    );
    assert.equal(client.state, HubConnectionState.Connected);
  } finally {
    await client.stop();
    await proxy.close();
    await running.close();
  }
});

test('a server stream to a stateful client whose socket is gone waits for the resume, and ends when the connection is disposed', async () => {
  let produced = 0;
  let ended = false;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const running = await startHub({
    hub: defineHub({
      methods: {},
      streams: {
        Rows: async function* () {
          try {
            for (let i = 0; i < 10_000; i++) {
              if (i === 3) await gate;
              produced++;
              yield i;
            }
          } finally {
            ended = true;
          }
        },
      },
    }),
  });
  const proxy = await startStallingProxy(running);
  const client = buildClient(proxy.url, { stateful: true });
  await client.start();
  try {
    let received = 0;
    client
      .stream('Rows')
      .subscribe({ next: () => received++, complete: () => undefined, error: () => undefined });
    await eventually(() => received === 3);
    await proxy.close(); // the network is gone and the client cannot resume
    await delay(100);
    open();
    await delay(200);
    assert.ok(produced <= 4, `the stream waits for a socket (${produced} produced)`);
    // No resume within disconnectTimeoutMs: the connection is disposed and the stream's cleanup runs.
    await eventually(() => ended && running.hub.stats().connections === 0);
  } finally {
    await client.stop();
    await running.close();
  }
});
