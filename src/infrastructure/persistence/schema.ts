import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
  varchar,
} from 'drizzle-orm/pg-core';
import { STUDENT_EMAIL_MAX_LENGTH, STUDENT_NAME_MAX_LENGTH } from '../../domain/student.ts';

// The lengths are the domain's rules: raising one changes the table too (npm run db:generate), so a name the rule
// allows is never refused by the column. The hand-written SQL that reads and writes these columns is in sql.ts and
// sql-unit-of-work.ts.
export const students = pgTable('students', {
  id: uuid('id').primaryKey(),
  firstName: varchar('first_name', { length: STUDENT_NAME_MAX_LENGTH }).notNull(),
  lastName: varchar('last_name', { length: STUDENT_NAME_MAX_LENGTH }).notNull(),
  email: varchar('email', { length: STUDENT_EMAIL_MAX_LENGTH }).notNull(),
  updates: integer('updates').notNull().default(0),
  created: timestamp('created', { withTimezone: true, mode: 'date' }).notNull(),
  createdBy: text('created_by').notNull(),
  lastModified: timestamp('last_modified', { withTimezone: true, mode: 'date' }),
  lastModifiedBy: text('last_modified_by'),
  version: integer('version').notNull(),
});

/**
 * The transactional outbox: rows are written with the state change and published later by the relay.
 * `seq` gives the publish order (commit order within one writer); `sent_at` is set once the broker confirmed.
 */
export const outbox = pgTable(
  'outbox',
  {
    id: uuid('id').primaryKey(),
    seq: bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity().notNull().unique(),
    exchange: text('exchange').notNull(),
    routingKey: text('routing_key').notNull(),
    type: text('type').notNull(),
    subject: text('subject').notNull(),
    payload: jsonb('payload').notNull(),
    headers: jsonb('headers').$type<Record<string, string>>().notNull().default({}),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
    sentAt: timestamp('sent_at', { withTimezone: true, mode: 'date' }),
  },
  (table) => [
    index('outbox_unsent_idx')
      .on(table.seq)
      .where(sql`${table.sentAt} is null`),
    // The relay deletes sent rows once they are older than the retention, every minute: found by age, not by a
    // scan of the whole day it keeps.
    index('outbox_sent_at_idx')
      .on(table.sentAt)
      .where(sql`${table.sentAt} is not null`),
  ],
);

/** Messages a consumer has already handled, so a redelivery changes nothing twice. */
export const inbox = pgTable(
  'inbox',
  {
    messageId: text('message_id').notNull(),
    consumer: text('consumer').notNull(),
    processedAt: timestamp('processed_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.consumer, table.messageId] }),
    // Rows older than the retention are deleted (pruneInbox): found by age, not by a scan.
    index('inbox_processed_at_idx').on(table.processedAt),
  ],
);

/**
 * Writes made with an `Idempotency-Key`, recorded in the write's own transaction: a retry finds the write done
 * and gets its outcome, even when the process died before its response was stored in the cache.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    /** Hash of the key scoped to its caller. */
    key: text('key').primaryKey(),
    /** Hash of the request the key was first sent with. */
    fingerprint: text('fingerprint').notNull(),
    /** The student as the write left it; null only inside the transaction that claimed the key. */
    outcome: jsonb('outcome'),
    /** From then on the key is free again; the row is deleted soon after. */
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  // Expired keys are deleted in batches: found by age, not by a scan.
  (table) => [index('idempotency_keys_expires_at_idx').on(table.expiresAt)],
);

/** Bytes as they were: a dead letter's body need not be text. */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => 'bytea' });

/**
 * Messages the in-process bus dead-lettered (embedded mode only), recorded because its dead-letter queues die with
 * the process and RabbitMQ's do not. Kept, as in a dead-letter queue, until an operator deletes them.
 */
export const deadLetters = pgTable(
  'dead_letters',
  {
    /** The CloudEvent id: the outbox row's id. */
    messageId: text('message_id').notNull(),
    /** The queue it was dead-lettered from. */
    queue: text('queue').notNull(),
    /** `x-death-reason`: the consumer's reason, or `delivery_limit`. */
    reason: text('reason'),
    routingKey: text('routing_key').notNull(),
    contentType: text('content_type'),
    /** As received, `x-death-reason` and `x-death-queue` included. */
    headers: jsonb('headers').$type<Record<string, string>>().notNull(),
    body: bytea('body').notNull(),
    recordedAt: timestamp('recorded_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  // Message id first, as resendUnhandled looks it up. A message dead-lettered again after a crash before its
  // record committed stays one row.
  (table) => [primaryKey({ columns: [table.messageId, table.queue] })],
);

/**
 * Names this deployment (one row, made at its first start): what it claims on shared infrastructure (a Redis key
 * prefix, a RabbitMQ vhost) carries the id, so a second deployment pointed at the same ones is refused. Made at
 * start, not by the migration: an in-memory PGlite starts from a migrated snapshot every process shares.
 */
export const deployment = pgTable(
  'deployment',
  {
    singleton: boolean('singleton').primaryKey().default(true),
    id: uuid('id').notNull().defaultRandom(),
  },
  (table) => [check('deployment_one_row', sql`${table.singleton}`)],
);
