// What an operator sees of the notifications service with tracing on: its SignalR clients on /metrics by the
// transport each connected with, and a PRODUCER span per push, in the trace of the write the notification reports.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HttpTransportType } from '@microsoft/signalr';
import { SpanKind } from '@opentelemetry/api';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { MESSAGING_TOPOLOGY, TRACEPARENT_HEADER } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { recordingLogger } from '../support/logger.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';
import { hubClient, notificationMessage, sseClient } from './support.ts';

const spans = recordSpans();

describe('notifications observability (embedded adapters, tracing on)', () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  let notifications: Notifications;
  let url: string;
  const { logger, logged } = recordingLogger();

  before(async () => {
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', CORS_ORIGINS: '*' });
    notifications = await createNotifications({ config, logger, bus, replayLog });
    url = await notifications.start();
    await bus.declareTopology(MESSAGING_TOPOLOGY);
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });

  test('/metrics counts SignalR clients by the transport they connected with', async () => {
    // Two and one, so that each count is told apart from the other.
    const overSse = [
      await hubClient(url, HttpTransportType.ServerSentEvents),
      await hubClient(url, HttpTransportType.ServerSentEvents),
    ];
    const polling = await hubClient(url, HttpTransportType.LongPolling);
    try {
      const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
      const clients = (transport: string) => metrics.value('notifications_connected_clients', { transport });
      assert.equal(clients('signalr_server_sent_events'), 2);
      assert.equal(clients('signalr_long_polling'), 1);
      assert.equal(clients('signalr_websockets'), 0);
    } finally {
      await Promise.all([...overSse, polling].map((client) => client.close()));
    }
  });

  test('a hub WebSocket upgrade is logged and counted as a request, accepted (101) or refused, its connection token masked', async () => {
    const ws = await hubClient(url, HttpTransportType.WebSockets);
    await ws.close();
    // A WebSocket for a connection that does not exist (fetch cannot ask for one).
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.end(
      'GET /hubs/notifications?id=no-such-connection HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
    const lines = () =>
      logged()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { msg: string; statusCode?: number; req?: { url: string } })
        .filter(
          (line) => line.msg === 'request completed' && line.req?.url.startsWith('/hubs/notifications?'),
        );
    await until(() => lines().some((line) => line.statusCode === 404), 'the refusal logged');
    const upgrade = lines().find((line) => line.statusCode === 101);
    assert.match(upgrade?.req?.url ?? '', /[?&]id=\[redacted\]/, 'the connection token masked');
    assert.equal(
      lines().find((line) => line.statusCode === 404)?.req?.url,
      '/hubs/notifications?id=[redacted]',
    );
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    for (const status of ['101', '404'])
      assert.ok(
        metrics.sum('http_server_request_duration_seconds_count', {
          method: 'GET',
          route: '/hubs/notifications',
          status_code: status,
        }) >= 1,
        status,
      );
  });

  test("a push is a PRODUCER span per transport, a child of the notification's processing, naming its type, log id and clients", async () => {
    const sse = sseClient(url);
    const otherSse = sseClient(url);
    const hub = await hubClient(url);
    try {
      await until(() => sse.control.length > 0 && otherSse.control.length > 0, 'the SSE clients connected');
      spans.reset();
      const message = notificationMessage('StudentUpdated');
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      await bus.publish([
        {
          ...message,
          headers: { ...message.headers, [TRACEPARENT_HEADER]: `00-${traceId}-00f067aa0ba902b7-01` },
        },
      ]);
      await until(() => sse.received.length === 1 && hub.received.length === 1, 'the notification on both');
      const named = (name: string) => spans.getFinishedSpans().filter((span) => span.name === name);
      await until(
        () => named('sse push').length === 1 && named('signalr send').length === 1,
        'both push spans',
      );
      const [processed] = named('process notifications');
      assert.equal(named('sse push')[0]?.attributes['notification.clients'], 2, 'the SSE clients');
      assert.equal(named('signalr send')[0]?.attributes['notification.clients'], 1, 'the hub connection');
      for (const push of [...named('sse push'), ...named('signalr send')]) {
        assert.equal(push.kind, SpanKind.PRODUCER, push.name);
        assert.equal(push.spanContext().traceId, traceId, 'the trace of the write');
        assert.equal(push.parentSpanContext?.spanId, processed?.spanContext().spanId);
        assert.equal(push.attributes['notification.type'], 'StudentUpdated');
        assert.equal(push.attributes['notification.log_id'], sse.received[0]?.id);
      }
    } finally {
      sse.close();
      otherSse.close();
      await hub.close();
    }
  });
});
