import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import {
  processStudentEvent,
  type ProcessStudentEventCommand,
} from '../../src/application/students/process-student-event.ts';
import { createStudent } from '../../src/application/students/create-student.ts';
import { toStudentDto } from '../../src/application/students/student-dto.ts';
import type { StudentEventType, StudentNotification } from '../../src/contracts/students.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { InMemoryStudents } from '../support/in-memory-students.ts';

const now = new Date('2026-03-01T00:00:00Z');

describe('processStudentEvent', () => {
  let store: InMemoryStudents;
  let process: ReturnType<typeof processStudentEvent>;
  let nextId: number;
  let student: StudentSnapshot;

  const eventFor = (type: StudentEventType, id = `event-${nextId++}`): ProcessStudentEventCommand => ({
    event: {
      specversion: '1.0',
      id,
      source: '/test',
      type,
      subject: student.id,
      time: now.toISOString(),
      datacontenttype: 'application/json',
      data: { student: toStudentDto(student), actor: 'alice' },
    },
  });
  const notifications = () =>
    store.outbox.filter((message) => message.exchange === 'notifications').map((message) => message);

  beforeEach(async () => {
    store = new InMemoryStudents();
    nextId = 0;
    const deps = {
      unitOfWork: store,
      ids: { next: () => `id-${nextId++}` },
      clock: { now: () => now },
      generator: { generate: () => ({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }) },
    };
    const created = await createStudent(deps)({ details: {}, actor: 'alice' });
    assert.ok(created.ok);
    student = created.value;
    process = processStudentEvent(deps);
  });

  test('created: updates becomes 1, then StudentCreated and StudentCached notify the processed state, in that order', async () => {
    const result = await process(eventFor('StudentCreated'));

    assert.equal(result.status, 'processed');
    assert.equal(store.rows.get(student.id)?.updates, 1);
    const sent = notifications();
    assert.deepEqual(
      sent.map((message) => [message.type, message.routingKey, message.subject]),
      [
        ['StudentCreated', 'student.created', student.id],
        ['StudentCached', 'student.cached', student.id],
      ],
    );
    const payload = sent[0]?.payload as StudentNotification;
    assert.equal(payload.eventType, 'StudentCreated');
    assert.equal(payload.routingKey, 'student.created');
    assert.equal(payload.userId, 'alice');
    assert.equal(payload.timestamp, now.toISOString());
    assert.deepEqual(payload.student, toStudentDto(store.rows.get(student.id)!));
    assert.equal(payload.student.updates, 1);
    assert.equal(payload.student.lastModifiedBy, 'worker');
    assert.equal(new Set(sent.map((message) => message.id)).size, 2, 'each notification has its own id');
  });

  test('updated: StudentUpdated then StudentCached', async () => {
    await process(eventFor('StudentUpdated'));
    assert.deepEqual(
      notifications().map((message) => message.type),
      ['StudentUpdated', 'StudentCached'],
    );
  });

  test('a redelivered event changes nothing the second time', async () => {
    const event = eventFor('StudentCreated', 'same-id');
    await process(event);
    const outboxAfterFirst = store.outbox.length;

    const again = await process(event);

    assert.deepEqual(again, { status: 'duplicate' });
    assert.equal(store.rows.get(student.id)?.updates, 1);
    assert.equal(store.outbox.length, outboxAfterFirst);
  });

  test('deleted: StudentDeleted carries the student from the event', async () => {
    store.rows.delete(student.id);
    const result = await process(eventFor('StudentDeleted'));

    assert.deepEqual(result, { status: 'deleted', studentId: student.id });
    const sent = notifications();
    assert.deepEqual(
      sent.map((message) => message.type),
      ['StudentDeleted'],
    );
    assert.deepEqual((sent[0]?.payload as StudentNotification).student, toStudentDto(student));
  });

  test('a student deleted before its event is processed: no crash, no notification, the event counts as handled', async () => {
    store.rows.delete(student.id);

    const result = await process(eventFor('StudentUpdated', 'late'));

    assert.deepEqual(result, { status: 'studentGone', studentId: student.id });
    assert.equal(notifications().length, 0);
    assert.deepEqual(await process(eventFor('StudentUpdated', 'late')), { status: 'duplicate' });
  });

  test('a failure inside the transaction leaves no trace, so the redelivery is processed in full', async () => {
    const failing = processStudentEvent({
      unitOfWork: store,
      ids: {
        next: () => {
          throw new Error('boom');
        },
      },
      clock: { now: () => now },
    });
    await assert.rejects(failing(eventFor('StudentCreated', 'retry-me')), /boom/);
    assert.equal(store.rows.get(student.id)?.updates, 0);

    const result = await process(eventFor('StudentCreated', 'retry-me'));
    assert.equal(result.status, 'processed');
    assert.equal(notifications().length, 2);
  });
});
