// A role with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans over OTLP/HTTP, protobuf by default; a receiver
// that is down costs it nothing but a warning.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver.ts';
import { startRole } from '../support/role-process.ts';

const webapiAlone = { DATABASE_URL: 'pglite://memory', API_PORT: '0', OTEL_BSP_SCHEDULE_DELAY: '100' };

describe('OTLP export', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(() => receiver.close());

  test('by default the spans go to <endpoint>/v1/traces as protobuf', async () => {
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    });
    try {
      assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
      const deadline = Date.now() + 20_000;
      while (receiver.requests.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      assert.equal(await role.stop(), 0);
    }
    assert.ok(receiver.requests.length > 0, 'spans were exported');
    for (const request of receiver.requests)
      assert.deepEqual(request, { path: '/v1/traces', contentType: 'application/x-protobuf' });
  });

  test('with the receiver down, the role serves, warns, and stops as usual', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as { port: number };
    await new Promise((resolve) => closed.close(resolve));

    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    });
    try {
      assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
      const deadline = Date.now() + 20_000;
      while (
        !/"component":"tracing"[^\n]*"level":40|"level":40[^\n]*"component":"tracing"/.test(role.output()) &&
        Date.now() < deadline
      )
        await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      assert.equal(await role.stop(), 0, role.output());
    }
    assert.match(
      role.output(),
      /"level":40,[^\n]*"component":"tracing",[^\n]*"msg":"trace export failed"/,
      'the export failure is a warning',
    );
    assert.doesNotMatch(role.output(), /"component":"tracing","trace_id"/, 'not attributed to a request');
  });
});
