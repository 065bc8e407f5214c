// The Docker files, without a Docker engine: docker-compose.yml is validated by Debian's docker-compose (the real
// Compose loader: schema, interpolation, references between services), and the Dockerfile's npm steps run in a
// copy of the repository, after which its entry point must serve a role and its HEALTHCHECK must pass.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../support/free-port.ts';

const run = promisify(execFile);

/** Whether a command exists; under CI it must (the Debian packages step installs docker-compose). */
async function needsCommand(command: string): Promise<{ skip?: string }> {
  const found = await run('sh', ['-c', `command -v ${command}`]).then(
    () => true,
    () => false,
  );
  if (found) return {};
  const reason = `${command} is not installed (apt-get install docker-compose)`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI=true: it must be`);
  return { skip: reason };
}

describe('docker-compose.yml', await needsCommand('docker-compose'), () => {
  const compose = (file: string, ...args: string[]) =>
    run('docker-compose', ['--project-directory', process.cwd(), '-f', file, ...args]);

  test('is valid for Compose, with the three roles and their servers', async () => {
    const { stderr } = await compose('docker-compose.yml', 'config', '--quiet');
    assert.equal(stderr, '', 'no warnings either');
    const { stdout } = await compose('docker-compose.yml', 'config', '--services');
    assert.deepEqual(stdout.trim().split('\n').sort(), [
      'notifications',
      'postgres',
      'rabbitmq',
      'redis',
      'seq',
      'webapi',
      'worker',
    ]);
  });

  test('a broken copy of it is refused (the check can fail)', async () => {
    const broken = join(mkdtempSync(join(tmpdir(), 'tbe-compose-')), 'docker-compose.yml');
    try {
      writeFileSync(
        broken,
        readFileSync('docker-compose.yml', 'utf8').replace(
          'condition: service_started',
          'condition: started',
        ),
      );
      await assert.rejects(compose(broken, 'config', '--quiet'), /condition/);
    } finally {
      rmSync(dirname(broken), { recursive: true, force: true });
    }
  });
});

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** The Dockerfile's instructions per stage (line continuations joined, comments dropped). */
function readDockerfile(text: string): Map<string, Instruction[]> {
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of logical) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [, keyword = '', args = ''] = /^(\w+)\s+(.*)$/.exec(trimmed) ?? [];
    if (keyword === 'FROM') {
      current = [];
      stages.set(/\s+AS\s+(\S+)$/i.exec(args)?.[1] ?? `stage${stages.size}`, current);
    }
    current?.push({ keyword, args });
  }
  return stages;
}

const argsOf = (stage: Instruction[], keyword: string) =>
  stage.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);

describe('the Dockerfile, built step by step without an engine', () => {
  test('its npm steps give production dependencies only, and its entry point serves a role, healthy, as an unprivileged user', async () => {
    const stages = readDockerfile(readFileSync('Dockerfile', 'utf8'));
    assert.deepEqual([...stages.keys()], ['dependencies', 'runtime']);
    const dependencies = stages.get('dependencies')!;
    const runtime = stages.get('runtime')!;
    assert.deepEqual(argsOf(dependencies, 'WORKDIR'), ['/app']);
    assert.deepEqual(argsOf(runtime, 'WORKDIR'), ['/app']);

    const root = mkdtempSync(join(tmpdir(), 'tbe-image-'));
    try {
      // Each stage's /app is a folder here; COPY from the repository or from another stage, RUN with sh.
      const stageDirs = new Map<string, string>();
      for (const [name, instructions] of stages) {
        const app = join(root, name);
        mkdirSync(app, { recursive: true });
        stageDirs.set(name, app);
        for (const { keyword, args } of instructions) {
          if (keyword === 'COPY') {
            const from = /^--from=(\S+)\s+/.exec(args)?.[1];
            const sources = args.replace(/^--from=\S+\s+/, '').split(/\s+/);
            const target = sources.pop()!;
            for (const source of sources) {
              const origin = from ? join(stageDirs.get(from)!, source.replace(/^\/app\//, '')) : source;
              // A target ending in / is a folder to copy into; otherwise it is the copy's own path.
              const destination = join(
                app,
                target.endsWith('/') ? join(target, source.split('/').pop()!) : target,
              );
              mkdirSync(dirname(destination), { recursive: true });
              cpSync(origin, destination, { recursive: true, verbatimSymlinks: true });
            }
          } else if (keyword === 'RUN') {
            const command = args.replace(/--mount=\S+\s+/g, '');
            // Only the npm steps build anything; the others prepare the image's file system for its user.
            if (!command.startsWith('npm ')) continue;
            await run('sh', ['-c', command], { cwd: app, maxBuffer: 16 * 1024 * 1024 });
          }
        }
      }
      const image = stageDirs.get('runtime')!;
      assert.ok(existsSync(join(image, 'node_modules/tsx')), 'tsx, which runs the TypeScript, is there');
      for (const devOnly of ['typescript', 'eslint', 'drizzle-kit', 'socket.io'])
        assert.equal(existsSync(join(image, 'node_modules', devOnly)), false, `${devOnly} is not`);

      // What the container runs: ENV, then ENTRYPOINT with CMD's or the chosen role, as a user who owns nothing.
      const env: Record<string, string> = {};
      for (const args of argsOf(runtime, 'ENV'))
        for (const [, key, value] of args.matchAll(/(\w+)=(\S+)/g)) env[key!] = value!;
      const [entrypoint] = JSON.parse(argsOf(runtime, 'ENTRYPOINT')[0]!) as string[];
      assert.deepEqual(JSON.parse(argsOf(runtime, 'CMD')[0]!), ['all']);
      const healthcheck = /CMD (\[.*\])$/.exec(argsOf(runtime, 'HEALTHCHECK')[0]!)?.[1];
      chmodSync(root, 0o755);
      const ports = {
        API_PORT: String(await freePort()),
        NOTIFICATIONS_PORT: String(await freePort()),
        WORKER_PORT: String(await freePort()),
      };
      const containerEnv = {
        PATH: process.env.PATH ?? '',
        ...env,
        ...ports,
        HOST: '127.0.0.1',
        DATABASE_URL: 'pglite://memory',
        LOG_LEVEL: 'info',
      };
      const unprivileged = { uid: 65_534, gid: 65_534 };
      const role = spawn(entrypoint!.replace(/^\/app/, image), ['webapi'], {
        cwd: image,
        env: containerEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...unprivileged,
      });
      let output = '';
      role.stdout.on('data', (chunk: Buffer) => (output += chunk));
      role.stderr.on('data', (chunk: Buffer) => (output += chunk));
      const exited = new Promise<number | null>((resolve) => role.once('exit', resolve));
      try {
        await Promise.race([
          new Promise<void>((resolve) => {
            const check = () => (/webapi listening/.test(output) ? resolve() : setTimeout(check, 100));
            check();
          }),
          exited.then((code) => {
            throw new Error(`the webapi exited with ${code}:\n${output}`);
          }),
        ]);
        const [command, ...args] = JSON.parse(healthcheck!) as string[];
        const probe = await run(command === 'node' ? process.execPath : command!, args, {
          cwd: image,
          env: containerEnv,
          ...unprivileged,
        }).then(
          () => 0,
          (error: { code?: number }) => error.code ?? 1,
        );
        assert.equal(probe, 0, 'the HEALTHCHECK passes');
        const response = await fetch(`http://127.0.0.1:${ports.API_PORT}/api/students`, { method: 'POST' });
        assert.equal(response.status, 201);
      } finally {
        role.kill('SIGTERM');
      }
      assert.equal(await exited, 0, output);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
