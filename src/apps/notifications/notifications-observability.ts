// What the notifications service reports: its clients per transport, the notifications it appends and pushes
// (metrics), and a span per push that continues the trace of the write the notification reports.
import { SpanKind } from '@opentelemetry/api';
import type { HubServer } from '@tbe/signalr';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Queues, TRACEPARENT_HEADER } from '../../contracts/messaging.ts';
import { messageAge } from '../../infrastructure/observability/metrics.ts';
import { contextFromHeaders, tracer } from '../../infrastructure/observability/tracing.ts';
import type { Refusal } from './connection-limits.ts';
import type { PushObserver, PushTransport } from './fan-out.ts';

export interface NotificationsMetrics {
  /**
   * What became of one message from the queue: it went into the replay log, was there already (a redelivery), or was
   * no notification and was dead-lettered.
   */
  handled(outcome: 'appended' | 'duplicate' | 'dead_lettered'): void;
  /** How old a notification was when it was delivered (queue lag). */
  delivered(ageSeconds: number): void;
  /** A new SSE stream or hub connection was turned away: the instance was full, or its user held their share. */
  refused(refusal: Refusal): void;
}

export interface NotificationsObservability {
  readonly metrics: NotificationsMetrics;
  /** For the fan-out: each push to a transport's clients in a span, and counted. */
  readonly observePush: PushObserver;
}

const SPAN_NAMES: Record<PushTransport, string> = { sse: 'sse push', signalr: 'signalr send' };

export function createNotificationsObservability(
  registry: Registry,
  clients: { readonly sse: () => number; readonly hub: HubServer },
): NotificationsObservability {
  const registers = [registry];
  const appended = new Counter({
    name: 'notifications_appended_total',
    help: 'Notifications taken from the queue into the replay log; `duplicate` = a redelivery already there, `dead_lettered` = no notification, set aside in notifications.dead.',
    labelNames: ['outcome'],
    registers,
  });
  const pushed = new Counter({
    name: 'notifications_delivered_total',
    help: 'Notifications this instance pushed to its clients, by transport (once per notification, whatever the number of clients).',
    labelNames: ['transport'],
    registers,
  });
  new Gauge({
    name: 'notifications_connected_clients',
    help: 'Clients connected to this instance, by transport (SSE streams; SignalR connections by their transport).',
    labelNames: ['transport'],
    registers,
    collect() {
      const { byTransport } = clients.hub.stats();
      this.set({ transport: 'sse' }, clients.sse());
      this.set({ transport: 'signalr_websockets' }, byTransport.WebSockets);
      this.set({ transport: 'signalr_server_sent_events' }, byTransport.ServerSentEvents);
      this.set({ transport: 'signalr_long_polling' }, byTransport.LongPolling);
    },
  });
  const refusedConnections = new Counter({
    name: 'notifications_refused_connections_total',
    help: 'New SSE streams and hub connections turned away: `instance` = NOTIFICATIONS_MAX_CONNECTIONS reached, `user` = NOTIFICATIONS_MAX_CONNECTIONS_PER_USER.',
    labelNames: ['reason'],
    registers,
  });
  const age = messageAge(registry).labels({ queue: Queues.notifications });
  const connectedTo = (transport: PushTransport) =>
    transport === 'sse' ? clients.sse() : clients.hub.stats().connections;

  return {
    metrics: {
      handled: (outcome) => appended.inc({ outcome }),
      delivered: (ageSeconds) => age.observe(ageSeconds),
      refused: (reason) => refusedConnections.inc({ reason }),
    },
    observePush(transport, entry, push) {
      const clients = connectedTo(transport);
      // The hub is subscribed even with no connection: then there is nobody to deliver to.
      if (clients === 0) return push();
      pushed.inc({ transport });
      // An entry appended outside any trace starts none here.
      if (!entry.traceparent) return push();
      const span = tracer.startSpan(
        SPAN_NAMES[transport],
        {
          kind: SpanKind.PRODUCER,
          attributes: {
            'notification.type': entry.type,
            'notification.log_id': entry.id,
            'notification.clients': clients,
          },
        },
        contextFromHeaders({ [TRACEPARENT_HEADER]: entry.traceparent }),
      );
      try {
        push();
      } finally {
        span.end();
      }
    },
  };
}
