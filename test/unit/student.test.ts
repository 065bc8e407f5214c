import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Student, validateStudentDetails } from '../../src/domain/student.ts';

const now = new Date('2026-01-01T00:00:00Z');
const details = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };

function created() {
  const result = Student.create({ id: 'id-1', details, actor: 'alice', now });
  assert.ok(result.ok);
  return result.value;
}

describe('Student', () => {
  test('a new student starts at version 1 with no updates and records StudentCreated', () => {
    const student = created();
    assert.deepEqual(student.snapshot(), {
      id: 'id-1',
      ...details,
      updates: 0,
      created: now,
      createdBy: 'alice',
      lastModified: null,
      lastModifiedBy: null,
      version: 1,
    });
    const events = student.pullDomainEvents();
    assert.deepEqual(
      events.map((event) => [event.type, event.studentId, event.actor]),
      [['StudentCreated', 'id-1', 'alice']],
    );
    assert.deepEqual(student.pullDomainEvents(), [], 'pulling empties the list');
  });

  test('names are trimmed; every broken rule is reported at once', () => {
    const trimmed = validateStudentDetails({ firstName: '  Ada ', lastName: ' L ', email: ' a@b.co ' });
    assert.deepEqual(trimmed, { ok: true, value: { firstName: 'Ada', lastName: 'L', email: 'a@b.co' } });

    const invalid = validateStudentDetails({ firstName: '   ', lastName: 'x'.repeat(101), email: 'nope' });
    assert.ok(!invalid.ok);
    assert.equal(invalid.error.code, 'STUDENT.INVALID');
    assert.deepEqual(
      invalid.error.issues.map((issue) => issue.field),
      ['firstName', 'lastName', 'email'],
    );
  });

  test('NUL characters and unpaired surrogates are rejected: PostgreSQL cannot store them as sent', () => {
    for (const text of ['A\u0000da', 'Ada\ud800', '\udfffAda']) {
      const result = validateStudentDetails({
        firstName: text,
        lastName: text,
        email: `${text}@example.com`,
      });
      assert.ok(!result.ok, JSON.stringify(text));
      assert.deepEqual(
        result.error.issues.map((issue) => issue.field),
        ['firstName', 'lastName', 'email'],
      );
    }
    assert.ok(
      validateStudentDetails({ ...details, firstName: 'Ada 🎓\u202e' }).ok,
      'a surrogate pair is fine',
    );
  });

  test('100 characters is the longest name allowed', () => {
    assert.ok(validateStudentDetails({ ...details, firstName: 'x'.repeat(100) }).ok);
    assert.ok(!validateStudentDetails({ ...details, firstName: 'x'.repeat(101) }).ok);
  });

  test('characters are counted as PostgreSQL and the HTTP schema count them: an emoji is one, not two', () => {
    assert.ok(validateStudentDetails({ ...details, firstName: '🎓'.repeat(100) }).ok);
    assert.ok(!validateStudentDetails({ ...details, firstName: '🎓'.repeat(101) }).ok);
    assert.ok(validateStudentDetails({ ...details, email: `${'🎓'.repeat(240)}@example.com` }).ok);
  });

  test('an update bumps the version, stamps the modifier and records StudentUpdated with the new state', () => {
    const student = created();
    student.pullDomainEvents();
    const later = new Date('2026-01-02T00:00:00Z');
    const result = student.update({ details: { ...details, firstName: 'Grace' }, actor: 'bob', now: later });
    assert.ok(result.ok);
    assert.equal(student.version, 2);
    assert.equal(student.snapshot().lastModified, later);
    assert.equal(student.snapshot().lastModifiedBy, 'bob');
    const [event] = student.pullDomainEvents();
    assert.equal(event?.type, 'StudentUpdated');
    assert.equal(event?.student.firstName, 'Grace');
  });

  test('an invalid update changes nothing and records nothing', () => {
    const student = created();
    student.pullDomainEvents();
    const before = student.snapshot();
    assert.ok(!student.update({ details: { ...details, email: 'bad' }, actor: 'bob', now }).ok);
    assert.deepEqual(student.snapshot(), before);
    assert.deepEqual(student.pullDomainEvents(), []);
  });

  test('background processing counts one update and raises no event, so it cannot loop', () => {
    const student = created();
    student.pullDomainEvents();
    student.recordBackgroundProcessing({ actor: 'worker', now });
    assert.equal(student.snapshot().updates, 1);
    assert.equal(student.version, 2);
    assert.deepEqual(student.pullDomainEvents(), []);
  });

  test('deleting records StudentDeleted with the last state', () => {
    const student = created();
    student.pullDomainEvents();
    student.delete({ actor: 'carol', now });
    const [event] = student.pullDomainEvents();
    assert.equal(event?.type, 'StudentDeleted');
    assert.equal(event?.student.id, 'id-1');
  });
});
