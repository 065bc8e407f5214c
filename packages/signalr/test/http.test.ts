import assert from 'node:assert/strict';
import { once } from 'node:events';
import {
  type ClientRequest,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { after, before, test } from 'node:test';
import { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
import Fastify from 'fastify';
import { WebSocket } from 'ws';
import { HubServer, mountOnHttpServer, registerFastifyHub } from '../src/index.ts';
import {
  buildClient,
  delay,
  eventually,
  HUB_PATH,
  RawClient,
  type RunningHub,
  startHub,
  testHub,
} from './helpers.ts';

let running: RunningHub;
before(async () => {
  running = await startHub();
});
after(() => running.close());

async function negotiate(query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${running.url}/negotiate${query}`, { method: 'POST' });
  assert.equal(response.status, 200);
  return (await response.json()) as Record<string, unknown>;
}

/** A long-polling connection on `hubUrl` whose handshake is sent (its answer not yet polled): the URL of its polls. */
async function longPollingConnection(
  hubUrl: string,
  { handshakeVersion = 1, stateful = false } = {},
): Promise<string> {
  const query = `?negotiateVersion=1${stateful ? '&useStatefulReconnect=true' : ''}`;
  const negotiated = await fetch(`${hubUrl}/negotiate${query}`, { method: 'POST' });
  const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
  const url = `${hubUrl}?id=${connectionToken}`;
  assert.equal((await fetch(`${url}&_=0`)).status, 200, 'the first poll returns at once');
  await fetch(url, { method: 'POST', body: `{"protocol":"json","version":${handshakeVersion}}\u001e` });
  return url;
}

test('negotiate v1 returns a token distinct from the id, WebSockets listed first', async () => {
  const body = await negotiate('?negotiateVersion=1');
  assert.equal(body.negotiateVersion, 1);
  assert.equal(typeof body.connectionToken, 'string');
  assert.notEqual(body.connectionToken, body.connectionId);
  assert.deepEqual(body.availableTransports, [
    { transport: 'WebSockets', transferFormats: ['Text', 'Binary'] },
    { transport: 'ServerSentEvents', transferFormats: ['Text'] },
    { transport: 'LongPolling', transferFormats: ['Text', 'Binary'] },
  ]);
  assert.equal('useStatefulReconnect' in body, false, 'stateful reconnect only when asked');
  assert.equal('ProtocolVersion' in body, false);
});

test('negotiate v0 omits the token; versions above 1 are capped; a bad version is an error', async () => {
  assert.equal('connectionToken' in (await negotiate('')), false);
  assert.equal((await negotiate('?negotiateVersion=7')).negotiateVersion, 1);
  assert.equal((await negotiate('?negotiateVersion=1&useStatefulReconnect=true')).useStatefulReconnect, true);
  assert.deepEqual(await negotiate('?negotiateVersion=x'), {
    error: "The client requested an invalid protocol version 'x'",
  });
  const get = await fetch(`${running.url}/negotiate`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  const put = await fetch(running.url, { method: 'PUT' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get('allow'), 'GET, POST, DELETE');
});

for (const transport of [
  HttpTransportType.WebSockets,
  HttpTransportType.ServerSentEvents,
  HttpTransportType.LongPolling,
]) {
  test(`a negotiate v0 client (${HttpTransportType[transport]}) connects with its connection id as id`, async () => {
    // The official client honours a negotiateVersion in the hub URL, as older clients send it.
    const client = buildClient(`${running.url}?negotiateVersion=0`, { transport });
    await client.start();
    try {
      assert.equal(await client.invoke('Add', 1, 2), 3);
    } finally {
      await client.stop();
    }
  });
}

test('transport requests without an id get 400, with an unknown id 404', async () => {
  assert.equal((await fetch(`${running.url}?_=1`)).status, 400);
  assert.equal((await fetch(`${running.url}?id=nope`)).status, 404);
  assert.equal((await fetch(`${running.url}?id=nope`, { method: 'POST', body: 'x' })).status, 404);
});

test('a WebSocket with an empty id starts a new connection, as one without an id does (ASP.NET reads both as none)', async () => {
  const client = await RawClient.handshaken(`${running.url}?id=`);
  try {
    client.send({ type: 1, invocationId: '1', target: 'Add', arguments: [40, 2] });
    assert.equal((await client.next((record) => record.type === 3)).result, 42);
  } finally {
    client.ws.close();
  }
});

test('a request for another transport than the connection has is a 400 "Cannot change transports mid-connection"; a second event stream a 409', async () => {
  const changeRefused = async (response: Response): Promise<void> => {
    assert.equal(response.status, 400);
    assert.equal(await response.text(), 'Cannot change transports mid-connection');
  };
  const eventStream = (token: string, signal?: AbortSignal): Promise<Response> =>
    fetch(`${running.url}?id=${token}`, { headers: { Accept: 'text/event-stream' }, signal });

  const polling = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  assert.equal((await fetch(`${running.url}?id=${polling.connectionToken}&_=1`)).status, 200);
  await changeRefused(await eventStream(polling.connectionToken));
  await fetch(`${running.url}?id=${polling.connectionToken}`, { method: 'DELETE' });

  const socket = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const ws = new WebSocket(`${running.url.replace(/^http/, 'ws')}?id=${socket.connectionToken}`);
  await once(ws, 'open');
  await changeRefused(await eventStream(socket.connectionToken));
  await changeRefused(await fetch(`${running.url}?id=${socket.connectionToken}&_=1`));
  ws.close();

  const events = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const stream = new AbortController();
  assert.equal((await eventStream(events.connectionToken, stream.signal)).status, 200);
  assert.equal((await eventStream(events.connectionToken)).status, 409);
  await changeRefused(await fetch(`${running.url}?id=${events.connectionToken}&_=1`));
  stream.abort();
});

test('overlapping POSTs on one long-polling connection wait their turn: both are accepted and read in order', async () => {
  const { connectionToken } = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const url = `${running.url}?id=${connectionToken}`;
  assert.equal((await fetch(`${url}&_=1`)).status, 200);
  assert.equal(
    (await fetch(url, { method: 'POST', body: '{"protocol":"json","version":1}\u001e' })).status,
    200,
  );
  const add = (invocationId: string, a: number): string =>
    JSON.stringify({ type: 1, invocationId, target: 'Add', arguments: [a, 1] }) + '\u001e';

  // The first POST's body arrives in two pieces; the second POST starts in between.
  const first = request(url, { method: 'POST' });
  const firstStatus = new Promise<number>((resolve) =>
    first.on('response', (response) => {
      response.resume();
      resolve(response.statusCode!);
    }),
  );
  const body = add('first', 1);
  first.write(body.slice(0, 10));
  await delay(50);
  const second = fetch(url, { method: 'POST', body: add('second', 2) });
  await delay(50);
  first.end(body.slice(10));
  assert.deepEqual([await firstStatus, (await second).status], [200, 200]);

  let received = '';
  for (let poll = 2; !received.includes('"second"'); poll++) {
    received += await (await fetch(`${url}&_=${poll}`)).text();
  }
  const completions = received.split('\u001e').filter((record) => record.includes('"type":3'));
  assert.deepEqual(completions, [
    '{"type":3,"invocationId":"first","result":2}',
    '{"type":3,"invocationId":"second","result":3}',
  ]);
  assert.equal((await fetch(url, { method: 'DELETE' })).status, 202);
});

test('long polling stop() sends DELETE, answered 202, and the held poll ends with 204', async () => {
  const statuses: string[] = [];
  const record = (req: IncomingMessage, res: ServerResponse): void => {
    res.on('close', () => statuses.push(`${req.method} ${res.statusCode}`));
  };
  running.httpServer!.on('request', record);
  const client = buildClient(running.url, { transport: HttpTransportType.LongPolling });
  await client.start();
  await client.invoke('Echo', 1);
  await client.stop();
  await eventually(() => statuses.includes('DELETE 202') && statuses.includes('GET 204'));
  running.httpServer!.off('request', record);
  await eventually(() => running.hub.stats().connections === 0);
});

test('on Fastify, headers set by hooks (e.g. CORS) reach the hub responses', async () => {
  const fastify = await startHub(
    {},
    {
      mount: 'fastify',
      configure: (app) => {
        app.addHook('onRequest', async (_request, reply) => {
          reply.header('access-control-allow-origin', 'http://app.example');
        });
      },
    },
  );
  try {
    const response = await fetch(`${fastify.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), 'http://app.example');
    await response.json();
  } finally {
    await fastify.close();
  }
});

test('on a Fastify instance that ignores trailing slashes the hub mounts, and a trailing-slash URL reaches it', async () => {
  const hub = await HubServer.create({ hub: testHub });
  const app = Fastify({ forceCloseConnections: true, routerOptions: { ignoreTrailingSlash: true } });
  await registerFastifyHub(app, HUB_PATH, hub);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}${HUB_PATH}/`;
  const client = buildClient(url, { transport: HttpTransportType.LongPolling });
  try {
    await client.start();
    assert.equal(await client.invoke('Echo', 'hi'), 'hi');
  } finally {
    await client.stop();
    await app.close();
  }
});

test('MessagePack over Server-Sent Events is refused in the handshake with the ASP.NET text', async () => {
  const { connectionToken } = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const events = await fetch(`${running.url}?id=${connectionToken}`, {
    headers: { Accept: 'text/event-stream' },
  });
  assert.equal(events.status, 200);
  assert.equal(events.headers.get('content-type'), 'text/event-stream');
  const post = await fetch(`${running.url}?id=${connectionToken}`, {
    method: 'POST',
    body: '{"protocol":"messagepack","version":1}\u001e',
  });
  assert.equal(post.status, 200);
  const text = await events.text(); // the server ends the stream after the error
  const error =
    "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format.";
  assert.equal(text, `:\r\ndata: ${JSON.stringify({ error })}\u001e\r\n\r\n`);
});

test('long polling: a newer poll ends the held one with 204', async () => {
  const { connectionToken } = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const poll = (): Promise<Response> => fetch(`${running.url}?id=${connectionToken}&_=${Date.now()}`);
  assert.equal((await poll()).status, 200, 'the first poll returns at once');
  const held = poll();
  await delay(50);
  const newer = poll();
  assert.equal((await held).status, 204);
  const handshake = await fetch(`${running.url}?id=${connectionToken}`, {
    method: 'POST',
    body: '{"protocol":"json","version":1}\u001e{"type":1,"invocationId":"1","target":"Add","arguments":[2,2]}\u001e',
  });
  assert.equal(handshake.status, 200);
  const body = await (await newer).text();
  assert.ok(body.startsWith('{}\u001e'), 'the handshake reply comes first');
  const rest = body.slice(3) + (body.includes('"invocationId":"1"') ? '' : await (await poll()).text());
  assert.ok(
    rest.includes('{"type":3,"invocationId":"1","result":4}\u001e'),
    'a message after the handshake in one POST',
  );
  assert.equal((await fetch(`${running.url}?id=${connectionToken}`, { method: 'DELETE' })).status, 202);
});

test('long polling: an idle poll is held until there is something to send, not answered with keep-alive pings', async () => {
  const url = await longPollingConnection(running.url);
  // Many keep-alive intervals (200 ms here): the polls take the handshake reply and Connected, then one is held.
  const deadline = Date.now() + 1_500;
  let received = '';
  let held = false;
  for (let poll = 1; !held; poll++) {
    try {
      const response = await fetch(`${url}&_=${poll}`, {
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      received += await response.text();
    } catch {
      held = true;
    }
  }
  assert.ok(received.startsWith('{}\u001e'), 'the handshake reply came');
  assert.ok(received.includes('"target":"Connected"'));
  assert.ok(!received.includes('{"type":6}'), `no ping: ${JSON.stringify(received)}`);
  assert.equal((await fetch(url, { method: 'DELETE' })).status, 202);
});

test('the official client with skipNegotiation connects straight over WebSockets', async () => {
  const client = buildClient(running.url, { http: { skipNegotiation: true } });
  await client.start();
  try {
    assert.equal(client.connectionId, null, 'without negotiate the client never learns its id');
    assert.equal(await client.invoke('Add', 40, 2), 42);
  } finally {
    await client.stop();
  }
});

/** A request asking to switch protocols, as `curl --http2` sends on plain HTTP (h2c), or as a WebSocket does. */
function askingToUpgrade(
  url: string,
  { method = 'GET', upgrade = 'h2c', body }: { method?: string; upgrade?: string; body?: string } = {},
): Promise<{ status: number; connection: string | undefined; text: string }> {
  const headers: Record<string, string> =
    upgrade === 'websocket'
      ? {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        }
      : {
          Connection: 'Upgrade, HTTP2-Settings',
          Upgrade: upgrade,
          'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA',
        };
  return new Promise((resolve, reject) => {
    const sent = request(url, { method, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode!, connection: response.headers.connection, text }),
      );
    });
    sent.on('upgrade', () => reject(new Error('the server switched protocols')));
    sent.on('error', reject);
    sent.end(body);
  });
}

/**
 * Writes `requests` at once and `later` a moment after (in a packet of its own), and reads until the server ends the
 * connection (the client never ends its side).
 */
function pipelined(port: number, requests: string, later: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(requests);
      setTimeout(() => socket.write(later), 5);
    });
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    socket.on('end', () => resolve(received));
    socket.on('error', reject);
  });
}

function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );
}

for (const mount of ['node', 'fastify'] as const) {
  test(`on ${mount}, a request asking to switch protocols is answered as a plain one, never dropped unanswered`, async () => {
    const hub = await HubServer.create({ hub: testHub });
    // Answered a moment later, so that a pipelined request finds the response before it still being written.
    const answer = async (method: string, url: string | undefined) => {
      await delay(20);
      return `plain ${method} ${url}`;
    };
    let url: string;
    let server: Server;
    let close: () => Promise<void>;
    if (mount === 'fastify') {
      const app = Fastify({ forceCloseConnections: true });
      app.get('/other', (request) => answer('GET', request.url));
      app.post('/other', (request) => answer('POST', request.url));
      await registerFastifyHub(app, HUB_PATH, hub);
      url = await app.listen({ host: '127.0.0.1', port: 0 });
      server = app.server;
      close = () => app.close();
    } else {
      server = createServer((req, res) => void answer(req.method!, req.url).then((text) => res.end(text)));
      mountOnHttpServer(server, HUB_PATH, hub);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      close = async () => {
        await hub.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      };
    }
    try {
      assert.deepEqual(await askingToUpgrade(`${url}/other?a=1`), {
        status: 200,
        connection: 'close',
        text: 'plain GET /other?a=1',
      });
      const negotiated = await askingToUpgrade(`${url}${HUB_PATH}/negotiate?negotiateVersion=1`, {
        method: 'POST',
      });
      assert.equal(negotiated.status, 200, 'negotiate, asked to switch to h2c');
      assert.equal(
        typeof (JSON.parse(negotiated.text) as { connectionToken: unknown }).connectionToken,
        'string',
      );
      const webSocketElsewhere = await askingToUpgrade(`${url}/other`, { upgrade: 'websocket' });
      assert.deepEqual([webSocketElsewhere.status, webSocketElsewhere.text], [200, 'plain GET /other']);
      // Its bytes are past Node's parser, which let go of the connection: refused, never taken as an empty body.
      const withBody = await askingToUpgrade(`${url}/other`, { method: 'POST', body: 'hello' });
      assert.equal(withBody.status, 400);
      assert.match(withBody.text, /without Upgrade/);
      // Pipelined behind a request still being answered, and followed by one more: answered in turn, after which
      // the connection closes (the request after it is left for the client to send again), wholly, on the server too.
      const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
      const upgrade =
        'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n';
      const received = await pipelined(
        Number(new URL(url).port),
        get('/other?n=1') + get('/other?n=2', upgrade),
        get('/other?n=3'),
      );
      assert.match(
        received,
        /^HTTP\/1.1 200 [\s\S]*plain GET \/other\?n=1HTTP\/1.1 200 [\s\S]*plain GET \/other\?n=2$/,
      );
      for (const deadline = Date.now() + 5_000; (await connectionsOf(server)) > 0; await delay(20))
        assert.ok(Date.now() < deadline, 'the server closed the connection');
      // The hub's own WebSockets still upgrade.
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${HUB_PATH}`);
      await once(ws, 'open');
      ws.close();
    } finally {
      await close();
    }
  });
}

test('two hubs on one node:http server: each takes its WebSockets, other upgrades are still answered, one path once', async () => {
  const [first, second] = await Promise.all([
    HubServer.create({ hub: testHub }),
    HubServer.create({ hub: testHub }),
  ]);
  const server = createServer((req, res) => res.end(`plain ${req.method} ${req.url}`));
  mountOnHttpServer(server, '/hubs/first', first);
  mountOnHttpServer(server, '/hubs/second', second);
  assert.throws(() => mountOnHttpServer(server, '/Hubs/First/', second), /mounted at '\/Hubs\/First\/'/);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const path of ['/hubs/first', '/hubs/second']) {
      const client = buildClient(`${url}${path}`);
      await client.start();
      assert.equal(await client.invoke('Add', 40, 2), 42);
      await client.stop();
    }
    assert.deepEqual(await askingToUpgrade(`${url}/other`), {
      status: 200,
      connection: 'close',
      text: 'plain GET /other',
    });
    const webSocketElsewhere = await askingToUpgrade(`${url}/other`, { upgrade: 'websocket' });
    assert.deepEqual([webSocketElsewhere.status, webSocketElsewhere.text], [200, 'plain GET /other']);
  } finally {
    await Promise.all([first.close(), second.close()]);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('long polling: a poll held past the poll timeout ends empty (200), and the official client just polls again', async () => {
  // No keep-alive pings: they would end every poll before its timeout.
  const running = await startHub({
    longPollTimeoutMs: 300,
    keepAliveIntervalMs: 60_000,
    clientTimeoutMs: 60_000,
  });
  const client = buildClient(running.url, { transport: HttpTransportType.LongPolling });
  let closed = false;
  client.onclose(() => (closed = true));
  try {
    const url = await longPollingConnection(running.url);
    // Polled until one finds nothing to send (the handshake answer and Connected come first).
    let body: string | undefined;
    let startedAt = 0;
    for (let poll = 1; body !== ''; poll++) {
      startedAt = performance.now();
      const response = await fetch(`${url}&_=${poll}`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(response.status, 200);
      body = await response.text();
    }
    assert.ok(performance.now() - startedAt >= 250, 'the empty poll was held until its timeout');

    await client.start();
    await delay(1_000);
    assert.equal(closed, false);
    assert.equal(client.state, HubConnectionState.Connected);
    assert.equal(await client.invoke('Add', 2, 2), 4);
  } finally {
    await client.stop();
    await running.close();
  }
});

test('a second WebSocket for a connection whose socket is open is a 409; a POST to a WebSocket connection a 405', async () => {
  const { connectionToken } = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const socketUrl = `${running.url.replace(/^http/, 'ws')}?id=${connectionToken}`;
  const ws = new WebSocket(socketUrl);
  await once(ws, 'open');
  const second = new WebSocket(socketUrl);
  const [request, response] = (await once(second, 'unexpected-response')) as [ClientRequest, IncomingMessage];
  assert.equal(response.statusCode, 409);
  request.destroy();
  const post = await fetch(`${running.url}?id=${connectionToken}`, {
    method: 'POST',
    body: '{"type":6}\u001e',
  });
  assert.equal(post.status, 405);
  ws.close();
});

test('long polling: after the server closes a connection, a poll takes the Close, and the next one gets 204', async () => {
  const { connectionId, connectionToken } = (await negotiate('?negotiateVersion=1')) as {
    connectionId: string;
    connectionToken: string;
  };
  const url = `${running.url}?id=${connectionToken}`;
  assert.equal((await fetch(`${url}&_=0`)).status, 200);
  await fetch(url, { method: 'POST', body: '{"protocol":"json","version":1}\u001e' });
  let received = '';
  for (let poll = 1; !received.includes('"target":"Connected"'); poll++) {
    received += await (await fetch(`${url}&_=${poll}`)).text();
  }
  running.hub.closeConnection(connectionId, 'closed by the server');
  const last = await fetch(`${url}&_=last`);
  assert.equal(await last.text(), '{"type":7,"error":"closed by the server"}\u001e');
  assert.equal(last.headers.get('cache-control'), 'no-cache, no-store', 'polls are never cached');
  assert.equal((await fetch(`${url}&_=after`)).status, 204, 'the client stops polling');
});

test('an event stream is sent as text/event-stream, never cached', async () => {
  const { connectionToken } = (await negotiate('?negotiateVersion=1')) as { connectionToken: string };
  const stream = new AbortController();
  const response = await fetch(`${running.url}?id=${connectionToken}`, {
    headers: { Accept: 'text/event-stream' },
    signal: stream.signal,
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/event-stream');
  assert.equal(response.headers.get('cache-control'), 'no-cache');
  stream.abort();
});

test('stateful reconnect is for WebSockets only: a long-polling client that shakes hands with version 2 gets a plain connection', async () => {
  const url = await longPollingConnection(running.url, { handshakeVersion: 2, stateful: true });
  // A stateful connection would hold Connected until the client's first message.
  const deadline = Date.now() + 3_000;
  let received = '';
  for (let poll = 1; !received.includes('"target":"Connected"'); poll++) {
    const response = await fetch(`${url}&_=${poll}`, {
      signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
    });
    received += await response.text();
  }
  assert.equal((await fetch(url, { method: 'DELETE' })).status, 202);
});

test('long polling: a client that stops polling without a DELETE is ended after the disconnect timeout', async () => {
  const own = await startHub();
  try {
    const url = await longPollingConnection(own.url);
    let received = '';
    for (let poll = 1; !received.includes('"target":"Connected"'); poll++) {
      received += await (await fetch(`${url}&_=${poll}`)).text();
    }
    assert.equal(own.hub.stats().connections, 1);
    await eventually(() => own.hub.stats().connections === 0);
    assert.equal((await fetch(`${url}&_=late`)).status, 204, 'a late poll learns the connection is over');
  } finally {
    await own.close();
  }
});

test('a long-polling POST answered before its body was read (over the message size) ends its HTTP connection: the next request on the same client is answered', async () => {
  const running = await startHub();
  try {
    const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
    const connection = `${running.url}?id=${encodeURIComponent(connectionToken)}`;
    assert.equal((await fetch(connection)).status, 200, 'the first poll attaches long polling');
    const oversized = `{"protocol":"json","version":1}\x1e{"type":1,"target":"Echo","arguments":["${'x'.repeat(500_000)}"]}\x1e`;
    const posted = await fetch(connection, { method: 'POST', body: oversized });
    assert.equal(posted.status, 404);
    assert.equal(posted.headers.get('connection'), 'close');
    await posted.text();
    const stop = await fetch(connection, { method: 'DELETE', signal: AbortSignal.timeout(5_000) });
    assert.equal(stop.status, 202);
  } finally {
    await running.close();
  }
});

test('onUpgrade hears of every WebSocket upgrade with the status it was answered: 101, or its refusal', async () => {
  const upgrades: { url: string; status: number; durationMs: number }[] = [];
  const own = await startHub({
    onUpgrade: (request, status, durationMs) => upgrades.push({ url: request.url ?? '', status, durationMs }),
  });
  try {
    const wsUrl = own.url.replace(/^http/, 'ws');
    const opened = new WebSocket(wsUrl);
    await once(opened, 'open');
    const unknown = new WebSocket(`${wsUrl}?id=nope`);
    const [request] = (await once(unknown, 'unexpected-response')) as [ClientRequest, IncomingMessage];
    request.destroy();
    // One ws refuses itself: a handshake without a valid Sec-WebSocket-Key.
    const { port } = new URL(own.url);
    const raw = connect(Number(port), '127.0.0.1');
    raw.end(
      `GET ${HUB_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    raw.resume();
    await once(raw, 'close');
    await eventually(() => upgrades.length === 3);
    assert.deepEqual(
      upgrades.map(({ url, status }) => [url, status]),
      [
        [HUB_PATH, 101],
        [`${HUB_PATH}?id=nope`, 404],
        [HUB_PATH, 400],
      ],
    );
    assert.ok(upgrades.every(({ durationMs }) => durationMs >= 0 && durationMs < 5_000));
    opened.close();
  } finally {
    await own.close();
  }
});
