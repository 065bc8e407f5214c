import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { createStudent } from '../../src/application/students/create-student.ts';
import { deleteStudent } from '../../src/application/students/delete-student.ts';
import { updateStudent } from '../../src/application/students/update-student.ts';
import {
  addingToCache,
  evictingOnDelete,
  writingThrough,
} from '../../src/application/students/write-through.ts';
import { IdempotencyKeyReusedError } from '../../src/application/errors.ts';
import type { StudentCache } from '../../src/application/ports/student-cache.ts';
import { InMemoryStudents } from '../support/in-memory-students.ts';

const now = new Date('2026-03-01T00:00:00Z');

describe('student use cases', () => {
  let store: InMemoryStudents;
  let deps: Parameters<typeof createStudent>[0];
  let generated = 0;

  beforeEach(() => {
    store = new InMemoryStudents();
    let id = 0;
    deps = {
      unitOfWork: store,
      ids: { next: () => `student-${id++}` },
      clock: { now: () => now },
      generator: {
        generate: () => {
          generated++;
          return { firstName: 'Gen', lastName: 'Erated', email: 'gen@example.com' };
        },
      },
    };
    generated = 0;
  });

  test('create fills only the missing fields from the generator and stores one StudentCreated', async () => {
    const result = await createStudent(deps)({ details: { firstName: 'Ada' }, actor: 'alice' });
    assert.ok(result.ok);
    assert.deepEqual([result.value.firstName, result.value.lastName], ['Ada', 'Erated']);
    assert.equal(store.outbox.length, 1);
    assert.equal(store.outbox[0]?.type, 'StudentCreated');
    assert.equal(store.outbox[0]?.subject, result.value.id);
  });

  test('create keeps every field given, whichever are missing', async () => {
    const create = createStudent(deps);
    const onlyLast = await create({ details: { lastName: 'Hopper' }, actor: 'alice' });
    assert.ok(onlyLast.ok);
    assert.deepEqual(
      [onlyLast.value.firstName, onlyLast.value.lastName, onlyLast.value.email],
      ['Gen', 'Hopper', 'gen@example.com'],
    );
    const onlyEmail = await create({ details: { email: 'grace@example.com' }, actor: 'alice' });
    assert.ok(onlyEmail.ok);
    assert.deepEqual(
      [onlyEmail.value.firstName, onlyEmail.value.lastName, onlyEmail.value.email],
      ['Gen', 'Erated', 'grace@example.com'],
    );
  });

  test('create with every field given does not call the generator', async () => {
    await createStudent(deps)({
      details: { firstName: 'A', lastName: 'B', email: 'a@b.co' },
      actor: 'alice',
    });
    assert.equal(generated, 0);
  });

  test('invalid input is an expected outcome: nothing is stored', async () => {
    const result = await createStudent(deps)({ details: { firstName: '', email: 'x' }, actor: 'alice' });
    assert.ok(!result.ok);
    assert.equal(result.error.code, 'STUDENT.INVALID');
    assert.equal(store.rows.size, 0);
    assert.equal(store.outbox.length, 0);
  });

  test('update of a missing student is STUDENT.NOT_FOUND; a stale If-Match or a matching If-None-Match is STUDENT.VERSION_CONFLICT', async () => {
    const missing = await updateStudent(deps)({ id: 'nope', details: {}, actor: 'bob' });
    assert.ok(!missing.ok && missing.error.code === 'STUDENT.NOT_FOUND');

    const created = await createStudent(deps)({ details: {}, actor: 'alice' });
    assert.ok(created.ok);
    const stale = await updateStudent(deps)({
      id: created.value.id,
      details: {},
      actor: 'bob',
      precondition: { match: [7] },
    });
    assert.ok(!stale.ok);
    assert.deepEqual(stale.error, {
      code: 'STUDENT.VERSION_CONFLICT',
      message: `Student ${created.value.id} is at version 1, not 7.`,
      currentVersion: 1,
    });
    const namesNone = await updateStudent(deps)({
      id: created.value.id,
      details: {},
      actor: 'bob',
      precondition: { match: [] },
    });
    assert.ok(!namesNone.ok);
    assert.equal(
      namesNone.error.message,
      `Student ${created.value.id} is at version 1; the precondition names no version (only strong ETags count).`,
      'If-Match with only weak or foreign tags',
    );
    for (const noneMatch of ['*', [1]] as const) {
      const excluded = await updateStudent(deps)({
        id: created.value.id,
        details: {},
        actor: 'bob',
        precondition: { noneMatch },
      });
      assert.ok(
        !excluded.ok && excluded.error.code === 'STUDENT.VERSION_CONFLICT',
        `If-None-Match ${noneMatch}`,
      );
    }
    const other = await updateStudent(deps)({
      id: created.value.id,
      details: {},
      actor: 'bob',
      precondition: { match: '*', noneMatch: [2, 3] },
    });
    assert.ok(other.ok, 'any version, and not one of those');
    assert.equal(store.outbox.length, 2, 'only the creation and the one update were stored');
  });

  test('delete stores StudentDeleted and removes the row', async () => {
    const created = await createStudent(deps)({ details: {}, actor: 'alice' });
    assert.ok(created.ok);
    const deleted = await deleteStudent(deps)({ id: created.value.id, actor: 'carol' });
    assert.ok(deleted.ok);
    assert.equal(store.rows.size, 0);
    assert.deepEqual(
      store.outbox.map((message) => message.type),
      ['StudentCreated', 'StudentDeleted'],
    );
  });

  test('under one Idempotency-Key each write runs once: a retry gets the first outcome, marked replayed', async () => {
    const keyed = (key: string, fingerprint = 'same') => ({ key, fingerprint, ttlSeconds: 60 });
    const create = createStudent(deps);
    const first = await create({ details: { firstName: 'Ada' }, actor: 'alice', idempotency: keyed('c') });
    const retry = await create({ details: { firstName: 'Ada' }, actor: 'alice', idempotency: keyed('c') });
    assert.ok(first.ok && retry.ok);
    assert.equal(retry.replayed, true);
    assert.deepEqual(retry.value, first.value);
    assert.equal(store.rows.size, 1);
    await assert.rejects(
      create({ details: { firstName: 'Bo' }, actor: 'alice', idempotency: keyed('c', 'other') }),
      IdempotencyKeyReusedError,
    );

    const id = first.value.id;
    const update = updateStudent(deps);
    const stale = await update({
      id,
      details: {},
      actor: 'alice',
      precondition: { match: [7] },
      idempotency: keyed('u'),
    });
    assert.equal(stale.ok, false, 'refused');
    const updated = await update({ id, details: {}, actor: 'alice', idempotency: keyed('u') });
    assert.ok(updated.ok && !updated.replayed, 'a refused write left its key unused');
    assert.equal((await update({ id, details: {}, actor: 'alice', idempotency: keyed('u') })).replayed, true);
    assert.equal(store.rows.get(id)?.version, 2);

    const remove = deleteStudent(deps);
    assert.ok((await remove({ id, actor: 'alice', idempotency: keyed('d') })).ok);
    const removedAgain = await remove({ id, actor: 'alice', idempotency: keyed('d') });
    assert.ok(removedAgain.ok && removedAgain.replayed, 'the delete answered again, not STUDENT.NOT_FOUND');
    assert.deepEqual(
      store.outbox.map((message) => message.type),
      ['StudentCreated', 'StudentUpdated', 'StudentDeleted'],
    );
  });

  test("a write replayed under its key never caches the first attempt's student, which may be outdated: it invalidates the entry", async () => {
    const calls: string[] = [];
    const cache: StudentCache = {
      getOrLoad: () => Promise.resolve(undefined),
      add: async (student) => void calls.push(`add v${student.version}`),
      set: async (student) => void calls.push(`set v${student.version}`),
      evict: async () => void calls.push('evict'),
      invalidate: async () => void calls.push('invalidate'),
    };
    const keyed = (key: string) => ({ key, fingerprint: 'same', ttlSeconds: 60 });
    const create = addingToCache(createStudent(deps), cache);
    const update = writingThrough(updateStudent(deps), cache);
    const remove = evictingOnDelete(deleteStudent(deps), cache);

    const created = await create({ details: {}, actor: 'alice', idempotency: keyed('c') });
    assert.ok(created.ok);
    const id = created.value.id;
    await update({ id, details: {}, actor: 'alice', idempotency: keyed('u') });
    await update({ id, details: {}, actor: 'bob' });
    await update({ id, details: {}, actor: 'alice', idempotency: keyed('u') });
    await remove({ id, actor: 'alice', idempotency: keyed('d') });
    await create({ details: {}, actor: 'alice', idempotency: keyed('c') });
    await remove({ id, actor: 'alice', idempotency: keyed('d') });
    assert.deepEqual(calls, [
      'add v1',
      'set v2',
      'set v3',
      'invalidate', // the update's replay: its v2 is older than v3
      'evict',
      'invalidate', // the create's replay: its student is deleted
      'evict', // a delete is final: its replay evicts again
    ]);
  });
});
