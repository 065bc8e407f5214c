import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  HIDDEN_CHARACTERS,
  NOT_PLAIN_TEXT,
  Student,
  validateStudentDetails,
} from '../../src/domain/student.ts';

const now = new Date('2026-01-01T00:00:00Z');
const details = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };

/** What is wrong with a student whose every field holds `text` (the email built around it); something must be. */
function issuesWithEveryField(text: string) {
  const result = validateStudentDetails({ firstName: text, lastName: text, email: `${text}@example.com` });
  assert.ok(!result.ok, JSON.stringify(text));
  return result.error.issues;
}

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
    for (const text of ['A\u0000da', 'Ada\ud800', '\udfffAda'])
      assert.deepEqual(
        issuesWithEveryField(text).map((issue) => issue.field),
        ['firstName', 'lastName', 'email'],
      );
    assert.ok(validateStudentDetails({ ...details, firstName: 'Ada 🎓' }).ok, 'a surrogate pair is fine');
  });

  test('control characters and bidi overrides are rejected in every field: they forge log lines and reorder text', () => {
    for (const text of [
      'a\u001b[31mred',
      'x\r\ny',
      'a\u0001b',
      'a\u007fb',
      'a\u0085b',
      'Ada\u2028Evil',
      'a\u2029b',
      '\u202eevil',
      'a\u2066b',
    ])
      assert.deepEqual(
        issuesWithEveryField(text).map((issue) => [issue.field, issue.reason]),
        ['firstName', 'lastName', 'email'].map((field) => [field, NOT_PLAIN_TEXT]),
        JSON.stringify(text),
      );
  });

  test('a name of only invisible characters is empty, as a blank one is', () => {
    for (const firstName of [
      '\u200b',
      ' \u200b\u2060 ',
      '\ufeff\u00ad',
      '\u200d\u200c',
      '\u3164',
      '\uffa0\u115f\u1160',
      '\u2800',
      '\u034f\ufe0f',
    ]) {
      const result = validateStudentDetails({ ...details, firstName });
      assert.ok(!result.ok, JSON.stringify(firstName));
      assert.deepEqual(result.error.issues, [{ field: 'firstName', reason: 'must not be empty' }]);
    }
  });

  test('characters that hide text in a name are refused: the name shows as another one', () => {
    for (const firstName of [
      'Ann\u200b',
      'Ann\u2060e',
      'Zoe\u00ad',
      'B\u{e0049}\u{e0047}x',
      '\ufff9x',
      'Ann\u200d',
      '\u200eAnn',
    ]) {
      const result = validateStudentDetails({ ...details, firstName });
      assert.ok(!result.ok, JSON.stringify(firstName));
      assert.deepEqual(result.error.issues, [{ field: 'firstName', reason: HIDDEN_CHARACTERS }]);
    }
    const marked = validateStudentDetails({ ...details, lastName: '\u0301abc' });
    assert.ok(!marked.ok);
    assert.deepEqual(marked.error.issues, [
      { field: 'lastName', reason: 'must not begin with a combining mark' },
    ]);
  });

  test('joiners between letters are kept: emoji sequences, Persian and Mongolian names and subdivision flags need them', () => {
    for (const firstName of [
      '👩\u200d🎓',
      'رحمانی\u200cنژاد',
      'क्\u200dष',
      'Ada\u200fLovelace',
      '❤\ufe0f',
      'ᠮᠣᠩ\u180bᠭᠣᠯ',
      'ᠨᠠ\u180eᠢ',
      '🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f} Ada',
    ]) {
      const result = validateStudentDetails({ ...details, firstName });
      assert.deepEqual(result, { ok: true, value: { ...details, firstName } }, JSON.stringify(firstName));
    }
  });

  test('a stored student is rehydrated as it is, even one that the rules of today would refuse', () => {
    const stored = {
      ...created().snapshot(),
      firstName: '\u202eevil',
      lastName: 'x\r\ny',
      email: 'a\u0001@b.c',
    };
    assert.deepEqual(Student.rehydrate(stored).snapshot(), stored);
  });

  test('100 characters is the longest name allowed', () => {
    assert.ok(validateStudentDetails({ ...details, firstName: 'x'.repeat(100) }).ok);
    assert.ok(!validateStudentDetails({ ...details, firstName: 'x'.repeat(101) }).ok);
  });

  test('254 characters is the longest email allowed', () => {
    const email = (length: number) => `${'x'.repeat(length - '@example.com'.length)}@example.com`;
    assert.ok(validateStudentDetails({ ...details, email: email(254) }).ok);
    const tooLong = validateStudentDetails({ ...details, email: email(255) });
    assert.ok(!tooLong.ok);
    assert.deepEqual(tooLong.error.issues, [{ field: 'email', reason: 'must be at most 254 characters' }]);
  });

  test('an email needs one @ and a dot in its domain, no spaces, no empty part between dots, nothing invisible', () => {
    for (const email of [
      'ada@example',
      'ada.example.com',
      'ada@@example.com',
      'a da@example.com',
      '@example.com',
      'ada.@example.com',
      '.ada@example.com',
      'a..da@example.com',
      'ada@.example.com',
      'ada@example..com',
      'a\u200bda@example.com',
      'ada@exam\u00adple.com',
    ])
      assert.ok(!validateStudentDetails({ ...details, email }).ok, JSON.stringify(email));
    assert.ok(validateStudentDetails({ ...details, email: 'ada.lovelace+notes@mail.example.co.uk' }).ok);
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
    assert.equal(student.snapshot().created, now, 'the creation stays as it was');
    assert.equal(student.snapshot().createdBy, 'alice');
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

  test('a change stamped by a host whose clock is behind never moves lastModified back, nor before the creation', () => {
    const student = created();
    student.recordBackgroundProcessing({ actor: 'worker', now: new Date(now.getTime() - 30_000) });
    assert.deepEqual(student.snapshot().lastModified, now);
    const later = new Date(now.getTime() + 60_000);
    assert.ok(student.update({ details, actor: 'bob', now: later }).ok);
    student.recordBackgroundProcessing({ actor: 'worker', now: new Date(later.getTime() - 30_000) });
    assert.deepEqual(student.snapshot().lastModified, later);
    assert.equal(student.snapshot().lastModifiedBy, 'worker');
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
