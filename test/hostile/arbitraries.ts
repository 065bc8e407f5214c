// Generators of hostile input shared by the hostile-input suite: strings that have broken parsers, databases and
// browsers before, JSON (and almost-JSON) with prototype keys at any depth, bad UUIDs and header values.
import fc from 'fast-check';
import { isPlainText, isVisibleText } from '../../src/domain/student.ts';

/** Fragments with a history: NUL, lone surrogates, direction overrides, joiners, SQL and HTML payloads. */
export const NASTY_FRAGMENTS = [
  '\u0000',
  '\ud800',
  '\udfff',
  '\u202e', // right-to-left override
  '\u200f', // right-to-left mark
  '\u200b', // zero-width space
  '\u200d', // zero-width joiner
  '\ufeff', // byte order mark
  '\u2028',
  '\u2029',
  '\u0301', // combining acute accent
  '\u0007',
  '\u001b[31m',
  '\r\n',
  '\n',
  '\t',
  '\u00a0',
  '👩‍👩‍👧‍👦',
  '🎓',
  '🏳️‍🌈',
  'ﷺ',
  'İ',
  'ß',
  'Ω',
  '𝕬',
  "'; DROP TABLE students; --",
  "' OR '1'='1",
  '" OR ""="',
  '1; SELECT pg_sleep(10)',
  '$$; DELETE FROM outbox; $$',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  'javascript:alert(1)',
  '{{7*7}}',
  '${7*7}',
  '%00',
  '%s%n%x',
  '../../../etc/passwd',
  '\\',
  '"',
  "'",
  '`',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'NaN',
  'null',
  'undefined',
  '-1',
  '1e309',
  '99999999999999999999999999999999',
] as const;

// String.prototype.isWellFormed / toWellFormed are ES2024 (the project compiles against ES2023). With the u flag
// a surrogate pair is one code point, so \p{Cs} matches only unpaired surrogates.
export const isWellFormed = (text: string): boolean => !/\p{Cs}/u.test(text);
export const toWellFormed = (text: string): string => text.replace(/\p{Cs}/gu, '\ufffd');

const LEGAL_FRAGMENTS = NASTY_FRAGMENTS.filter(
  (fragment) => !fragment.includes('\u0000') && isWellFormed(fragment),
);

export const loneSurrogate = fc
  .integer({ min: 0xd800, max: 0xdfff })
  .map((code) => String.fromCharCode(code));

/** Any JS string, well-formed or not: fragments, random code units, lone surrogates, sometimes huge. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_FRAGMENTS) },
  {
    weight: 4,
    arbitrary: fc
      .array(
        fc.oneof(
          fc.constantFrom(...NASTY_FRAGMENTS),
          fc.string({ unit: 'grapheme-ascii', maxLength: 8 }),
          loneSurrogate,
        ),
        { maxLength: 8 },
      )
      .map((parts) => parts.join('')),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('x', 'é', '🎓', '\u0000', ' '), fc.integer({ min: 90, max: 20_000 }))
      .map(([unit, count]) => unit.repeat(count)),
  },
);

/** Hostile strings short enough for a URL or a header: Node refuses a request line and headers over 16 KiB (431). */
export const shortHostileString: fc.Arbitrary<string> = hostileString.map((text) => text.slice(0, 1_000));

/**
 * Text a message field accepts: well-formed, no NUL, something left after trimming, at most `maxLength` code
 * units, but otherwise as hostile as it gets (SQL, HTML, emoji, direction marks, control characters). With
 * `controls: false`, text a student field accepts: no controls or bidi overrides, something visible.
 */
export function legalText(maxLength: number, { spaces = true, controls = true } = {}): fc.Arbitrary<string> {
  return fc
    .array(
      fc.oneof(
        fc.constantFrom(...LEGAL_FRAGMENTS),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
        fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 6 }),
      ),
      { minLength: 1, maxLength: 6 },
    )
    .map((parts) => parts.join(''))
    .map((text) => (spaces ? text : text.replace(/[\s@]/gu, '')))
    .map((text) => (controls ? text : [...text].filter((char) => isPlainText(char)).join('')))
    .map((text) => text.slice(0, maxLength))
    .filter(
      (text) =>
        isWellFormed(text) &&
        !text.includes('\u0000') &&
        text.trim().length > 0 &&
        (controls || isVisibleText(text)),
    );
}

/**
 * The API's rule for what a name may hold beyond visible text, said again: no character that hides text. Of the
 * invisible ones, a name keeps only the variation selectors (Mongolian's too), tag characters inside a subdivision
 * flag, and, between other characters, the joiners, the directional marks, the Mongolian vowel separator and the
 * combining grapheme joiner. Nor may it begin with a combining mark.
 */
export function isLegalName(name: string): boolean {
  if (/^\p{M}/u.test(name)) return false;
  const chars = [...name.replace(/\u{1f3f4}[\u{e0020}-\u{e007e}]+\u{e007f}/gu, '\u{1f3f4}')];
  return chars.every((char, index) => {
    if (!/[\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]/u.test(char)) return true;
    if (/[\u180b-\u180d\u180f\ufe00-\ufe0f\u{e0100}-\u{e01ef}]/u.test(char)) return true;
    const between = index > 0 && index < chars.length - 1;
    return between && ['\u200c', '\u200d', '\u200e', '\u200f', '\u061c', '\u180e', '\u034f'].includes(char);
  });
}

/** A name the API accepts, as hostile as it gets otherwise (`maxLength` code units). */
export function legalName(maxLength: number): fc.Arbitrary<string> {
  return legalText(maxLength, { controls: false }).filter((name) => isLegalName(name.trim()));
}

/**
 * The API's email rule, said again: one @, no whitespace, parts between dots never empty (two at least in the
 * domain), nothing invisible.
 */
export function isLegalEmail(email: string): boolean {
  return (
    /^[^\s@.]+(?:\.[^\s@.]+)*@[^\s@.]+(?:\.[^\s@.]+)+$/u.test(email) &&
    !/[\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]/u.test(email)
  );
}

/** A valid email by the API's rule, hostile characters included. */
export const legalEmail: fc.Arbitrary<string> = fc
  .tuple(
    legalText(60, { spaces: false, controls: false }),
    legalText(60, { spaces: false, controls: false }),
    legalText(20, { spaces: false, controls: false }),
  )
  .map(([local, domain, tld]) => `${local}@${domain}.${tld}`)
  .filter((email) => isWellFormed(email) && isLegalEmail(email) && !email.includes('\u0000'));

/**
 * JSON as a tree, so object keys can be anything JSON allows (`__proto__`, duplicates, escaped spellings) without
 * going through a JS object first. `raw` holds number literals JSON.stringify never writes (1e400, -0, huge).
 */
export type JsonTree =
  | null
  | boolean
  | string
  | { readonly number: string }
  | readonly JsonTree[]
  | { readonly entries: readonly JsonEntry[] };

/** A key, its value, and whether the key is written with \\u escapes (e.g. `"\\u005f\\u005fproto__"`). */
export type JsonEntry = readonly [key: string, value: JsonTree, escaped: boolean];

const DANGEROUS_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'polluted',
  'isAdmin',
  '',
] as const;

export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...DANGEROUS_KEYS) },
  { weight: 2, arbitrary: fc.constantFrom('firstName', 'lastName', 'email', 'id', 'version', 'updates') },
  { weight: 2, arbitrary: shortHostileString },
);

const numberLiteral = fc.oneof(
  fc.double().filter(Number.isFinite).map(String),
  fc.integer().map(String),
  fc.constantFrom(
    '1e400',
    '-0',
    '0.0000000000000000000001',
    '123456789012345678901234567890',
    '1E+2',
    '-1e-400',
  ),
);

/** Most keys are written plainly; some spelled with \\u escapes, which a naive `__proto__` check misses. */
const sometimesEscaped = fc.oneof(
  { weight: 4, arbitrary: fc.constant(false) },
  { weight: 1, arbitrary: fc.constant(true) },
);

export const jsonTree: fc.Arbitrary<JsonTree> = fc.letrec<{ tree: JsonTree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    hostileString,
    numberLiteral.map((number) => ({ number })),
    fc.array(tie('tree'), { maxLength: 4 }),
    fc
      .array(fc.tuple(hostileKey, tie('tree'), sometimesEscaped), { maxLength: 4 })
      .map((entries) => ({ entries })),
  ),
})).tree;

/** `{"__proto__": {...}}` or `{"constructor": {"prototype": {...}}}`, each a classic pollution attempt. */
export const pollutionPayload: fc.Arbitrary<JsonTree> = fc
  .tuple(fc.constantFrom('__proto__', 'constructor'), fc.boolean(), fc.constantFrom('polluted', 'isAdmin'))
  .map(([root, escaped, key]) => {
    const marker: JsonTree = { entries: [[key, 'yes', false]] };
    return root === '__proto__'
      ? { entries: [['__proto__', marker, escaped]] }
      : { entries: [['constructor', { entries: [['prototype', marker, escaped]] }, escaped]] };
  });

/** Puts `payload` somewhere inside `tree` (any depth), as an extra entry or array item, or as the whole thing. */
export function inject(tree: JsonTree, payload: JsonTree, path: readonly number[]): JsonTree {
  const [step, ...rest] = path;
  if (step === undefined || tree === null || typeof tree !== 'object') return payload;
  if (Array.isArray(tree)) {
    if (tree.length === 0) return [payload];
    const index = step % tree.length;
    return tree.map((item, i) => (i === index ? inject(item, payload, rest) : item));
  }
  if ('entries' in tree) {
    const entries = (tree as { entries: readonly JsonEntry[] }).entries;
    if (entries.length === 0 || rest.length === 0)
      return { entries: [...entries, ...(payload as { entries: readonly JsonEntry[] }).entries] };
    const index = step % entries.length;
    return {
      entries: entries.map(([key, value, escaped], i) =>
        i === index
          ? ([key, inject(value, payload, rest), escaped] as const)
          : ([key, value, escaped] as const),
      ),
    };
  }
  return payload;
}

export const treeWithPollution: fc.Arbitrary<JsonTree> = fc
  .tuple(jsonTree, pollutionPayload, fc.array(fc.nat(), { maxLength: 5 }))
  .map(([tree, payload, path]) => inject(tree, payload, path));

function escapeAll(key: string): string {
  return `"${[...key].map((char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`;
}

/** Serializes a tree as JSON text; lone surrogates come out as \\u escapes, as JSON.stringify writes them. */
export function jsonText(tree: JsonTree): string {
  if (tree === null || typeof tree === 'boolean' || typeof tree === 'string') return JSON.stringify(tree);
  if (Array.isArray(tree)) return `[${tree.map(jsonText).join(',')}]`;
  if ('number' in tree) return (tree as { number: string }).number;
  const { entries } = tree as { entries: readonly JsonEntry[] };
  return `{${entries.map(([key, value, escaped]) => `${escaped ? escapeAll(key) : JSON.stringify(key)}:${jsonText(value)}`).join(',')}}`;
}

/** Ways JSON text goes wrong: cut short, a byte flipped, a comment, trailing commas, single quotes, a BOM, NaN. */
export const malformedJson = (valid: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof(
    fc.tuple(valid, fc.nat()).map(([text, cut]) => text.slice(0, cut % Math.max(1, text.length))),
    fc
      .tuple(
        valid,
        fc.nat(),
        fc.constantFrom('"', "'", ',', '{', '}', '[', ']', ':', '\\', '\u0000', '\u001e', 'NaN'),
      )
      .map(
        ([text, at, char]) =>
          text.slice(0, at % (text.length + 1)) + char + text.slice(at % (text.length + 1)),
      ),
    valid.map((text) => `${text},`),
    valid.map((text) => `${text}${text}`),
    valid.map((text) => `\ufeff${text}`),
    valid.map((text) => `/* comment */${text}`),
    valid.map((text) => text.replaceAll('"', "'")),
    fc.constantFrom(
      '{"firstName":"a",}',
      '{firstName:"a"}',
      "{'firstName':'a'}",
      '{"firstName":NaN}',
      '{"firstName":Infinity}',
      '{"firstName":undefined}',
      '{"firstName":"\\x41"}',
      '{"firstName":"a\\"}',
      '{"firstName":"\u0000"}',
      '{"firstName":"line\nbreak"}',
      '{"a":1}{"b":2}',
      '"unterminated',
      '\u0000',
      '{',
      '}',
      'nul',
      'tru',
      '-',
      '0x10',
    ),
    fc
      .tuple(fc.constantFrom('[', '{"a":'), fc.integer({ min: 1_000, max: 20_000 }))
      .map(([open, depth]) => open.repeat(depth)),
  );

/** Path segments that are not UUIDs, or almost are: wrong length, wrong characters, encodings, traversal. */
export const badUuid: fc.Arbitrary<string> = fc.oneof(
  hostileString.filter((text) => text.length > 0),
  fc.uuid().map((uuid) => uuid.slice(0, -1)),
  fc.uuid().map((uuid) => `${uuid}0`),
  fc.uuid().map((uuid) => uuid.replaceAll('-', '')),
  fc.uuid().map((uuid) => `{${uuid}}`),
  fc.uuid().map((uuid) => uuid.replace(/[0-9a-f]/u, 'g')),
  fc.uuid().map((uuid) => ` ${uuid}`),
  fc.uuid().map((uuid) => `${uuid}'; DROP TABLE students; --`),
  fc.constantFrom('null', 'undefined', '0', '-1', '..', '.', '%', '%zz', '%00', '%E0%A4%A', '%2e%2e%2f'),
);

/** A path segment as a client would put it in a URL: usually encoded, sometimes raw (possibly invalid). */
export function pathSegment(text: string, raw: boolean): string {
  if (!raw) return encodeURIComponent(toWellFormed(text));
  // Only what a URL can carry at all: printable ASCII outside the path and query delimiters.
  return [...text]
    .map((char) =>
      /^[!-~]$/u.test(char) && !'/?#'.includes(char) ? char : encodeURIComponent(toWellFormed(char)),
    )
    .join('');
}

/** Header values fetch can send (Latin-1, no CR/LF/NUL), hostile otherwise. */
export const headerValue: fc.Arbitrary<string> = fc
  .oneof(
    fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
    fc.constantFrom(...NASTY_FRAGMENTS),
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0xff }).map((code) => String.fromCharCode(code)),
      maxLength: 40,
    }),
    fc.integer({ min: 100, max: 6_000 }).map((count) => 'a'.repeat(count)),
  )
  .map((value) => value.replace(/[^\t\x20-\x7e\x80-\xff]/gu, '').trim());

/** Whether `key` is an own key of `value` or of anything inside it (JSON.parse makes `__proto__` an own key). */
export function hasOwnKeyDeep(value: unknown, key: string): boolean {
  if (value === null || typeof value !== 'object') return false;
  return Object.hasOwn(value, key) || Object.values(value).some((inner) => hasOwnKeyDeep(inner, key));
}

/** A JSON value as a tree, so parts of it can be replaced with what no JS object could hold. */
export function toTree(value: unknown): JsonTree {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return { number: JSON.stringify(value) };
  if (Array.isArray(value)) return value.map(toTree);
  return {
    entries: Object.entries(value as Record<string, unknown>).map(
      ([key, inner]) => [key, toTree(inner), false] as const,
    ),
  };
}

/** `tree` with the value at `path` replaced, or removed when `value` is undefined (a missing path is added). */
export function setPath(tree: JsonTree, path: readonly string[], value: JsonTree | undefined): JsonTree {
  const [key, ...rest] = path;
  if (key === undefined) return value ?? null;
  const entries =
    tree !== null && typeof tree === 'object' && 'entries' in tree
      ? (tree as { entries: readonly JsonEntry[] }).entries
      : [];
  const found = entries.some(([name]) => name === key);
  const updated = entries.flatMap(([name, inner, escaped]): JsonEntry[] => {
    if (name !== key) return [[name, inner, escaped]];
    if (rest.length === 0 && value === undefined) return [];
    return [[name, setPath(inner, rest, value), escaped]];
  });
  if (!found && (rest.length > 0 || value !== undefined))
    updated.push([key, setPath(null, rest, value), false]);
  return { entries: updated };
}
