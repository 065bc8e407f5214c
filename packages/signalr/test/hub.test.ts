import assert from 'node:assert/strict';
import { EventEmitter, on, once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import {
  type HubConnection,
  HttpTransportType,
  HubConnectionState,
  type ISubscription,
  Subject,
} from '@microsoft/signalr';
import {
  defineHub,
  type ErrorSite,
  type HubCallContext,
  type HubDefinition,
  HubError,
  HubServer,
  mountOnHttpServer,
} from '../src/index.ts';
import {
  buildClient,
  delay,
  eventually,
  fastTimers,
  HUB_PATH,
  nextInvocation,
  RawClient,
  startHub,
  testHub,
  within,
} from './helpers.ts';

test('groups: a connection in several targeted groups gets the message once; leaving stops delivery', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  const got: string[] = [];
  client.on('notify', (value: string) => got.push(value));
  await client.start();
  try {
    await client.invoke('JoinGroup', 'a');
    await client.invoke('JoinGroup', 'b');
    await client.invoke('JoinGroup', 'b');
    await running.hub.clients.groups(['a', 'b', 'c']).send('notify', 'once');
    await client.invoke('LeaveGroup', 'a');
    await client.invoke('LeaveGroup', 'never-joined');
    await running.hub.clients.group('a').send('notify', 'not for me');
    await running.hub.clients.groupExcept('b', [client.connectionId!]).send('notify', 'excluded');
    await running.hub.clients.groups(['a', 'b']).send('notify', 'in a later group');
    await running.hub.clients.group('b').send('notify', 'still in b');
    await eventually(() => got.includes('still in b'));
    await delay(50);
    assert.deepEqual(got, ['once', 'in a later group', 'still in b']);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('caller, others, othersInGroup, client(id) and allExcept reach exactly their targets', async () => {
  const running = await startHub();
  const [alice, bob, carol] = [buildClient(running.url), buildClient(running.url), buildClient(running.url)];
  const got = { alice: [] as string[], bob: [] as string[], carol: [] as string[] };
  alice.on('notify', (value: string) => got.alice.push(value));
  bob.on('notify', (value: string) => got.bob.push(value));
  carol.on('notify', (value: string) => got.carol.push(value));
  await Promise.all([alice.start(), bob.start(), carol.start()]);
  try {
    await alice.invoke('JoinGroup', 'team');
    await bob.invoke('JoinGroup', 'team');
    await alice.invoke('SendToCaller', 'caller');
    await alice.invoke('SendToOthers', 'others');
    await alice.invoke('SendToOthersInGroup', 'team', 'othersInGroup');
    await running.hub.clients.client(bob.connectionId!).send('notify', 'client');
    await running.hub.clients.allExcept([bob.connectionId!]).send('notify', 'allExcept');
    await running.hub.clients.all.send('notify', 'all');
    await eventually(() => got.alice.length === 3 && got.bob.length === 4 && got.carol.length === 3);
    await delay(50);
    assert.deepEqual(got, {
      alice: ['caller', 'allExcept', 'all'],
      bob: ['others', 'othersInGroup', 'client', 'all'],
      carol: ['others', 'allExcept', 'all'],
    });
  } finally {
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
    await running.close();
  }
});

test('the app hub shape: Connected on connect, Students broadcast by event type, disconnect hook with the id', async () => {
  const disconnected: string[] = [];
  const hub = await HubServer.create({
    ...fastTimers,
    hub: defineHub({
      methods: {
        JoinGroup: (context, name: string) => context.groups.add(context.connectionId, name),
        LeaveGroup: (context, name: string) => context.groups.remove(context.connectionId, name),
      },
      onConnected: (context) =>
        context.clients.caller.send('Connected', { clientId: context.connectionId, timestamp: Date.now() }),
      onDisconnected: (context) => {
        disconnected.push(context.connectionId);
      },
    }),
  });
  const server = createServer();
  mountOnHttpServer(server, HUB_PATH, hub);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${HUB_PATH}`;
  const client = buildClient(url);
  try {
    const connected = nextInvocation(client, 'Connected');
    await client.start();
    assert.equal(((await connected)[0] as { clientId: string }).clientId, client.connectionId);
    await client.invoke('JoinGroup', 'Students');
    const created = nextInvocation(client, 'StudentCreated');
    await hub.clients.group('Students').send('StudentCreated', { studentId: 'S-1' });
    assert.deepEqual(await created, [{ studentId: 'S-1' }]);
    const id = client.connectionId!;
    await client.stop();
    await eventually(() => disconnected.includes(id));
    assert.equal(hub.stats().connections, 0);
  } finally {
    await hub.close();
    server.close();
  }
});

test('an idle client stays connected past twice its server timeout thanks to server pings', async () => {
  const running = await startHub({ keepAliveIntervalMs: 150 });
  const client = buildClient(running.url);
  client.serverTimeoutInMilliseconds = 500;
  await client.start();
  try {
    await delay(1_200);
    assert.equal(client.state, HubConnectionState.Connected);
    assert.equal(await client.invoke('Nothing'), null, 'a void method completes with null');
  } finally {
    await client.stop();
    await running.close();
  }
});

test('client results: the server invokes a client handler and gets its value or its error', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  client.on('GetAnswer', (question: string) => `answer to ${question}`);
  client.on('Refuse', () => {
    throw new Error('no way');
  });
  await client.start();
  try {
    const proxy = running.hub.clients.client(client.connectionId!);
    assert.equal(await proxy.invoke('GetAnswer', 'life'), 'answer to life');
    await assert.rejects(proxy.invoke('Refuse'), { message: 'Error: no way' });
    await assert.rejects(proxy.invoke('NoHandler'), { message: "Client didn't provide a result." });
    await assert.rejects(running.hub.clients.client('elsewhere').invoke('GetAnswer'), /not on this instance/);
  } finally {
    await client.stop();
    await running.close();
  }
});

for (const protocol of ['json', 'messagepack'] as const) {
  test(`upload streams (${protocol}): the hub method reads the client's Subject as an AsyncIterable`, async () => {
    const running = await startHub();
    const client = buildClient(running.url, { protocol });
    await client.start();
    try {
      const subject = new Subject<number>();
      const total = client.invoke('Sum', subject);
      for (const n of [1, 2, 3, 4]) subject.next(n);
      subject.complete();
      assert.equal(await total, 10);

      const failing = new Subject<number>();
      const failed = client.invoke('Sum', failing);
      failing.next(1);
      failing.error(new Error('upload broke'));
      await assert.rejects(failed, /An unexpected error occurred invoking 'Sum' on the server\./);
      assert.equal(await client.invoke('Add', 1, 1), 2, 'the connection still works');
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

for (const protocol of ['json', 'messagepack'] as const) {
  test(`an undefined stream item (${protocol}) reaches the client as null, as ASP.NET writes "item":null`, async () => {
    const running = await startHub();
    const client = buildClient(running.url, { protocol });
    await client.start();
    try {
      const items: unknown[] = [];
      await new Promise<void>((resolve, reject) => {
        client
          .stream('WithUndefined')
          .subscribe({ next: (item) => items.push(item), complete: resolve, error: reject });
      });
      assert.deepEqual(items, [1, null, 3]);
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

test('bytes reach a JSON client as base64 (as ASP.NET writes a byte[]) and a MessagePack client as bytes', async () => {
  const running = await startHub();
  const json = buildClient(running.url, { protocol: 'json' });
  const messagePack = buildClient(running.url, { protocol: 'messagepack' });
  await Promise.all([json.start(), messagePack.start()]);
  try {
    const base64 = Buffer.from('héllo', 'utf8').toString('base64');
    assert.deepEqual(await json.invoke('Bytes', 'héllo'), { buffer: base64, array: base64 });
    const binary = await messagePack.invoke<{ buffer: Uint8Array; array: Uint8Array }>('Bytes', 'héllo');
    assert.equal(Buffer.from(binary.buffer).toString('utf8'), 'héllo');
    assert.equal(Buffer.from(binary.array).toString('utf8'), 'héllo');
  } finally {
    await Promise.all([json.stop(), messagePack.stop()]);
    await running.close();
  }
});

for (const transport of [
  HttpTransportType.WebSockets,
  HttpTransportType.ServerSentEvents,
  HttpTransportType.LongPolling,
]) {
  test(`an upload (${HttpTransportType[transport]}) that outpaces its hub method is slowed down, not refused`, async () => {
    const running = await startHub();
    const client = buildClient(running.url, { transport });
    await client.start();
    try {
      const numbers = new Subject<number>();
      const total = client.invoke('SumLater', numbers);
      for (let n = 1; n <= 1_500; n++) numbers.next(n);
      numbers.complete();
      assert.equal(await total, 1_125_750);
      assert.equal(await client.invoke('Add', 1, 1), 2, 'the connection still works');
    } finally {
      await client.stop();
      await running.close();
    }
  });
}

/** A hub whose Count method reads its upload only once `startReading` is called. */
function gatedUploadHub(): { hub: HubDefinition; startReading: () => void } {
  let startReading!: () => void;
  const reading = new Promise<void>((resolve) => (startReading = resolve));
  const hub = defineHub({
    methods: {
      Add: (_context, a: number, b: number) => a + b,
      Count: async (_context, items: AsyncIterable<unknown>) => {
        await reading;
        let count = 0;
        for await (const _item of items) count++;
        return count;
      },
    },
  });
  return { hub, startReading };
}

/** An upload of 50 items the method does not read yet, then a call behind it. */
const uploadThenAdd = [
  { type: 1, invocationId: 'count', target: 'Count', arguments: [], streamIds: ['up'] },
  ...Array.from({ length: 50 }, (_, item) => ({ type: 2, invocationId: 'up', item })),
  { type: 3, invocationId: 'up' },
  { type: 1, invocationId: 'add', target: 'Add', arguments: [1, 2] },
];

test('while an upload buffer is full the server reads nothing more from that socket, as ASP.NET awaits the upload', async () => {
  const { hub, startReading } = gatedUploadHub();
  const running = await startHub({ hub });
  const client = await RawClient.handshaken(running.url);
  try {
    client.send(...uploadThenAdd);
    await delay(200);
    assert.equal(
      client.records.find((r) => r.invocationId === 'add'),
      undefined,
      'the call behind the full upload waits',
    );
    startReading();
    assert.deepEqual(await client.next((r) => r.invocationId === 'count'), {
      type: 3,
      invocationId: 'count',
      result: 50,
    });
    assert.deepEqual(await client.next((r) => r.invocationId === 'add'), {
      type: 3,
      invocationId: 'add',
      result: 3,
    });
  } finally {
    client.close();
    await running.close();
  }
});

test('while an upload buffer is full a long-polling POST is held, and answered once the method reads', async () => {
  const { hub, startReading } = gatedUploadHub();
  const running = await startHub({ hub });
  const { connectionToken } = (await (
    await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' })
  ).json()) as { connectionToken: string };
  const url = `${running.url}?id=${connectionToken}`;
  try {
    await fetch(`${url}&_=1`);
    await fetch(url, { method: 'POST', body: '{"protocol":"json","version":1}\u001e' });
    let answered = false;
    const body = uploadThenAdd.map((record) => JSON.stringify(record) + '\u001e').join('');
    const post = fetch(url, { method: 'POST', body }).finally(() => (answered = true));
    await delay(200);
    assert.equal(answered, false, 'the POST is held while the upload is full');
    startReading();
    assert.equal((await post).status, 200);
    let received = '';
    for (let poll = 2; !(received.includes('"count"') && received.includes('"add"')); poll++) {
      received += await (await fetch(`${url}&_=${poll}`)).text();
    }
    assert.ok(received.includes('{"type":3,"invocationId":"count","result":50}'));
    assert.ok(received.includes('{"type":3,"invocationId":"add","result":3}'));
  } finally {
    await fetch(url, { method: 'DELETE' });
    await running.close();
  }
});

test('a CancelInvocation that arrives while a stream is still starting stops it: no items, then a Completion', async () => {
  const running = await startHub();
  const client = await RawClient.handshaken(running.url);
  try {
    // In the same frame as the StreamInvocation.
    client.send(
      { type: 4, invocationId: 'same-frame', target: 'Counter', arguments: [5] },
      { type: 5, invocationId: 'same-frame' },
    );
    // While the hub method awaits (50 ms) before returning its stream: sent at once, in a message of its own, so a
    // slow test process cannot let the stream start first.
    client.send({ type: 4, invocationId: 'starting', target: 'SlowCounter', arguments: [5] });
    client.send({ type: 5, invocationId: 'starting' });

    for (const invocationId of ['same-frame', 'starting']) {
      assert.deepEqual(await client.next((r) => r.type === 3 && r.invocationId === invocationId), {
        type: 3,
        invocationId,
      });
    }
    await delay(100);
    assert.deepEqual(
      client.records.filter((r) => r.type === 2),
      [],
    );
  } finally {
    client.close();
    await running.close();
  }
});

test('a second stream under an invocation id in use is refused, as by ASP.NET; the first runs on and can be cancelled', async () => {
  const running = await startHub();
  const client = await RawClient.handshaken(running.url);
  try {
    client.send({ type: 4, invocationId: 'taken', target: 'SlowCounter', arguments: [1_000] });
    client.send({ type: 4, invocationId: 'taken', target: 'Counter', arguments: [3] });
    assert.deepEqual(await client.next((r) => r.type === 3 && r.invocationId === 'taken'), {
      type: 3,
      invocationId: 'taken',
      error: "Invocation ID 'taken' is already in use.",
    });
    await client.next((r) => r.type === 2 && r.invocationId === 'taken');
    client.send({ type: 5, invocationId: 'taken' });
    assert.deepEqual(
      await client.next((r) => r.type === 3 && r.invocationId === 'taken' && !('error' in r)),
      { type: 3, invocationId: 'taken' },
    );
  } finally {
    client.close();
    await running.close();
  }
});

test('a cancelled stream whose cleanup throws harms nothing: no unhandled rejection, the connection goes on', async () => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  const running = await startHub();
  const client = await RawClient.handshaken(running.url);
  try {
    client.send({ type: 4, invocationId: 'cleanup', target: 'FailingCleanup', arguments: [] });
    await client.next((r) => r.type === 2 && r.invocationId === 'cleanup');
    client.send({ type: 5, invocationId: 'cleanup' });
    await client.next((r) => r.type === 3 && r.invocationId === 'cleanup');
    await delay(50);
    client.send({ type: 4, invocationId: 'after', target: 'Counter', arguments: [2] });
    assert.deepEqual(await client.next((r) => r.type === 3 && r.invocationId === 'after'), {
      type: 3,
      invocationId: 'after',
    });
    assert.deepEqual(rejections, []);
  } finally {
    process.off('unhandledRejection', onRejection);
    client.close();
    await running.close();
  }
});

test('a stream waiting for its next event ends at once, through context.signal, when the client cancels it or disconnects', async () => {
  const changes = new EventEmitter();
  let cleanups = 0;
  const reported: unknown[] = [];
  const running = await startHub({
    onError: (error) => reported.push(error),
    hub: defineHub({
      methods: { Echo: (_context, value: unknown) => value },
      streams: {
        Watch: async function* (context) {
          try {
            yield 'subscribed';
            for await (const [value] of on(changes, 'change', { signal: context.signal })) yield value;
          } finally {
            cleanups++;
          }
        },
      },
    }),
  });
  const cancelling = buildClient(running.url);
  const leaving = buildClient(running.url);
  await Promise.all([cancelling.start(), leaving.start()]);
  const firstItem = (client: HubConnection): Promise<ISubscription<unknown>> =>
    new Promise((resolve, reject) => {
      const subscription = client.stream('Watch').subscribe({
        next: () => resolve(subscription),
        complete: () => undefined,
        error: reject,
      });
    });
  try {
    (await firstItem(cancelling)).dispose();
    await eventually(() => cleanups === 1);
    assert.equal(await cancelling.invoke('Echo', 'still here'), 'still here');

    await firstItem(leaving);
    await leaving.stop();
    await eventually(() => cleanups === 2);
    assert.equal(changes.listenerCount('change'), 0);
    // Ending through the signal is how a stream is meant to stop, not a failure.
    await delay(50);
    assert.deepEqual(reported, []);
  } finally {
    await cancelling.stop();
    await running.close();
  }
});

test('the wrong kind of call is refused before the method runs: stream() on a method, invoke() on a stream', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    const streamed = new Promise<void>((resolve, reject) => {
      client
        .stream('JoinGroup', 'joined-by-stream')
        .subscribe({ next: () => {}, complete: resolve, error: reject });
    });
    await assert.rejects(streamed, {
      message:
        "The client attempted to invoke the non-streaming 'JoinGroup' method with a streaming invocation.",
    });
    const received: unknown[] = [];
    client.on('notify', (value: unknown) => received.push(value));
    await running.hub.clients.group('joined-by-stream').send('notify', 'the refused call joined');
    assert.equal(await client.invoke('Echo', 'after'), 'after');
    assert.deepEqual(received, [], 'JoinGroup did not run');
    await assert.rejects(client.invoke('Counter', 3), {
      message:
        "The client attempted to invoke the streaming 'Counter' method with a non-streaming invocation.",
    });
  } finally {
    await client.stop();
    await running.close();
  }
});

test('an unknown method is a binding failure, as in ASP.NET: invoke() and stream() are told the method does not exist', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    await assert.rejects(client.invoke('Nope', 1), {
      message: "Failed to invoke 'Nope' due to an error on the server. HubException: Method does not exist.",
    });
    const streamed = new Promise<void>((resolve, reject) => {
      client.stream('NopeStream').subscribe({ next: () => {}, complete: resolve, error: reject });
    });
    await assert.rejects(streamed, {
      message:
        "Failed to invoke 'NopeStream' due to an error on the server. HubException: Method does not exist.",
    });
  } finally {
    await client.stop();
    await running.close();
  }
});

for (const protocol of ['json', 'messagepack'] as const) {
  test(`a result that cannot be serialized (${protocol}) closes only that connection, with allowReconnect, as ASP.NET does`, async () => {
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    const reported: (string | undefined)[] = [];
    const running = await startHub({
      hub: defineHub({
        methods: {
          Add: (_context, a: number, b: number) => a + b,
          BigInteger: () => ({ id: 1n }),
          Circular: () => {
            const node: Record<string, unknown> = {};
            node.self = node;
            return node;
          },
        },
      }),
      onError: (_error, where) => reported.push(where.connectionId),
      clientTimeoutMs: 30_000, // only the failed write may close the connection here
    });
    const bystander = buildClient(running.url, { protocol });
    await bystander.start();
    try {
      for (const target of ['BigInteger', 'Circular']) {
        const client = buildClient(running.url, { protocol, reconnectDelays: [0] });
        const reconnecting: (string | undefined)[] = [];
        client.onreconnecting((error) => reconnecting.push(error?.message));
        await client.start();
        const connectionId = client.connectionId;
        void client.invoke(target).catch(() => undefined);
        await eventually(() => reconnecting.length > 0);
        assert.deepEqual(reconnecting, [
          'Server returned an error on close: Connection closed with an error.',
        ]);
        assert.ok(reported.includes(connectionId ?? ''), 'the failure is reported to onError');
        await client.stop();
      }
      assert.equal(await bystander.invoke('Add', 1, 2), 3);
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
      await bystander.stop();
      await running.close();
    }
  });
}

test('a hub that declares a name twice (case-insensitively) is refused', async () => {
  const hub = defineHub({ methods: { Echo: () => 1 }, streams: { echo: async function* () {} } });
  await assert.rejects(HubServer.create({ hub }), { message: "The hub declares 'echo' more than once." });
});

test('an error thrown while a stream is iterated is reported as a streaming error, after the items sent', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    const items: unknown[] = [];
    const streamed = new Promise<void>((resolve, reject) => {
      client
        .stream('FailMidway', 'ran dry')
        .subscribe({ next: (item) => items.push(item), complete: resolve, error: reject });
    });
    await assert.rejects(streamed, {
      message: 'An error occurred on the server while streaming results. HubException: ran dry',
    });
    assert.deepEqual(items, [1]);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a call with an upload stream runs alongside: later calls are answered while the upload is open', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    const numbers = new Subject<number>();
    const total = client.invoke('Sum', numbers);
    numbers.next(1);
    const added = client.invoke('Add', 1, 2);
    const outcome = await Promise.race([added, delay(1_000).then(() => 'still queued behind the upload')]);
    assert.equal(outcome, 3);
    numbers.next(2);
    numbers.complete();
    assert.equal(await total, 3);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('onError receives exceptions the client only sees generically, not HubErrors', async () => {
  const reported: ({ message: string } & ErrorSite)[] = [];
  const running = await startHub({
    onError: (error, where) => reported.push({ message: (error as Error).message, ...where }),
  });
  const client = buildClient(running.url);
  await client.start();
  try {
    await assert.rejects(client.invoke('Crash'));
    await assert.rejects(client.invoke('Fail', 'for the client'));
    assert.deepEqual(reported, [
      { message: 'secret detail', connectionId: client.connectionId!, target: 'Crash' },
    ]);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a client that goes away while sending a POST is no failure of the server: nothing is reported to onError', async () => {
  const reported: unknown[] = [];
  const running = await startHub({ onError: (error) => reported.push(error) });
  try {
    const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
    // Long polling's first poll attaches the transport and is answered at once.
    assert.equal((await fetch(`${running.url}?id=${connectionToken}`)).status, 200);
    const { port, pathname } = new URL(running.url);
    // Half a body, then the connection is cut.
    const post = request({
      port,
      host: '127.0.0.1',
      path: `${pathname}?id=${connectionToken}`,
      method: 'POST',
      headers: { 'content-length': '100' },
    });
    post.on('error', () => undefined);
    post.write('{"protocol":"json",');
    await delay(100);
    post.destroy();
    await delay(200);
    assert.deepEqual(reported, []);
  } finally {
    await running.close();
  }
});

test('client results: calls to the same client that overlap each get their own answer', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  client.on('AnswerAfter', async (ms: number, answer: string) => {
    await delay(ms);
    return answer;
  });
  await client.start();
  try {
    const proxy = running.hub.clients.client(client.connectionId!);
    const slow = proxy.invoke('AnswerAfter', 200, 'slow');
    const fast = proxy.invoke('AnswerAfter', 0, 'fast');
    assert.deepEqual(await within(Promise.all([slow, fast])), ['slow', 'fast']);
  } finally {
    await client.stop();
    await running.close();
  }
});

test("an onConnected hook that throws a HubError fails the client's start() with its message", async () => {
  const running = await startHub({
    hub: defineHub({
      ...testHub,
      onConnected: () => {
        throw new HubError('not today');
      },
    }),
  });
  const client = buildClient(running.url, { reconnectDelays: [0] });
  try {
    await assert.rejects(client.start(), {
      message: 'Server returned an error on close: Connection closed with an error. HubException: not today',
    });
  } finally {
    await client.stop();
    await running.close();
  }
});

test("the disconnect hook gets the reason a client's Close message gives, and none on a plain stop()", async () => {
  const reasons = new Map<string, string | undefined>();
  const running = await startHub({
    hub: defineHub({
      ...testHub,
      onDisconnected: (context: HubCallContext, error: Error | undefined) =>
        void reasons.set(context.connectionId, error?.message),
    }),
  });
  try {
    const failing = await RawClient.handshaken(running.url);
    const {
      target,
      arguments: [{ clientId: failingId }],
    } = (await failing.next((record) => record.target === 'Connected')) as {
      target: string;
      arguments: [{ clientId: string }];
    };
    assert.equal(target, 'Connected');
    failing.send({ type: 7, error: 'the client gave up' });
    await failing.closed;

    const client = buildClient(running.url);
    await client.start();
    const id = client.connectionId!;
    await client.stop();
    await eventually(() => reasons.has(failingId) && reasons.has(id));
    assert.equal(reasons.get(failingId), 'the client gave up');
    assert.equal(reasons.get(id), undefined);
  } finally {
    await running.close();
  }
});

test("an upload the client ends with an error fails the hub method that reads it, and the client's call", async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  await client.start();
  try {
    const numbers = new Subject<number>();
    const sum = client.invoke('Sum', numbers);
    numbers.next(1);
    await delay(100); // the method now waits for the next item
    numbers.error(new Error('the client gave up'));
    await assert.rejects(sum, { message: "An unexpected error occurred invoking 'Sum' on the server." });
  } finally {
    await client.stop();
    await running.close();
  }
});

test('client results: a call still waiting when the client disconnects fails instead of hanging', async () => {
  const running = await startHub();
  const client = buildClient(running.url);
  client.on('NeverAnswers', () => new Promise(() => undefined));
  await client.start();
  try {
    const waiting = running.hub.clients.client(client.connectionId!).invoke('NeverAnswers');
    await delay(100);
    await client.stop();
    await assert.rejects(within(waiting), { message: 'The connection ended.' });
  } finally {
    await running.close();
  }
});

test('no call runs before onConnected has finished, nor after it failed, as ASP.NET dispatches nothing until then', async () => {
  const ran: string[] = [];
  let hookDone = false;
  const gate = (rejecting: boolean) =>
    defineHub({
      methods: {
        Plain: () => void ran.push(`Plain after hook: ${hookDone}`),
        Upload: async (_context, items: AsyncIterable<number>) => {
          ran.push(`Upload after hook: ${hookDone}`);
          for await (const _ of items);
        },
      },
      streams: {
        Items: async function* () {
          ran.push(`Items after hook: ${hookDone}`);
          yield 1;
        },
      },
      // A hook that looks something up (a database, an identity provider), then may refuse the connection.
      onConnected: async () => {
        await delay(100);
        hookDone = true;
        if (rejecting) throw new HubError('not allowed');
      },
    });
  const calls = [
    { type: 4, invocationId: '1', target: 'Items', arguments: [] },
    { type: 1, invocationId: '2', target: 'Upload', arguments: [], streamIds: ['s'] },
    { type: 3, invocationId: 's' },
    { type: 1, invocationId: '3', target: 'Plain', arguments: [] },
  ];

  const refusing = await startHub({ hub: gate(true) });
  try {
    const client = await RawClient.connect(refusing.url);
    client.send({ protocol: 'json', version: 1 }, ...calls);
    const close = await client.next((record) => record.type === 7);
    assert.equal(close.error, 'Connection closed with an error. HubException: not allowed');
    await delay(50);
    assert.deepEqual(ran, [], 'no method of a connection its onConnected refused runs');
    client.close();
  } finally {
    await refusing.close();
  }

  hookDone = false;
  const accepting = await startHub({ hub: gate(false) });
  try {
    const client = await RawClient.connect(accepting.url);
    client.send({ protocol: 'json', version: 1 }, ...calls);
    await client.next((record) => record.type === 3 && record.invocationId === '1');
    await client.next((record) => record.type === 3 && record.invocationId === '2');
    await client.next((record) => record.type === 3 && record.invocationId === '3');
    assert.deepEqual(ran.sort(), [
      'Items after hook: true',
      'Plain after hook: true',
      'Upload after hook: true',
    ]);
    client.close();
  } finally {
    await accepting.close();
  }
});
