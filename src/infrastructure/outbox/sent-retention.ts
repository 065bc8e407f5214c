/**
 * How long sent rows stay in the outbox by default (OUTBOX_SENT_RETENTION_SECONDS): what an embedded restart can send
 * again, so inboxes keep their message ids at least this long. A module of its own: the configuration takes it
 * without loading the relay.
 */
export const SENT_OUTBOX_RETENTION_MS = 24 * 3_600_000;
