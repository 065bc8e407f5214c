import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import {
  processStudentEvents,
  type ProcessStudentEventCommand,
  type ProcessStudentEventDeps,
  type ProcessStudentEventResult,
} from '../../src/application/students/process-student-event.ts';
import { createStudent } from '../../src/application/students/create-student.ts';
import { toStudentDto } from '../../src/application/students/student-dto.ts';
import type { StudentEventType, StudentNotification } from '../../src/contracts/students.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { InMemoryStudents } from '../support/in-memory-students.ts';

const now = new Date('2026-03-01T00:00:00Z');

/** One event in its own transaction, as the worker runs it with prefetch 1. */
function processOne(deps: ProcessStudentEventDeps) {
  const processEvents = processStudentEvents(deps);
  return async (command: ProcessStudentEventCommand): Promise<ProcessStudentEventResult> => {
    const [result] = await processEvents([command]);
    assert.ok(result);
    return result;
  };
}

describe('processStudentEvents', () => {
  let store: InMemoryStudents;
  let process: ReturnType<typeof processOne>;
  let deps: ProcessStudentEventDeps;
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
    const writeDeps = {
      unitOfWork: store,
      ids: { next: () => `id-${nextId++}` },
      clock: { now: () => now },
      generator: { generate: () => ({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }) },
    };
    const created = await createStudent(writeDeps)({ details: {}, actor: 'alice' });
    assert.ok(created.ok);
    student = created.value;
    deps = writeDeps;
    process = processOne(deps);
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
    assert.equal(payload.student.lastModified, now.toISOString());
    assert.equal(new Set(sent.map((message) => message.id)).size, 2, 'each notification has its own id');
  });

  test('in a batch, the notifications of each event continue the trace that event is processed in', async () => {
    const first = { ...eventFor('StudentUpdated'), traceparent: `00-${'1'.repeat(32)}-${'a'.repeat(16)}-01` };
    const second = {
      ...eventFor('StudentUpdated'),
      traceparent: `00-${'2'.repeat(32)}-${'b'.repeat(16)}-01`,
    };

    await processStudentEvents(deps)([first, second]);

    assert.deepEqual(
      notifications().map((message) => message.traceparent),
      [first.traceparent, first.traceparent, second.traceparent, second.traceparent],
    );
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
    const failing = processOne({
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

  test('events that arrive together share one transaction; each gets its own result, in order', async () => {
    const other = await createStudent({
      ...deps,
      generator: { generate: () => ({ firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' }) },
    })({ details: {}, actor: 'bob' });
    assert.ok(other.ok);
    const created = eventFor('StudentCreated', 'batch-1');
    const forOther: ProcessStudentEventCommand = {
      ...created,
      event: {
        ...created.event,
        id: 'batch-2',
        subject: other.value.id,
        data: { student: toStudentDto(other.value), actor: 'bob' },
      },
    };
    let transactions = 0;
    const counting = {
      transaction: <T>(work: Parameters<typeof store.transaction<T>>[0]) => (
        transactions++,
        store.transaction(work)
      ),
    };

    const results = await processStudentEvents({ ...deps, unitOfWork: counting })([
      created,
      forOther,
      created,
    ]);

    assert.equal(transactions, 1);
    assert.deepEqual(
      results.map((result) => result.status),
      ['processed', 'processed', 'duplicate'],
    );
    assert.equal(store.rows.get(student.id)?.updates, 1);
    assert.equal(store.rows.get(other.value.id)?.updates, 1);
    assert.deepEqual(
      notifications().map((message) => [message.type, message.subject]),
      [
        ['StudentCreated', student.id],
        ['StudentCached', student.id],
        ['StudentCreated', other.value.id],
        ['StudentCached', other.value.id],
      ],
    );
  });
});
