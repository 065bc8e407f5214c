// The worker as a real process (`npm run start:worker`): start-up checks, processing, and SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { Queues } from '../../src/contracts/messaging.ts';
import { startOtlpReceiver } from '../support/otlp-receiver.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { openTestDatabase } from '../support/databases.ts';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { addStudent, eventually, updatesOf } from './worker-harness.ts';

function run(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/apps/worker/main.ts'], {
    env: { ...process.env, LOG_FORMAT: 'json', WORKER_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const healthUrl = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const match = /"health":"(http:[^"]+)"/.exec(output);
      if (match?.[1]) resolve(match[1]);
    });
    void exited.then(() => reject(new Error(`exited before consuming:\n${output}`)));
  });
  healthUrl.catch(() => undefined); // only some tests wait for it
  return { child, exited, healthUrl, output: () => output };
}

const [postgres, rabbit] = await Promise.all([needsPostgres(), needsRabbitMq()]);

describe('the worker process', () => {
  test('with the in-process bus it refuses to start alone, saying why and what to do', async () => {
    const worker = run({ AMQP_URL: 'memory:', DATABASE_URL: 'pglite://memory' });
    assert.equal(await worker.exited, 2);
    assert.match(worker.output(), /in-process bus only connects roles that run in one process \(npm start\)/);
    assert.match(worker.output(), /AMQP_URL=amqp:\/\//);
  });

  test(
    'on PostgreSQL and RabbitMQ it processes events, reports healthy, and exits 0 on SIGTERM, its spans exported',
    { skip: postgres.skip ?? rabbit.skip },
    async () => {
      const [database, vhost, receiver] = await Promise.all([
        openTestDatabase('postgres'),
        createTestVhost('worker_test'),
        startOtlpReceiver(),
      ]);
      const worker = run({
        DATABASE_URL: database.url,
        AMQP_URL: vhost.url,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        // Longer than the test: the spans leave only with the flush of the stop.
        OTEL_BSP_SCHEDULE_DELAY: '600000',
      });
      try {
        const healthUrl = await worker.healthUrl;
        assert.equal((await fetch(`${healthUrl}/ready`)).status, 200);

        // The way events arrive: the student's StudentCreated outbox row, published by the worker's relay (the
        // only one on this database). An event published here besides it would be a second event to process.
        const student = await addStudent(database.database);
        await eventually(
          'the worker process handled the event',
          async () => (await updatesOf(database.database, [student.id])).get(student.id) === 1,
        ).catch((error: unknown) => {
          throw new Error(`${String(error)}; the worker's output:\n${worker.output()}`);
        });

        assert.equal(receiver.spans.length, 0, 'nothing exported before the stop');

        worker.child.kill('SIGTERM');
        assert.equal(await worker.exited, 0, worker.output());
        assert.ok(
          receiver.spans.some((span) => span.name === `process ${Queues.studentsWorker}`),
          'the processing span, exported before the process ended',
        );
      } finally {
        worker.child.kill('SIGKILL');
        await Promise.all([database.dispose(), vhost.delete(), receiver.close()]);
      }
    },
  );
});
