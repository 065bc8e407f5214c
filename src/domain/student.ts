import { AggregateRoot } from './aggregate-root.ts';
import type { FieldIssue, DomainError } from './errors.ts';
import { err, ok, type Result } from './result.ts';
import type { StudentEvent } from './student-events.ts';

export const STUDENT_NAME_MAX_LENGTH = 100;
export const STUDENT_EMAIL_MAX_LENGTH = 254;

// Deliberately simple: one @, no spaces, and on either side parts joined by single dots (none empty: `a.@b.co` and
// `a@.b.co` are not addresses), two at least in the domain. Full RFC 5322 validation rejects nothing useful here.
const EMAIL_PATTERN = /^[^\s@.]+(?:\.[^\s@.]+)*@[^\s@.]+(?:\.[^\s@.]+)+$/;
// With the u flag a surrogate pair is one code point, so this matches only unpaired surrogates.
const UNPAIRED_SURROGATE = /\p{Cs}/u;
export const NOT_STORABLE_TEXT = 'must be Unicode text without NUL characters or unpaired surrogates';
// C0 and C1 controls, DEL and the Unicode line and paragraph separators (a terminal escape, a line break: forged log
// lines, broken displays), and the bidi embeddings, overrides and isolates, which reorder the text shown around them
// (Trojan Source, CVE-2021-42574). Not in isStorableText, which the worker's event schema uses: events of students
// stored before this rule still pass.
const CONTROL_OR_BIDI = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
export const NOT_PLAIN_TEXT = 'must not contain control characters or bidirectional overrides';

/** Text shown as it is stored: no controls, no line separators, nothing that reorders what is around it. */
export function isPlainText(value: string): boolean {
  return !CONTROL_OR_BIDI.test(value);
}
// What shows nothing: format characters, the default-ignorable ones (Hangul fillers, variation selectors) and the
// blank Braille pattern. The joiners among them (U+200C, U+200D) stay allowed between other characters of a name.
const INVISIBLE_CHARACTERS = '\\p{Cf}\\p{Default_Ignorable_Code_Point}\\u2800';
const INVISIBLE = new RegExp(`[\\s${INVISIBLE_CHARACTERS}]`, 'gu');
// In an email none is allowed: `a\u200b@b.co` shows as `a@b.co` and is another address.
const INVISIBLE_IN_EMAIL = new RegExp(`[${INVISIBLE_CHARACTERS}]`, 'u');
// In a name only those its script or its emoji need: between other characters, the joiners (U+200C, U+200D:
// Persian and Indic names, emoji sequences), the directional marks (U+200E, U+200F, U+061C: names that mix scripts),
// the Mongolian vowel separator and the combining grapheme joiner; the variation selectors (Mongolian's too); and
// tag characters in a subdivision flag (England's). Any other hides text: `Ann\u200b` shows as `Ann` and is another
// name, and tag characters elsewhere spell out whole words no one sees.
const BETWEEN_CHARACTERS = '\\u200c-\\u200f\\u061c\\u180e\\u034f';
const VARIATION_SELECTORS = '\\u180b-\\u180d\\u180f\\ufe00-\\ufe0f\\u{e0100}-\\u{e01ef}';
const HIDDEN_IN_NAME = new RegExp(
  // eslint-disable-next-line no-misleading-character-class -- ranges of code points, the joiners among them on purpose
  `^[${BETWEEN_CHARACTERS}]|[${BETWEEN_CHARACTERS}]$|(?![${BETWEEN_CHARACTERS}${VARIATION_SELECTORS}])[${INVISIBLE_CHARACTERS}]`,
  'u',
);
const FLAG_TAGS = /(?<=\u{1f3f4})[\u{e0020}-\u{e007e}]+\u{e007f}/gu;
export const HIDDEN_CHARACTERS = 'must not contain hidden characters (zero-width spaces and the like)';
// A combining mark first has nothing to combine with: it shows on whatever is printed before the name.
const LEADING_MARK = /^\p{M}/u;

/** Whether something shows: a zero-width space alone is as blank as "   ". */
export function isVisibleText(value: string): boolean {
  return value.replace(INVISIBLE, '').length > 0;
}

/**
 * How long a field is as stored, which is what its limit applies to: trimmed, in characters as PostgreSQL's
 * varchar(n) counts them (code points, not UTF-16 units). The HTTP schema checks the same.
 */
export function storedLength(value: string): number {
  return [...value.trim()].length;
}

/** Whether PostgreSQL stores the value as given: it rejects NUL, and an unpaired surrogate has no UTF-8 form. */
export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && !UNPAIRED_SURROGATE.test(value);
}

export interface StudentSnapshot {
  readonly id: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly email: string;
  readonly updates: number;
  readonly created: Date;
  readonly createdBy: string;
  readonly lastModified: Date | null;
  readonly lastModifiedBy: string | null;
  readonly version: number;
}

export interface StudentDetails {
  readonly firstName: string;
  readonly lastName: string;
  readonly email: string;
}

export type InvalidStudent = Extract<DomainError, { code: 'STUDENT.INVALID' }>;

function checkName(field: keyof StudentDetails, raw: string, issues: FieldIssue[]): string {
  const value = raw.trim();
  if (!isStorableText(value)) issues.push({ field, reason: NOT_STORABLE_TEXT });
  else if (!isPlainText(value)) issues.push({ field, reason: NOT_PLAIN_TEXT });
  else if (!isVisibleText(value)) issues.push({ field, reason: 'must not be empty' });
  else if (HIDDEN_IN_NAME.test(value.replace(FLAG_TAGS, '')))
    issues.push({ field, reason: HIDDEN_CHARACTERS });
  else if (LEADING_MARK.test(value)) issues.push({ field, reason: 'must not begin with a combining mark' });
  else if (storedLength(value) > STUDENT_NAME_MAX_LENGTH)
    issues.push({ field, reason: `must be at most ${STUDENT_NAME_MAX_LENGTH} characters` });
  return value;
}

function checkEmail(raw: string, issues: FieldIssue[]): string {
  const value = raw.trim();
  if (!isStorableText(value)) issues.push({ field: 'email', reason: NOT_STORABLE_TEXT });
  else if (!isPlainText(value)) issues.push({ field: 'email', reason: NOT_PLAIN_TEXT });
  else if (storedLength(value) > STUDENT_EMAIL_MAX_LENGTH)
    issues.push({ field: 'email', reason: `must be at most ${STUDENT_EMAIL_MAX_LENGTH} characters` });
  else if (!EMAIL_PATTERN.test(value))
    issues.push({ field: 'email', reason: 'must be a valid email address' });
  else if (INVISIBLE_IN_EMAIL.test(value))
    issues.push({ field: 'email', reason: 'must not contain invisible characters' });
  return value;
}

/** Trims and checks every field, reporting all broken rules at once rather than the first. */
export function validateStudentDetails(details: StudentDetails): Result<StudentDetails, InvalidStudent> {
  const issues: FieldIssue[] = [];
  const checked = {
    firstName: checkName('firstName', details.firstName, issues),
    lastName: checkName('lastName', details.lastName, issues),
    email: checkEmail(details.email, issues),
  };
  if (issues.length > 0)
    return err({ code: 'STUDENT.INVALID', message: 'The student is not valid.', issues });
  return ok(checked);
}

export class Student extends AggregateRoot<StudentEvent> {
  #state: StudentSnapshot;

  private constructor(state: StudentSnapshot) {
    super();
    this.#state = state;
  }

  static create(input: {
    id: string;
    details: StudentDetails;
    actor: string;
    now: Date;
  }): Result<Student, InvalidStudent> {
    const details = validateStudentDetails(input.details);
    if (!details.ok) return details;
    const student = new Student({
      id: input.id,
      ...details.value,
      updates: 0,
      created: input.now,
      createdBy: input.actor,
      lastModified: null,
      lastModifiedBy: null,
      version: 1,
    });
    student.record({
      type: 'StudentCreated',
      studentId: input.id,
      occurredAt: input.now,
      actor: input.actor,
      student: student.snapshot(),
    });
    return ok(student);
  }

  /** Rebuilds a stored student; no events, no checks (valid when written, maybe under older rules: still readable). */
  static rehydrate(state: StudentSnapshot): Student {
    return new Student(state);
  }

  get id(): string {
    return this.#state.id;
  }

  get version(): number {
    return this.#state.version;
  }

  snapshot(): StudentSnapshot {
    return this.#state;
  }

  update(input: { details: StudentDetails; actor: string; now: Date }): Result<void, InvalidStudent> {
    const details = validateStudentDetails(input.details);
    if (!details.ok) return details;
    this.#modify(details.value, input.actor, input.now);
    this.record({
      type: 'StudentUpdated',
      studentId: this.id,
      occurredAt: input.now,
      actor: input.actor,
      student: this.snapshot(),
    });
    return ok(undefined);
  }

  delete(input: { actor: string; now: Date }): void {
    this.record({
      type: 'StudentDeleted',
      studentId: this.id,
      occurredAt: input.now,
      actor: input.actor,
      student: this.snapshot(),
    });
  }

  /** The background processing of the original: counts the event and raises nothing, so it cannot loop. */
  recordBackgroundProcessing(input: { actor: string; now: Date }): void {
    this.#modify({ updates: this.#state.updates + 1 }, input.actor, input.now);
  }

  #modify(changes: Partial<StudentSnapshot>, actor: string, now: Date): void {
    // Never before the last change, nor the creation: each is stamped by the host that made it, whose clock may be
    // behind the previous one's.
    const previous = this.#state.lastModified ?? this.#state.created;
    this.#state = {
      ...this.#state,
      ...changes,
      lastModified: now > previous ? now : previous,
      lastModifiedBy: actor,
      version: this.#state.version + 1,
    };
  }
}
