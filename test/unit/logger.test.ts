// What a role's log lines look like on stdout: JSON lines for a collector, or lines for people (LOG_FORMAT=pretty,
// the default in a terminal). Each in a process of its own: pino writes to file descriptor 1.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { promisify, stripVTControlCharacters } from 'node:util';

/** Runs `script` (an ES module importing from the repository root) in a process of its own. */
function runScript(script: string): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script]);
}

async function logOneLine(pretty: boolean): Promise<string> {
  const { stdout } = await runScript(
    "import { createLogger } from './src/infrastructure/logging/logger.ts';" +
      `createLogger({ level: 'info', pretty: ${pretty}, name: 'probe' }).info({ studentId: 7 }, 'a line');`,
  );
  return stdout;
}

test('logs are JSON lines, one per entry, with its level, name and fields', async () => {
  const lines = (await logOneLine(false)).trim().split('\n');
  assert.equal(lines.length, 1, lines.join('\n'));
  const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(entry.msg, 'a line');
  assert.equal(entry.level, 30);
  assert.equal(entry.name, 'probe');
  assert.equal(entry.studentId, 7);
});

test('pretty logs are lines for people: the level in words, the name, the message, then the fields', async () => {
  // Colours or not, as the environment says (FORCE_COLOR, CI): the words are what is asserted.
  const output = stripVTControlCharacters(await logOneLine(true));
  assert.match(output, /^\[[\d:.]+\] INFO \(probe\): a line\n\s+studentId: 7\n$/, output);
});

test('a Seq that refuses the logs is reported on stderr: stdout stays JSON lines, the log lines only', async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as { port: number };
  await new Promise((resolve) => closed.close(resolve));
  const { stdout, stderr } = await runScript(
    "import { createLogger, flushLogger } from './src/infrastructure/logging/logger.ts';" +
      `const logger = createLogger({ level: 'info', pretty: false, seqUrl: 'http://127.0.0.1:${port}' });` +
      "logger.info('a line'); void flushLogger(logger);",
  );
  const lines = stdout.trim().split('\n');
  assert.deepEqual(
    lines.map((line) => (JSON.parse(line) as { msg: string }).msg),
    ['a line'],
    stdout,
  );
  assert.match(
    stderr,
    /^Seq at http:\/\/127\.0\.0\.1:\d+ is not taking logs \(.*ECONNREFUSED.*\); they still go to stdout$/m,
  );
});

test("a Redis refusal of a login is logged without the AUTH command's arguments, its password", async () => {
  // As ioredis hangs it on the refusal.
  const { stdout } = await runScript(
    "import { createLogger } from './src/infrastructure/logging/logger.ts';" +
      "const refusal = Object.assign(new Error('WRONGPASS invalid username-password pair'), " +
      "{ command: { name: 'auth', args: ['app', 'p@ss:w/rd%'] } });" +
      "createLogger({ level: 'info', pretty: false }).warn({ err: refusal }, 'refused');",
  );
  const { err } = JSON.parse(stdout) as { err: { message: string; command: unknown } };
  assert.equal(err.message, 'WRONGPASS invalid username-password pair');
  assert.deepEqual(err.command, { name: 'auth', args: '***' });
});

test('a refused login nested in another error (a cause, an AggregateError) is masked too; err: null is no crash', async () => {
  const { stdout } = await runScript(
    "import { createLogger } from './src/infrastructure/logging/logger.ts';" +
      "const refusal = () => Object.assign(new Error('WRONGPASS'), { command: { name: 'AUTH', args: ['p@ss:w/rd%'] } });" +
      "const logger = createLogger({ level: 'info', pretty: false });" +
      "logger.warn({ err: new Error('cache unavailable', { cause: refusal() }) }, 'caused');" +
      "logger.warn({ err: new AggregateError([refusal()], 'all failed') }, 'aggregate');" +
      "logger.warn({ err: null }, 'nothing');",
  );
  assert.equal(stdout.trim().split('\n').length, 3, stdout);
  assert.doesNotMatch(stdout, /p@ss/);
});
