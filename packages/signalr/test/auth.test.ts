import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import { after, before, test } from 'node:test';
import { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
import { WebSocket } from 'ws';
import { AuthenticationUnavailableError, ForbiddenError, type AuthRequest } from '../src/index.ts';
import { buildClient, delay, nextInvocation, type RunningHub, startHub } from './helpers.ts';

let running: RunningHub;
const seen: { method: string; token: string | undefined; viaQuery: boolean }[] = [];

function authenticate({ token, url }: AuthRequest): { id: string } | null {
  seen.push({ method: url.pathname, token, viaQuery: url.searchParams.has('access_token') });
  if (token === 'known-but-not-allowed') throw new ForbiddenError();
  if (token === 'cannot-tell-now') throw new AuthenticationUnavailableError();
  return token?.startsWith('token-') ? { id: token.slice('token-'.length) } : null;
}

before(async () => {
  running = await startHub({ authenticate });
});
after(() => running.close());

for (const transport of [
  HttpTransportType.WebSockets,
  HttpTransportType.ServerSentEvents,
  HttpTransportType.LongPolling,
]) {
  test(`accessTokenFactory over ${HttpTransportType[transport]}: every request carries the token and the user reaches the hub`, async () => {
    seen.length = 0;
    const client = buildClient(running.url, { transport, http: { accessTokenFactory: () => 'token-alice' } });
    await client.start();
    try {
      assert.equal(await client.invoke('WhoAmI'), 'alice');
    } finally {
      await client.stop();
    }
    assert.ok(seen.length >= 2, 'negotiate and the transport requests were authenticated');
    assert.ok(seen.every((request) => request.token === 'token-alice'));
    if (transport === HttpTransportType.ServerSentEvents) {
      assert.ok(
        seen.some((request) => request.viaQuery),
        'the SSE GET carries access_token in the query',
      );
    }
  });
}

test('the Bearer scheme is read in any case, as ASP.NET Core reads it', async () => {
  for (const scheme of ['bearer', 'BEARER']) {
    const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, {
      method: 'POST',
      headers: { authorization: `${scheme} token-alice` },
    });
    assert.equal(negotiated.status, 200, scheme);
  }
});

test('Authorization lines reach the hook as one, the non-empty ones joined, as ASP.NET Core reads them', async () => {
  seen.length = 0;
  const url = new URL(`${running.url}/negotiate?negotiateVersion=1`);
  // Headers as a flat list, as sent: the only way to send one twice (Node then sends no Host of its own).
  const headers = [
    'host',
    url.host,
    'authorization',
    '',
    'authorization',
    'Bearer token-alice',
    'authorization',
    'Bearer token-bob',
  ];
  const request = http.request(url, { method: 'POST', headers });
  request.end();
  const [response] = (await once(request, 'response')) as [IncomingMessage];
  response.resume();
  assert.deepEqual(
    seen.map((request) => request.token),
    // StringValues.ToString(): the non-empty values, joined by a bare comma.
    ['token-alice,Bearer token-bob'],
  );
});

test('a rejected token fails negotiate with 401', async () => {
  const client = buildClient(running.url, { http: { accessTokenFactory: () => 'forged' } });
  await assert.rejects(client.start(), /Status code '401'/);
});

test('a caller the hook knows but refuses (ForbiddenError) gets 403, on negotiate and on a direct WebSocket', async () => {
  const negotiating = buildClient(running.url, {
    http: { accessTokenFactory: () => 'known-but-not-allowed' },
  });
  await assert.rejects(negotiating.start(), /Status code '403'/);
  // The official client does not report an upgrade's status, so a bare socket asks.
  const direct = new WebSocket(`${running.url.replace(/^http/, 'ws')}?access_token=known-but-not-allowed`);
  const [request, response] = (await once(direct, 'unexpected-response')) as [ClientRequest, IncomingMessage];
  assert.equal(response.statusCode, 403);
  request.destroy();
});

test('a hook that cannot decide now (AuthenticationUnavailableError) gets 503, so the client keeps its token', async () => {
  const negotiating = buildClient(running.url, { http: { accessTokenFactory: () => 'cannot-tell-now' } });
  await assert.rejects(negotiating.start(), /Status code '503'/);

  const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, {
    method: 'POST',
    headers: { authorization: 'Bearer token-alice' },
  });
  const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
  const poll = await fetch(`${running.url}?id=${connectionToken}`, {
    headers: { authorization: 'Bearer cannot-tell-now' },
  });
  assert.equal(poll.status, 503, 'a transport request');
  assert.equal(poll.headers.get('retry-after'), '5');

  const direct = new WebSocket(`${running.url.replace(/^http/, 'ws')}?access_token=cannot-tell-now`);
  const [request, response] = (await once(direct, 'unexpected-response')) as [ClientRequest, IncomingMessage];
  assert.equal(response.statusCode, 503, 'a WebSocket upgrade without negotiate');
  request.destroy();
});

test('a WebSocket upgrade refused with 401 carries WWW-Authenticate: Bearer and no-store, as the other 401s do', async () => {
  const direct = new WebSocket(`${running.url.replace(/^http/, 'ws')}?access_token=forged`);
  const [request, response] = (await once(direct, 'unexpected-response')) as [ClientRequest, IncomingMessage];
  assert.equal(response.statusCode, 401);
  assert.equal(response.headers['www-authenticate'], 'Bearer');
  // A refusal is no answer to keep: a cache that did would refuse the caller again once the token is good.
  assert.equal(response.headers['cache-control'], 'no-store');
  request.destroy();
  const poll = await fetch(`${running.url}?id=unknown`, { headers: { authorization: 'Bearer forged' } });
  assert.equal(poll.status, 401);
  assert.equal(poll.headers.get('cache-control'), 'no-store', 'a transport request refused');
});

test('a send to a user reaches every connection of that user and nobody else', async () => {
  const alice1 = buildClient(running.url, { http: { accessTokenFactory: () => 'token-alice' } });
  const alice2 = buildClient(running.url, {
    transport: HttpTransportType.LongPolling,
    http: { accessTokenFactory: () => 'token-alice' },
  });
  const bob = buildClient(running.url, { http: { accessTokenFactory: () => 'token-bob' } });
  await Promise.all([alice1.start(), alice2.start(), bob.start()]);
  try {
    let bobGot = 0;
    bob.on('notify', () => bobGot++);
    const got1 = nextInvocation(alice1, 'notify');
    const got2 = nextInvocation(alice2, 'notify');
    await running.hub.clients.user('alice').send('notify', 'for alice');
    assert.deepEqual(await got1, ['for alice']);
    assert.deepEqual(await got2, ['for alice']);
    await delay(100);
    assert.equal(bobGot, 0);
  } finally {
    await Promise.all([alice1.stop(), alice2.stop(), bob.stop()]);
  }
});

test('every request of a connection is authenticated: a POST or DELETE without the token gets 401 and is not read', async () => {
  const owner = { Authorization: 'Bearer token-alice' };
  const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, {
    method: 'POST',
    headers: owner,
  });
  const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
  const url = `${running.url}?id=${connectionToken}`;
  assert.equal((await fetch(`${url}&_=1`, { headers: owner })).status, 200);
  const handshake = '{"protocol":"json","version":1}\u001e';
  assert.equal((await fetch(url, { method: 'POST', body: handshake })).status, 401);
  assert.equal((await fetch(url, { method: 'DELETE' })).status, 401);

  // The anonymous handshake was not taken: the owner's is, and the connection goes on.
  assert.equal((await fetch(url, { method: 'POST', body: handshake, headers: owner })).status, 200);
  assert.ok((await (await fetch(`${url}&_=2`, { headers: owner })).text()).startsWith('{}\u001e'));
  assert.equal((await fetch(url, { method: 'DELETE', headers: owner })).status, 202);
});

test('a token that expires mid-connection: the 401 has a long-polling client fetch a new one and go on, on the same connection', async () => {
  let current = 'alice-1';
  const expiring = await startHub({
    longPollTimeoutMs: 200,
    authenticate: ({ token }) => (token === current ? { id: 'alice' } : null),
  });
  const client = buildClient(expiring.url, {
    transport: HttpTransportType.LongPolling,
    http: { accessTokenFactory: () => current },
  });
  try {
    await client.start();
    const connectionId = client.connectionId;
    current = 'alice-2';
    // The send and the polls still carry alice-1: each gets 401, and the client (11.x) retries it with a new token.
    assert.equal(await client.invoke('WhoAmI'), 'alice');
    await delay(500);
    assert.equal(client.state, HubConnectionState.Connected);
    assert.equal(client.connectionId, connectionId);
  } finally {
    await client.stop();
    await expiring.close();
  }
});

test("another user's requests on a connection get 403, whatever the transport: its token alone does not hand it over", async () => {
  const alice = { Authorization: 'Bearer token-alice' };
  const bob = { Authorization: 'Bearer token-bob' };
  const negotiate = async () => {
    const negotiated = await fetch(`${running.url}/negotiate?negotiateVersion=1`, {
      method: 'POST',
      headers: alice,
    });
    return ((await negotiated.json()) as { connectionToken: string }).connectionToken;
  };
  const handshake = '{"protocol":"json","version":1}\u001e';

  // Long polling: Bob can neither take the first poll, nor send, nor end it.
  const url = `${running.url}?id=${await negotiate()}`;
  assert.equal((await fetch(`${url}&_=1`, { headers: bob })).status, 403);
  assert.equal((await fetch(`${url}&_=2`, { headers: alice })).status, 200);
  assert.equal((await fetch(url, { method: 'POST', body: handshake, headers: bob })).status, 403);
  assert.equal((await fetch(url, { method: 'DELETE', headers: bob })).status, 403);
  assert.equal((await fetch(url, { method: 'POST', body: handshake, headers: alice })).status, 200);
  assert.ok((await (await fetch(`${url}&_=3`, { headers: alice })).text()).startsWith('{}\u001e'));
  assert.equal((await fetch(url, { method: 'DELETE', headers: alice })).status, 202);

  // Server-Sent Events and WebSockets: Bob's stream or socket is refused before it is attached.
  const sse = await fetch(`${running.url}?id=${await negotiate()}`, {
    headers: { ...bob, accept: 'text/event-stream' },
  });
  assert.equal(sse.status, 403);
  const socket = new WebSocket(`${running.url.replace('http', 'ws')}?id=${await negotiate()}`, {
    headers: bob,
  });
  const [, refused] = (await once(socket, 'unexpected-response')) as [ClientRequest, IncomingMessage];
  assert.equal(refused.statusCode, 403);
  refused.resume();
});

test('access_token given twice reaches the hook as one value, the two joined, as ASP.NET Core reads a query', async () => {
  seen.length = 0;
  const negotiated = await fetch(
    `${running.url}/negotiate?negotiateVersion=1&access_token=token-alice&access_token=token-bob`,
    { method: 'POST' },
  );
  await negotiated.arrayBuffer();
  // No verifier takes `a,b` for a token: the second credential is never silently dropped.
  assert.deepEqual(
    seen.map((request) => request.token),
    ['token-alice,token-bob'],
  );
});
