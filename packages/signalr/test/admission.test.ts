// The admit hook: the app decides how many connections a user or the server may hold; the hub asks it for every
// new one and tells it when each ends.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { ConnectionRefusedError, type ErrorSite, type HubUser } from '../src/index.ts';
import { buildClient, eventually, startHub } from './helpers.ts';

test('a connection the admit hook refuses gets its status and message; its slot comes back when one ends', async () => {
  let open = 0;
  const users: (HubUser | undefined)[] = [];
  const running = await startHub({
    authenticate: () => ({ id: 'alice' }),
    admit: (user) => {
      if (open >= 2) throw new ConnectionRefusedError(429, 'Too many connections for this user.');
      open++;
      users.push(user);
      let released = false;
      return () => {
        assert.equal(released, false, 'released once');
        released = true;
        open--;
      };
    },
  });
  const first = buildClient(running.url);
  const second = buildClient(running.url);
  try {
    await first.start();
    await second.start();
    assert.deepEqual(users, [{ id: 'alice' }, { id: 'alice' }]);

    const refused = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(refused.status, 429);
    assert.equal(await refused.text(), 'Too many connections for this user.');
    // A WebSocket without an id (skipNegotiation) is a new connection too.
    const socket = new WebSocket(running.url.replace(/^http/, 'ws'));
    socket.on('error', () => undefined);
    const status = await new Promise<number | undefined>((resolve) => {
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode));
      socket.on('open', () => resolve(101));
    });
    socket.terminate();
    assert.equal(status, 429);
    const third = buildClient(running.url);
    await assert.rejects(third.start(), /429/);

    await first.stop();
    await eventually(() => open === 1);
    await third.start();
    await third.stop();
    // A negotiated connection that never attaches a transport is released when it is disposed.
    await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(open, 2);
    await eventually(() => open === 1, 5_000);
  } finally {
    await first.stop();
    await second.stop();
    await running.close();
  }
  assert.equal(open, 0, 'every slot released');
});

test('negotiates never followed by a transport cannot take every slot: past the bound, the oldest of them is dropped', async () => {
  let open = 0;
  const running = await startHub({
    maxUnattachedConnections: 3,
    admit: () => {
      if (open >= 5) throw new ConnectionRefusedError(503, 'This instance is full.');
      open++;
      return () => open--;
    },
  });
  const client = buildClient(running.url);
  try {
    await client.start();
    const negotiate = async () => {
      const response = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
      assert.equal(response.status, 200);
      return ((await response.json()) as { connectionToken: string }).connectionToken;
    };
    const tokens: string[] = [];
    for (let i = 0; i < 20; i++) tokens.push(await negotiate());
    // The attached client and the three newest negotiates; none refused, and more would not be either.
    assert.equal(open, 4);
    const later = buildClient(running.url);
    await later.start();
    await later.stop();
    assert.equal(
      await client.invoke('Echo', 'still here'),
      'still here',
      'an attached client is never dropped',
    );
    const attach = async (token: string) => {
      const socket = new WebSocket(`${running.url.replace(/^http/, 'ws')}?id=${token}`);
      socket.on('error', () => undefined);
      return new Promise<number>((resolve) => {
        socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
        socket.on('open', () => {
          socket.terminate();
          resolve(101);
        });
      });
    };
    assert.equal(await attach(tokens[0]!), 404, 'a dropped negotiate is gone, as an expired one');
    assert.equal(await attach(tokens.at(-1)!), 101, 'the newest is kept');
  } finally {
    await client.stop();
    await running.close();
  }
  await eventually(() => open === 0);
});

test('a negotiate the admit hook refuses costs no other client its negotiated connection', async () => {
  const running = await startHub({
    maxUnattachedConnections: 1,
    authenticate: ({ token }) => ({ id: token ?? 'anonymous' }),
    admit: (user) => {
      if (user?.id === 'alice') throw new ConnectionRefusedError(429, 'Too many connections for this user.');
      return () => undefined;
    },
  });
  try {
    const negotiate = (user: string) =>
      fetch(`${running.url}/negotiate?negotiateVersion=1&access_token=${user}`, { method: 'POST' });
    const bob = (await (await negotiate('bob')).json()) as { connectionToken: string };
    assert.equal((await negotiate('alice')).status, 429);
    const socket = new WebSocket(
      `${running.url.replace(/^http/, 'ws')}?id=${bob.connectionToken}&access_token=bob`,
    );
    socket.on('error', () => undefined);
    const status = await new Promise<number>((resolve) => {
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('open', () => resolve(101));
    });
    socket.terminate();
    assert.equal(status, 101);
  } finally {
    await running.close();
  }
});

test('an admit hook that fails (not a refusal) is a 500 for negotiate and a dropped upgrade, each reported to onError with its request', async () => {
  const reported: ({ message: string } & ErrorSite)[] = [];
  const running = await startHub({
    admit: () => {
      throw new Error('the admission store is down');
    },
    onError: (error, where) => reported.push({ message: (error as Error).message, ...where }),
  });
  try {
    const negotiate = await fetch(`${running.url}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(negotiate.status, 500);
    assert.equal(await negotiate.text(), 'Internal server error.', 'the cause stays on the server');
    const socket = new WebSocket(running.url.replace(/^http/, 'ws'));
    const closed = new Promise<void>((resolve) => socket.on('error', () => resolve()));
    await closed;
    assert.deepEqual(reported, [
      { message: 'the admission store is down', request: 'POST /hubs/notifications/negotiate' },
      { message: 'the admission store is down', request: 'GET /hubs/notifications (WebSocket)' },
    ]);
  } finally {
    await running.close();
  }
});
