import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
import { buildClient, HUB_PATH, nextInvocation, type RunningHub, startHub } from './helpers.ts';

const cases = [
  { transport: HttpTransportType.WebSockets, protocol: 'json' },
  { transport: HttpTransportType.ServerSentEvents, protocol: 'json' },
  { transport: HttpTransportType.LongPolling, protocol: 'json' },
  { transport: HttpTransportType.WebSockets, protocol: 'messagepack' },
  { transport: HttpTransportType.LongPolling, protocol: 'messagepack' },
] as const;

for (const mount of ['node', 'fastify'] as const) {
  describe(`hub mounted on ${mount}`, () => {
    let running: RunningHub;
    before(async () => {
      running = await startHub({}, { mount });
    });
    after(() => running.close());

    for (const { transport, protocol } of cases) {
      const name = `${HttpTransportType[transport]} + ${protocol}`;

      test(`${name}: connects, receives Connected, invokes and gets results and hub errors`, async () => {
        const client = buildClient(running.url, { transport, protocol });
        const connected = nextInvocation(client, 'Connected');
        await client.start();
        try {
          const [payload] = (await connected) as [{ clientId: string; timestamp: number }];
          assert.equal(payload.clientId, client.connectionId);
          assert.equal(typeof payload.timestamp, 'number');

          const text = 'line one\nline two \u001e "quoted"';
          assert.deepEqual(await client.invoke('Echo', { text, list: [1, 2, 3] }), { text, list: [1, 2, 3] });
          assert.equal(await client.invoke('add', 2, 3), 5, 'method names are case-insensitive');
          assert.equal(await client.invoke('JoinGroup', 'g'), null);

          await assert.rejects(client.invoke('Fail', 'nope'), {
            message: "An unexpected error occurred invoking 'Fail' on the server. HubException: nope",
          });
          await assert.rejects(client.invoke('Crash'), {
            message: "An unexpected error occurred invoking 'Crash' on the server.",
          });
          await assert.rejects(client.invoke('Missing'), {
            message:
              "Failed to invoke 'Missing' due to an error on the server. HubException: Method does not exist.",
          });
          await assert.rejects(client.invoke('Add', 1), {
            message: "Failed to invoke 'Add' due to an error on the server.",
          });

          const notified = nextInvocation(client, 'notify');
          await client.send('SendToGroup', 'g', { hello: 'group' });
          assert.deepEqual(await notified, [{ hello: 'group' }]);

          const items: number[] = [];
          await new Promise<void>((resolve, reject) => {
            client.stream<number>('Counter', 3).subscribe({
              next: (item) => items.push(item),
              complete: resolve,
              error: reject,
            });
          });
          assert.deepEqual(items, [0, 1, 2]);
          assert.equal(running.hub.stats().byTransport[HttpTransportType[transport] as 'WebSockets'], 1);
        } finally {
          await client.stop();
        }
      });
    }

    for (const transport of [
      HttpTransportType.WebSockets,
      HttpTransportType.ServerSentEvents,
      HttpTransportType.LongPolling,
    ]) {
      test(`${HttpTransportType[transport]}: a hub URL with a trailing slash works, as on ASP.NET`, async () => {
        const client = buildClient(`${running.url}/`, { transport });
        await client.start();
        try {
          assert.equal(await client.invoke('Echo', 'hi'), 'hi');
        } finally {
          await client.stop();
        }
      });
      // On Fastify, negotiate and the HTTP transports follow the app's router (case-sensitive by default).
      if (mount === 'node' || transport === HttpTransportType.WebSockets)
        test(`${HttpTransportType[transport]}: a hub URL in other letter case works, as on ASP.NET`, async () => {
          const client = buildClient(running.url.replace(HUB_PATH, HUB_PATH.toUpperCase()), {
            transport,
            ...(mount === 'fastify' ? { http: { skipNegotiation: true } } : {}),
          });
          await client.start();
          try {
            assert.equal(await client.invoke('Echo', 'hi'), 'hi');
          } finally {
            await client.stop();
          }
        });
    }
  });
}

test('WebSocket frames at the length-encoding boundaries (125/126 and 65535/65536 bytes) reach the official client whole', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    // A Completion `{"type":3,"invocationId":"N","result":"…"}` plus its separator is 42 bytes around the text.
    for (const frameBytes of [125, 126, 127, 65_535, 65_536]) {
      const text = 'x'.repeat(frameBytes - 42);
      assert.equal(await client.invoke('Repeat', 'x', text.length), text, `a ${frameBytes}-byte frame`);
    }
    assert.equal(client.state, HubConnectionState.Connected);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a broadcast reaches JSON and MessagePack clients alike, each in its own encoding', async () => {
  const running = await startHub();
  const clients = [
    buildClient(running.url, { protocol: 'json' }),
    buildClient(running.url, { protocol: 'messagepack' }),
    buildClient(running.url, { protocol: 'json', transport: HttpTransportType.ServerSentEvents }),
    buildClient(running.url, { protocol: 'messagepack', transport: HttpTransportType.LongPolling }),
  ];
  try {
    for (const client of clients) await client.start();
    const received = clients.map((client) => nextInvocation(client, 'notify'));
    await running.hub.clients.all.send('notify', { text: 'to everyone' }, 7);
    for (const got of await Promise.all(received)) assert.deepEqual(got, [{ text: 'to everyone' }, 7]);
  } finally {
    for (const client of clients) await client.stop();
    await running.close();
  }
});
