import { Exchanges } from '../../contracts/messaging.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { OutboxMessage } from '../ports/outbox.ts';
import type { StudentCache } from '../ports/student-cache.ts';
import type { StudentQueries } from '../ports/student-queries.ts';

/** What of an outbox message tells whether it is a notification, and about which student. */
export type NotifyingMessage = Pick<OutboxMessage, 'exchange' | 'subject'>;

/**
 * Brings the cache up to the database before notifications leave: a client that reads a student the moment it hears
 * of a change then gets that change (or a later one), never the student from before it. The worker refreshes the
 * cache as soon as it commits, but the relay may publish the notifications of that commit first. The students are
 * read as they are now, in one query, rather than taken from the notifications: one that waited in the outbox (the
 * broker was down) may report a state the student has left since. A student no longer there is evicted. A write that
 * lands after a newer one is dropped by the cache's version fence; the cache's own failures never surface here.
 * When the students cannot be read, they are invalidated (the next read loads them) and the error is rethrown.
 */
export function cacheBeforeNotifying(queries: StudentQueries, students: StudentCache) {
  return async (messages: readonly NotifyingMessage[]): Promise<void> => {
    const ids = [
      ...new Set(
        messages
          .filter((message) => message.exchange === Exchanges.notifications)
          .map((message) => message.subject),
      ),
    ];
    if (ids.length === 0) return;
    let found: StudentSnapshot[];
    try {
      found = await queries.findByIds(ids);
    } catch (error) {
      // Unread, they cannot be cached as they are now; dropped, the next read loads them: the notifications may
      // still leave ahead of the worker's refresh.
      await Promise.all(ids.map((id) => students.invalidate(id)));
      throw error;
    }
    const current = new Map(found.map((student) => [student.id, student]));
    await Promise.all(
      ids.map((id) => {
        const student = current.get(id);
        return student ? students.set(student) : students.evict(id);
      }),
    );
  };
}
