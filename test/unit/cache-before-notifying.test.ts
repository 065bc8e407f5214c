import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StudentCache } from '../../src/application/ports/student-cache.ts';
import { cacheBeforeNotifying } from '../../src/application/students/cache-before-notifying.ts';
import { serializeStudent } from '../../src/application/students/get-student.ts';
import { studentNotificationMessage } from '../../src/application/students/student-notification-messages.ts';
import { Exchanges } from '../../src/contracts/messaging.ts';
import type { NotificationEventType, StudentDto } from '../../src/contracts/students.ts';

const now = new Date('2026-03-01T12:00:00.123Z');

/** A cache recording what it is asked to do. */
function recordingCache() {
  const calls: string[] = [];
  const cache: StudentCache = {
    getOrLoad: async () => assert.fail('no read'),
    add: async () => assert.fail('no add'),
    set: async (student) => void calls.push(`set ${serializeStudent(student).json}`),
    evict: async (id) => void calls.push(`evict ${id}`),
    invalidate: async () => assert.fail('no invalidate'),
  };
  return { cache, calls };
}

const dto = (id: string, version: number, updates: number): StudentDto => ({
  id,
  firstName: 'Ada',
  lastName: 'Lovelace',
  email: 'ada@example.com',
  updates,
  created: '2026-03-01T11:59:59.001Z',
  createdBy: 'tester',
  lastModified: version > 1 ? now.toISOString() : null,
  lastModifiedBy: version > 1 ? 'worker' : null,
  version,
});

const notification = (eventType: NotificationEventType, student: StudentDto) =>
  studentNotificationMessage({
    id: `${eventType}-${student.version}`,
    eventType,
    student,
    userId: null,
    now,
  });

test('before notifications leave, the cache gets each student as the last of them reports it, serialized as the API serves it', async () => {
  const { cache, calls } = recordingCache();
  const ada = dto('01a00000-0000-7000-8000-000000000001', 2, 1);
  const later = dto(ada.id, 3, 2);
  // As PostgreSQL's jsonb hands a payload back: its keys in another order than the API writes them.
  const reordered = Object.fromEntries(Object.entries(later).reverse()) as unknown as StudentDto;
  await cacheBeforeNotifying(cache)([
    notification('StudentCreated', ada),
    notification('StudentCached', ada),
    notification('StudentUpdated', reordered),
    notification('StudentCached', reordered),
  ]);
  assert.deepEqual(calls, [`set ${JSON.stringify(later)}`]);
});

test('a StudentDeleted notification evicts its student; a domain event on its way to the worker changes nothing', async () => {
  const { cache, calls } = recordingCache();
  const grace = dto('01a00000-0000-7000-8000-000000000002', 2, 1);
  const alan = dto('01a00000-0000-7000-8000-000000000003', 2, 0);
  await cacheBeforeNotifying(cache)([
    notification('StudentCached', grace),
    notification('StudentDeleted', grace),
    // The webapi's event for the worker: no client hears of it.
    { exchange: Exchanges.students, type: 'StudentUpdated', subject: alan.id, payload: { student: alan } },
  ]);
  assert.deepEqual(calls, [`evict ${grace.id}`]);
});
