// A role with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans over OTLP/HTTP, protobuf by default; a receiver
// that is down costs it nothing but a warning. The OTel environment variables for the resource and the traces
// endpoint apply as the SDK's do.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAllRoles } from '../support/all-roles.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver.ts';
import { startRole } from '../support/role-process.ts';
import { until } from '../support/until.ts';

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

  test('with the receiver down, a stop gives the last spans 2 s, not the exporter’s 10, and says they were not sent', async () => {
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      // Spans wait for the stop: nothing is exported on schedule.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
    });
    assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
    const stopping = performance.now();
    assert.equal(await role.stop(), 0, role.output());
    const seconds = (performance.now() - stopping) / 1_000;
    assert.ok(seconds < 6, `stopped in ${seconds.toFixed(1)} s`);
    assert.match(role.output(), /"component":"tracing",[^\n]*"msg":"last spans not sent within 2000 ms"/);
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

  test("an OTel setting the SDK cannot use is a warning (at least) in the role's log, naming it", async () => {
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      // The SDK ignores both and goes on with its defaults: one it warns about, one it reports as an error.
      OTEL_EXPORTER_OTLP_TIMEOUT: 'soon',
      OTEL_TRACES_SAMPLER: 'sometimes',
    });
    assert.equal(await role.stop(), 0, role.output());
    const warnings = role
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; component?: string; msg: string })
      .filter((line) => line.level >= 40 && line.component === 'tracing')
      .map((line) => line.msg);
    assert.ok(
      warnings.some((msg) => /OTEL_EXPORTER_OTLP_TIMEOUT/.test(msg) && msg.includes("'soon'")),
      role.output(),
    );
    assert.ok(
      warnings.some((msg) => /OTEL_TRACES_SAMPLER/.test(msg) && msg.includes('"sometimes"')),
      role.output(),
    );
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
      // Each process an instance of its own: two webapis' spans are told apart.
      assert.match(String(resource['service.instance.id']), /^webapi-\d+$/);
    }
    assert.doesNotMatch(role.output(), /trace export failed/);
  });

  test("an endpoint with a path gets the spans under it; a request's log lines carry its trace_id and span_id", async () => {
    const prefixed = await startOtlpReceiver();
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      // Behind a gateway that routes by path, as OTLP's spec allows: …/otlp/v1/traces, not …/v1/traces.
      OTEL_EXPORTER_OTLP_ENDPOINT: `${prefixed.endpoint}/otlp`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    });
    try {
      assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
      // Answered before any handler runs (its query fails validation): its line is in its trace all the same.
      assert.equal((await fetch(`${role.url}/api/students?limit=abc`)).status, 400);
      await until(
        () =>
          ['POST', 'GET'].every((method) =>
            prefixed.spans.some((span) => span.name === `${method} /api/students`),
          ),
        'the request spans',
      );
    } finally {
      assert.equal(await role.stop(), 0, role.output());
      await prefixed.close();
    }
    for (const request of prefixed.requests)
      assert.deepEqual(request, { path: '/otlp/v1/traces', contentType: 'application/json' });
    const request = prefixed.spans.find((span) => span.name === 'POST /api/students')!;
    // Seq (or any log store) finds the trace of a line, and the lines of a trace, by these.
    const completed = role
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"request completed"') && line.includes('"url":"/api/students"'));
    assert.equal(completed.length, 1, role.output());
    assert.match(completed[0]!, new RegExp(`"trace_id":"${request.traceId}","span_id":"${request.spanId}"`));
    const refused = prefixed.spans.find((span) => span.name === 'GET /api/students')!;
    const refusedLine = role
      .output()
      .split('\n')
      .find(
        (line) =>
          line.includes('"msg":"request completed"') && line.includes('"url":"/api/students?limit=abc"'),
      );
    assert.match(
      refusedLine ?? '',
      new RegExp(`"trace_id":"${refused.traceId}","span_id":"${refused.spanId}"`),
    );
  });

  test('npm start exports the spans it still buffers when it stops, as the all-roles service', async () => {
    const allRoles = startAllRoles({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      // Nothing goes out on schedule: whatever the receiver gets, the stop sent.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    });
    try {
      const { api } = await allRoles.ready;
      assert.equal((await fetch(`${api}/api/students`, { method: 'POST' })).status, 201);
      const spansBefore = receiver.spans.length;
      allRoles.child.kill('SIGTERM');
      assert.equal(await allRoles.exited, 0, allRoles.output());
      const exported = receiver.spans.slice(spansBefore);
      assert.ok(
        exported.some((span) => span.name === 'POST /api/students'),
        `the write's spans were exported at the stop:\n${allRoles.output()}`,
      );
      assert.deepEqual([...new Set(exported.map((span) => span.service))], ['all-roles']);
    } finally {
      allRoles.child.kill('SIGKILL');
    }
  });
});
