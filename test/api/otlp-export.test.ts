// A role with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans over OTLP/HTTP, protobuf by default; a receiver
// that is down costs it nothing but a warning. The OTel environment variables for the resource and the traces
// endpoint apply as the SDK's do.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver.ts';
import { startRole } from '../support/role-process.ts';

const webapiAlone = { DATABASE_URL: 'pglite://memory', API_PORT: '0', OTEL_BSP_SCHEDULE_DELAY: '100' };

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

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
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
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

  test('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is, and the resource takes OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES', async () => {
    const tracesReceiver = await startOtlpReceiver();
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      // The signal-specific endpoint wins: nothing may go to this one.
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${tracesReceiver.endpoint}/collector/traces`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'students-api',
      // OTEL_SERVICE_NAME wins over a service.name given here.
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging,service.name=ignored',
    });
    try {
      assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
      const deadline = Date.now() + 20_000;
      while (tracesReceiver.spans.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      assert.equal(await role.stop(), 0, role.output());
      await tracesReceiver.close();
    }
    assert.ok(
      tracesReceiver.spans.length > 0,
      `spans were exported to the traces endpoint:\n${role.output()}`,
    );
    for (const request of tracesReceiver.requests)
      assert.deepEqual(request, { path: '/collector/traces', contentType: 'application/json' });
    for (const { resource } of tracesReceiver.spans) {
      assert.equal(resource['service.name'], 'students-api');
      assert.equal(resource['deployment.environment.name'], 'staging');
      assert.equal(resource['service.namespace'], 'the-background-experience', 'our attributes stay');
    }
    assert.doesNotMatch(role.output(), /trace export failed/);
  });
});
