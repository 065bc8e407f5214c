import { Exchanges } from '../../contracts/messaging.ts';
import { NotificationEventTypes, type StudentNotification } from '../../contracts/students.ts';
import type { OutboxMessage } from '../ports/outbox.ts';
import type { StudentCache } from '../ports/student-cache.ts';
import { fromStudentDto } from './student-dto.ts';

/** What of an outbox message tells whether it is a notification, and what it reports. */
export type NotifyingMessage = Pick<OutboxMessage, 'exchange' | 'type' | 'subject' | 'payload'>;

/**
 * Brings the cache up to what notifications report before they leave: a client that reads a student the moment it
 * hears of a change then gets that change, never the student from before it. The worker refreshes the cache as soon
 * as it commits, but the relay may publish the notifications of that commit first. Per student, the last
 * notification of `messages` counts: the state they leave it in, or its delete. Never fails (the cache's writes
 * don't); a write that lands after a newer one is dropped by the cache's version fence.
 */
export function cacheBeforeNotifying(students: StudentCache) {
  return async (messages: readonly NotifyingMessage[]): Promise<void> => {
    const latest = new Map<string, NotifyingMessage>();
    for (const message of messages)
      if (message.exchange === Exchanges.notifications) latest.set(message.subject, message);
    await Promise.all(
      [...latest.values()].map((message) =>
        message.type === NotificationEventTypes.deleted
          ? students.evict(message.subject)
          : // Only notifications go to that exchange, each written by studentNotificationMessage.
            students.set(fromStudentDto((message.payload as StudentNotification).student)),
      ),
    );
  };
}
