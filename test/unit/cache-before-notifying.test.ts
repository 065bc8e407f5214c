import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StudentCache } from '../../src/application/ports/student-cache.ts';
import type { StudentQueries } from '../../src/application/ports/student-queries.ts';
import { cacheBeforeNotifying } from '../../src/application/students/cache-before-notifying.ts';
import { studentNotificationMessage } from '../../src/application/students/student-notification-messages.ts';
import { toStudentDto } from '../../src/application/students/student-dto.ts';
import { Exchanges } from '../../src/contracts/messaging.ts';
import type { NotificationEventType } from '../../src/contracts/students.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';

const now = new Date('2026-03-01T12:00:00.123Z');

const student = (id: string, version: number): StudentSnapshot => ({
  id,
  firstName: 'Ada',
  lastName: 'Lovelace',
  email: 'ada@example.com',
  updates: version - 1,
  created: now,
  createdBy: 'tester',
  lastModified: version > 1 ? now : null,
  lastModifiedBy: version > 1 ? 'worker' : null,
  version,
});

/** The database as `rows` has it, and a cache, both recording what they are asked. */
function fakes(rows: readonly StudentSnapshot[]) {
  const calls: string[] = [];
  const queries: StudentQueries = {
    findById: async () => assert.fail('one query for all'),
    findByIds: async (ids) => {
      calls.push(`read ${ids.join(',')}`);
      return rows.filter((row) => ids.includes(row.id));
    },
    list: async () => assert.fail('no list'),
  };
  const cache: StudentCache = {
    getOrLoad: async () => assert.fail('no read'),
    add: async () => assert.fail('no add'),
    set: async (written) => void calls.push(`set ${written.id} v${written.version}`),
    evict: async (id) => void calls.push(`evict ${id}`),
    invalidate: async (id) => void calls.push(`invalidate ${id}`),
  };
  return { queries, cache, calls };
}

const notification = (eventType: NotificationEventType, about: StudentSnapshot) =>
  studentNotificationMessage({
    id: `${eventType}-${about.version}`,
    eventType,
    student: toStudentDto(about),
    userId: null,
    now,
  });

test('before notifications leave, their students are read in one query and cached as the database has them now', async () => {
  const ada = student('01a00000-0000-7000-8000-000000000001', 2);
  const grace = student('01a00000-0000-7000-8000-000000000002', 2);
  // Ada changed again while her notifications waited in the outbox; Grace was deleted.
  const { queries, cache, calls } = fakes([student(ada.id, 5)]);
  await cacheBeforeNotifying(
    queries,
    cache,
  )([
    notification('StudentCreated', ada),
    notification('StudentCached', ada),
    notification('StudentUpdated', grace),
  ]);
  assert.deepEqual(calls, [`read ${ada.id},${grace.id}`, `set ${ada.id} v5`, `evict ${grace.id}`]);
});

test('domain events on their way to the worker are no notifications: nothing is read or cached for them', async () => {
  const alan = student('01a00000-0000-7000-8000-000000000003', 1);
  const { queries, cache, calls } = fakes([alan]);
  await cacheBeforeNotifying(queries, cache)([{ exchange: Exchanges.students, subject: alan.id }]);
  assert.deepEqual(calls, []);
});

test('students that cannot be read are invalidated, so a read after the notification loads them, and the error surfaces', async () => {
  const ada = student('01a00000-0000-7000-8000-000000000004', 2);
  const { queries, cache, calls } = fakes([ada]);
  queries.findByIds = async () => {
    throw new Error('canceling statement due to statement timeout');
  };
  await assert.rejects(
    cacheBeforeNotifying(queries, cache)([notification('StudentCached', ada)]),
    /statement timeout/,
  );
  assert.deepEqual(calls, [`invalidate ${ada.id}`]);
});
