// Clients and messages for the notifications tests: notification CloudEvents, SSE and SignalR clients that record.
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { HubConnectionBuilder, HttpTransportType, LogLevel, type HubConnection } from '@microsoft/signalr';
import { EventSource } from 'eventsource';
import type { OutgoingMessage } from '../../src/application/ports/message-bus.ts';
import { SUBJECT_HEADER } from '../../src/contracts/cloud-events.ts';
import { Exchanges } from '../../src/contracts/messaging.ts';
import { until } from '../support/until.ts';

export const EVENT_TYPES = ['StudentCreated', 'StudentUpdated', 'StudentCached', 'StudentDeleted'] as const;

export interface Received {
  readonly type: string;
  readonly id: string | undefined;
  readonly data: { eventType: string; student: { id: string; updates: number }; routingKey: string };
}

/** A notification as the outbox relay publishes it. */
export function notificationMessage(
  eventType: (typeof EVENT_TYPES)[number],
  studentId = randomUUID(),
  updates = 0,
): OutgoingMessage {
  const id = randomUUID();
  const routingKey = `student.${eventType.slice('Student'.length).toLowerCase()}`;
  const now = new Date().toISOString();
  const data = {
    eventType,
    routingKey,
    student: {
      id: studentId,
      firstName: 'Ada',
      lastName: 'Lovelace',
      email: 'ada@example.com',
      updates,
      created: now,
      createdBy: 'anonymous',
      lastModified: null,
      lastModifiedBy: null,
      version: 1,
    },
    timestamp: now,
    userId: null,
  };
  return {
    exchange: Exchanges.notifications,
    routingKey,
    messageId: id,
    headers: { [SUBJECT_HEADER]: studentId },
    body: JSON.stringify({
      specversion: '1.0',
      id,
      source: '/test',
      type: eventType,
      subject: studentId,
      time: now,
      datacontenttype: 'application/json',
      data,
    }),
  };
}

const openSources = new Set<EventSource>();
// A test that fails before closing its clients must not leave them reconnecting: that keeps the file's process alive.
after(() => {
  for (const source of openSources) source.close();
});

/**
 * An EventSource that records every notification (and `connected` / `reset`) and the HTTP status of each failed
 * attempt; `lastEventId` is sent as the header of the first request (later ones carry the last id received),
 * `headers` with every request.
 */
export function sseClient(
  baseUrl: string,
  options: { lastEventId?: string; query?: string; headers?: Record<string, string> } = {},
) {
  const received: Received[] = [];
  const control: { type: string; data: unknown; id: string | undefined }[] = [];
  const failures: (number | undefined)[] = [];
  const source = new EventSource(`${baseUrl}/api/notifications/stream${options.query ?? ''}`, {
    fetch: (input, init) =>
      fetch(input, {
        ...init,
        headers: {
          ...(options.lastEventId ? { 'Last-Event-ID': options.lastEventId } : {}),
          ...init.headers,
          ...options.headers,
        },
      }),
  });
  openSources.add(source);
  source.addEventListener('error', (event) => failures.push(event.code));
  for (const type of EVENT_TYPES)
    source.addEventListener(type, (event) =>
      received.push({
        type,
        id: event.lastEventId || undefined,
        data: JSON.parse(event.data) as Received['data'],
      }),
    );
  for (const type of ['connected', 'reset'])
    source.addEventListener(type, (event) =>
      control.push({ type, data: JSON.parse(event.data), id: event.lastEventId || undefined }),
    );
  return {
    source,
    received,
    control,
    failures,
    get lastEventId() {
      return received.at(-1)?.id;
    },
    /** Resolves once a `type` notification about `studentId` has arrived. */
    arrived: (type: (typeof EVENT_TYPES)[number], studentId: string) =>
      until(
        () => received.some((entry) => entry.type === type && entry.data.student.id === studentId),
        `${type} for ${studentId}`,
      ),
    close: () => {
      source.close();
      openSources.delete(source);
    },
  };
}

/** The official SignalR Node client on the hub, recording every notification; `accessToken` when auth is on. */
export async function hubClient(
  baseUrl: string,
  transport = HttpTransportType.WebSockets,
  { accessToken }: { accessToken?: string } = {},
) {
  const received: Received[] = [];
  const connected: unknown[] = [];
  const connection: HubConnection = new HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/notifications`, {
      transport,
      ...(accessToken ? { accessTokenFactory: () => accessToken } : {}),
    })
    .configureLogging(LogLevel.None)
    .build();
  for (const type of EVENT_TYPES)
    connection.on(type, (data: Received['data']) => received.push({ type, id: undefined, data }));
  connection.on('Connected', (message: unknown) => connected.push(message));
  await connection.start();
  return { connection, received, connected, close: () => connection.stop() };
}
