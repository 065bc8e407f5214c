import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type ClientRequest, request } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { HttpTransportType } from '@microsoft/signalr';
import { WebSocket } from 'ws';
import { defineHub } from '../src/index.ts';
import { buildClient, delay, RawClient, startHub, type RunningHub } from './helpers.ts';

/** A TCP proxy that delays every chunk by `ms` each way: a client 2 × `ms` away. */
async function latencyProxy(port: number, ms: number) {
  const sockets = new Set<Socket>();
  const server = createTcpServer((down) => {
    const up = connect(port, '127.0.0.1');
    sockets.add(up).add(down);
    const relay = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), ms));
    relay(down, up);
    relay(up, down);
    const end = () => {
      up.destroy();
      down.destroy();
    };
    for (const socket of [up, down]) socket.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

test('long polling: a server stream that keeps every poll busy outlives the disconnect timeout', async () => {
  const running = await startHub({ disconnectTimeoutMs: 1_000 });
  const client = buildClient(running.url, { transport: HttpTransportType.LongPolling });
  await client.start();
  try {
    let items = 0;
    const ended = new Promise<string>((resolve) => {
      client.stream('Payloads', 10_000_000, 100).subscribe({
        next: () => void items++,
        complete: () => resolve('complete'),
        error: (error: Error) => resolve(`error: ${error.message}`),
      });
    });
    // Each poll finds items waiting and is answered at once, so none is ever held when the tick looks.
    assert.equal(await Promise.race([ended, delay(3_000).then(() => 'streaming')]), 'streaming');
    assert.ok(items > 0);
    assert.equal(running.hub.stats().connections, 1);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('long polling: a client some way off stays connected through a steady stream of notifications', async () => {
  const running = await startHub({ disconnectTimeoutMs: 1_000 });
  const proxy = await latencyProxy(running.port, 40);
  const client = buildClient(running.url.replace(`:${running.port}`, `:${proxy.port}`), {
    transport: HttpTransportType.LongPolling,
  });
  let closed: string | undefined;
  client.onclose((error) => (closed = `closed: ${error?.message}`));
  let received = 0;
  client.on('tick', () => void received++);
  await client.start();
  const timer = setInterval(() => void running.hub.clients.all.send('tick', Date.now()), 25);
  try {
    await delay(3_000);
    assert.equal(closed, undefined);
    assert.ok(received > 50);
  } finally {
    clearInterval(timer);
    await client.stop();
    proxy.close();
    await running.close();
  }
});

/** The hub's connections, for how many calls each has queued (`busy`: the running one and those behind it). */
function queuedCalls(running: RunningHub): number[] {
  const { byId } = running.hub as unknown as { byId: Map<string, { busy: number }> };
  return [...byId.values()].map((connection) => connection.busy);
}

/** 200,000 calls of `Lookup`, in 10 frames, as one client floods them. */
function flood(client: RawClient): void {
  const frame = '{"type":1,"target":"Lookup","arguments":[1]}\u001e'.repeat(20_000);
  for (let i = 0; i < 10; i++) client.ws.send(frame);
}

// A raw client sends no pings: the client timeout is kept out of the way.
const QUIET_CLIENT = { clientTimeoutMs: 30_000 };

test('calls queued behind a slow method stop the reading, as ASP.NET awaits a free invocation slot', async () => {
  const running = await startHub({
    ...QUIET_CLIENT,
    hub: defineHub({ methods: { Lookup: async (_context, id: unknown) => delay(200).then(() => id) } }),
  });
  const client = await RawClient.handshaken(running.url);
  try {
    flood(client);
    await delay(500);
    const [queued = 0] = queuedCalls(running);
    assert.ok(queued <= 20, `${queued} calls queued`);
    assert.equal(client.ws.readyState, WebSocket.OPEN);
  } finally {
    client.close();
    await running.close();
  }
});

test('a full queue does not hold back the answer to a client result its running call awaits', async () => {
  const running = await startHub({
    hub: defineHub({
      methods: {
        Ask: async (context, n: number) => ((await context.clients.caller.invoke('double', n)) as number) + 1,
      },
    }),
  });
  try {
    for (const transport of [HttpTransportType.WebSockets, HttpTransportType.LongPolling]) {
      const client = buildClient(running.url, { transport });
      client.on('double', async (n: number) => delay(5).then(() => n * 2));
      await client.start();
      const calls = Promise.all(Array.from({ length: 40 }, (_, i) => client.invoke('Ask', i)));
      const results = await Promise.race([calls, delay(10_000).then(() => 'stuck')]);
      assert.deepEqual(
        results,
        Array.from({ length: 40 }, (_, i) => i * 2 + 1),
      );
      await client.stop();
    }
  } finally {
    await running.close();
  }
});

test('a client that owes a client result and floods calls meanwhile is closed, its queue bounded all the same', async () => {
  let slow = true;
  const running = await startHub({
    ...QUIET_CLIENT,
    hub: defineHub({
      methods: {
        Ask: async (context) => context.clients.caller.invoke('never'),
        Lookup: async (_context, id: unknown) => (slow ? delay(200).then(() => id) : id),
      },
    }),
  });
  const client = await RawClient.handshaken(running.url);
  try {
    // The running call awaits a client result this client never sends.
    client.send({ type: 1, invocationId: '0', target: 'Ask', arguments: [] });
    await client.next((record) => record.type === 1 && record.target === 'never');
    flood(client);
    const closing = await client.next((record) => record.type === 7);
    assert.equal(closing.error, 'Too many hub calls queued while the server awaited a client result.');
    const [queued = 0] = queuedCalls(running);
    assert.ok(queued <= 1_100, `${queued} calls queued`);
  } finally {
    slow = false;
    client.close();
    await running.close();
  }
});

test('a client result given up with invokeUntil rejects with the reason, ignores a late answer, and leaves reading flow-controlled', async () => {
  const running = await startHub({
    ...QUIET_CLIENT,
    hub: defineHub({
      methods: {
        AskWithin: async (context, ms: number) =>
          context.clients.caller.invokeUntil(AbortSignal.timeout(ms), 'answer').then(
            (value) => `answered ${String(value)}`,
            (error: Error) => `gave up: ${error.name}`,
          ),
        Lookup: async (_context, id: unknown) => delay(200).then(() => id),
      },
    }),
  });
  /** A client whose client result the hub gave up on; returns the id of the invocation it was sent. */
  const givenUp = async (client: RawClient) => {
    client.send({ type: 1, invocationId: 'ask', target: 'AskWithin', arguments: [100] });
    const asked = await client.next((record) => record.type === 1 && record.target === 'answer');
    assert.equal(
      (await client.next((record) => record.invocationId === 'ask')).result,
      'gave up: TimeoutError',
    );
    return asked.invocationId;
  };
  const flooded = await RawClient.handshaken(running.url);
  const late = await RawClient.handshaken(running.url);
  try {
    // Nothing is awaited any more: calls queued behind a slow one stop the reading again, rather than closing it.
    await givenUp(flooded);
    flood(flooded);
    await delay(500);
    const queued = queuedCalls(running);
    assert.ok(Math.max(...queued) <= 20, `${queued.join(', ')} calls queued`);
    assert.equal(
      flooded.records.find((record) => record.type === 7),
      undefined,
      'not closed',
    );

    // The answer comes too late: ignored, and the connection goes on (a call after it is answered).
    const invocationId = await givenUp(late);
    late.send({ type: 3, invocationId, result: 42 });
    late.send({ type: 1, invocationId: 'after', target: 'Lookup', arguments: ['still here'] });
    assert.equal(
      (await late.next((record) => record.type === 7 || record.invocationId === 'after')).result,
      'still here',
    );
  } finally {
    flooded.close();
    late.close();
    await running.close();
  }
});

test('a POST that goes on after its connection ended is answered 404 and read no further, as from ASP.NET', async () => {
  const running = await startHub({ disconnectTimeoutMs: 30_000 });
  let post: ClientRequest | undefined;
  try {
    const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
    const url = `${running.url}?id=${connectionToken}`;
    await fetch(`${url}&_=0`);
    await fetch(url, { method: 'POST', body: '{"protocol":"json","version":1}\u001e' });
    const body = request(url, { method: 'POST', headers: { 'Content-Type': 'text/plain' } });
    post = body;
    const answered = new Promise<number | string>((resolve) => {
      body.on('response', (response) => resolve(response.statusCode ?? 0));
      body.on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code}`));
    });
    // No record separator: the connection ends at the size limit, while the body goes on.
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let sent = 0;
    const writing = (async () => {
      while (sent < 64 * 1024 * 1024 && !body.destroyed) {
        sent += chunk.length;
        if (!body.write(chunk)) await Promise.race([once(body, 'drain'), once(body, 'close')]);
      }
    })();
    assert.equal(await Promise.race([answered, delay(5_000).then(() => 'no answer')]), 404);
    body.destroy();
    await writing;
    assert.ok(sent < 64 * 1024 * 1024, 'the server stopped reading');
  } finally {
    post?.destroy();
    await running.close();
  }
});
