// The webapi as a real process: start-up checks, and SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { until } from '../support/until.ts';

const entry = 'src/apps/webapi/main.ts';

/** The webapi's process; `undefined` in `env` unsets a variable; `from` runs it elsewhere (another working directory, or through a link). */
function run(env: Record<string, string | undefined>, from: { cwd?: string; entry?: string } = {}) {
  const environment = Object.fromEntries(
    Object.entries({ ...process.env, LOG_FORMAT: 'json', API_PORT: '0', ...env }).filter(
      (variable): variable is [string, string] => variable[1] !== undefined,
    ),
  );
  const child = spawn(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), from.entry ?? resolve(entry)],
    {
      env: environment,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(from.cwd ? { cwd: from.cwd } : {}),
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const match = /"url":"(http:[^"]+)"/.exec(output);
      if (match?.[1]) resolve(match[1]);
    });
    void exited.then(() => reject(new Error(`exited before listening:\n${output}`)));
  });
  listening.catch(() => undefined); // only some tests wait for it

  return { child, exited, listening, output: () => output };
}

/** A POST that sends its headers and half its body, and the rest only when told to. */
function slowPost(baseUrl: string) {
  const body = JSON.stringify({ firstName: 'Slow', lastName: 'Writer', email: 'slow@example.com' });
  const request = httpRequest(`${baseUrl}/api/students`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  });
  const status = new Promise<number | undefined>((resolve, reject) => {
    request.on('response', (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on('error', reject);
  });
  request.write(body.slice(0, 10));
  const started = new Promise<void>((resolve) =>
    request.on('socket', (socket) => socket.on('connect', resolve)),
  );
  return { started, status, finish: () => request.end(body.slice(10)) };
}

describe('the webapi process', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  test('an invalid setting stops start-up with exit code 2 and names the variable', async () => {
    const process = run({ API_PORT: 'not-a-port' });
    assert.equal(await process.exited, 2);
    assert.match(process.output(), /API_PORT: must be an integer from 0 to 65535/);
  });

  test('a PostgreSQL it cannot reach at start-up stops it with exit code 1, naming the server (not its password) and why', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const process = run({
      DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/students`,
      REDIS_URL: 'memory:',
      AMQP_URL: 'memory:',
    });
    assert.equal(await process.exited, 1);
    assert.match(
      process.output(),
      new RegExp(
        `PostgreSQL at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/students: connecting to migrate the schema failed: connect ECONNREFUSED`,
      ),
    );
    assert.doesNotMatch(process.output(), /hunter2/);
  });

  test('settings are read from .env in the working directory; a variable set in the environment wins over its line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-dotenv-'));
    dirs.push(dir);
    await writeFile(join(dir, '.env'), 'API_PORT=not-a-port\nLOG_LEVEL=loud\n');
    // API_PORT=0 comes from the environment; LOG_LEVEL only from .env.
    const process = run({ LOG_LEVEL: undefined }, { cwd: dir });
    try {
      const outcome = await Promise.race([process.exited, process.listening.then(() => 'started')]);
      assert.equal(outcome, 2, process.output());
    } finally {
      process.child.kill('SIGKILL');
    }
    assert.match(process.output(), /LOG_LEVEL: must be one of fatal, .* \(got "loud"\)/);
    assert.doesNotMatch(process.output(), /API_PORT/);
  });

  test('its listening line says whether auth is on, and from which setting', async () => {
    for (const [env, auth] of [
      [{}, 'off'],
      [{ AUTH_JWT_SECRET: 'a-secret-of-at-least-thirty-two-characters' }, 'on (AUTH_JWT_SECRET)'],
    ] as const) {
      const process = run({ DATABASE_URL: 'pglite://memory', AUTH_JWT_SECRET: undefined, ...env });
      await process.listening;
      process.child.kill('SIGTERM');
      assert.equal(await process.exited, 0, process.output());
      const line = process
        .output()
        .split('\n')
        .find((text) => text.includes('"webapi listening"'));
      assert.equal((JSON.parse(line ?? '{}') as { auth?: string }).auth, auth, process.output());
    }
  });

  test('started through a symbolic link to its entry point (a release directory behind a `current` link), it runs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-linked-'));
    dirs.push(dir);
    const linked = join(dir, 'main.ts');
    await symlink(resolve(entry), linked);
    const process = run({ DATABASE_URL: 'pglite://memory' }, { entry: linked });
    const url = await process.listening;
    assert.equal((await fetch(`${url}/health/live`)).status, 200);
    process.child.kill('SIGTERM');
    assert.equal(await process.exited, 0, process.output());
  });

  test('SIGTERM lets an in-flight request finish, then exits 0; data survives a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-webapi-'));
    dirs.push(dir);
    const first = run({ DATABASE_URL: `pglite://${dir}` });
    const url = await first.listening;
    const created = await fetch(`${url}/api/students`, { method: 'POST' });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };

    // A request whose body is still arriving when SIGTERM lands must still be answered.
    const inFlight = slowPost(url);
    await inFlight.started;
    first.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    inFlight.finish();
    assert.equal(await inFlight.status, 201);
    assert.equal(await first.exited, 0, first.output());
    assert.match(first.output(), /creating the embedded database/, 'a first start says why it takes a while');

    // Without PG_VERSION, PGlite would initialise an empty database over this one.
    await rename(join(dir, 'PG_VERSION'), join(dir, 'PG_VERSION.kept'));
    const damaged = run({ DATABASE_URL: `pglite://${dir}` });
    assert.equal(await damaged.exited, 1, damaged.output());
    assert.match(damaged.output(), /holds tables but no PG_VERSION file: it is damaged/);
    await rename(join(dir, 'PG_VERSION.kept'), join(dir, 'PG_VERSION'));

    const second = run({ DATABASE_URL: `pglite://${dir}` });
    const secondUrl = await second.listening;
    assert.doesNotMatch(second.output(), /creating the embedded database/, 'it exists already');
    assert.equal((await fetch(`${secondUrl}/api/students/${id}`)).status, 200, 'the student is still there');
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });

  test('a second process on the same embedded data dir fails at start-up with a clear message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-webapi-'));
    dirs.push(dir);
    const owner = run({ DATABASE_URL: `pglite://${dir}` });
    await owner.listening;
    const intruder = run({ DATABASE_URL: `pglite://${dir}` });
    assert.equal(await intruder.exited, 1);
    assert.match(intruder.output(), /is in use by process \d+.*DATABASE_URL=postgres.*tbe\.pid behind/);
    owner.child.kill('SIGTERM');
    assert.equal(await owner.exited, 0);
  });

  test('a data dir locked by a process killed and not yet reaped (a zombie) opens at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-lock-zombie-'));
    dirs.push(dir);
    // The shell's background child exits, and the shell, replaced by a sleep that never waits, leaves it a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 20'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const [line] = (await once(parent.stdout, 'data')) as [Buffer];
      const zombie = line.toString().trim();
      await until(
        async () => / Z /.test(await readFile(`/proc/${zombie}/stat`, 'utf8').catch(() => '')),
        'the child a zombie',
      );
      await writeFile(join(dir, 'tbe.pid'), zombie);
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'test/support/open-embedded-database.ts', dir, '0'],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk));
      await once(child, 'exit');
      assert.equal(output.trim(), 'opened');
    } finally {
      parent.kill();
    }
  });

  test('two processes starting at once on a data dir a crashed one left locked: exactly one opens it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tbe-lock-race-'));
    dirs.push(dir);
    const open = (at: number) =>
      new Promise<string>((resolve) => {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', 'test/support/open-embedded-database.ts', dir, String(at)],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let output = '';
        child.stdout.on('data', (chunk: Buffer) => (output += chunk));
        child.on('exit', () => resolve(output.trim()));
      });
    // Before, both took the lock in 2 to 7 of 8 such rounds (each removed the stale file, then the other's fresh one).
    for (let round = 0; round < 5; round++) {
      await writeFile(join(dir, 'tbe.pid'), '999999'); // a pid no process has
      const at = Date.now() + 3_000;
      const outcomes = await Promise.all([open(at), open(at)]);
      assert.equal(outcomes.filter((outcome) => outcome === 'opened').length, 1, outcomes.join(' | '));
      assert.match(outcomes.find((outcome) => outcome !== 'opened') ?? '', /^refused: .*in use by process/);
    }
  });
});
