import type { IncomingHttpHeaders } from 'node:http';
import type { VersionCondition, Versions } from '../../../application/students/load-for-write.ts';
import {
  invalidRequest,
  problem,
  type ProblemDetails,
} from '../../../infrastructure/http/problem-details.ts';

export function etagOf(version: number): string {
  return `"${version}"`;
}

/** One entity tag (RFC 9110 §8.8.3): its quoted value, and whether it is weak (`W/"…"`). */
export interface EntityTag {
  readonly weak: boolean;
  readonly opaque: string;
}

// One list element (RFC 9110 §5.6.1): an entity tag, or nothing (empty elements are allowed and ignored), then a
// comma or the end. An opaque tag may hold commas, but no spaces, controls or quotes (§8.8.3).
const LIST_ELEMENT = /[ \t]*(?:(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*)?(,|$)/y;

/**
 * The value of `If-Match` or `If-None-Match`: `*`, or a comma-separated list of entity tags. Undefined when it is
 * malformed or names no tag.
 */
export function parseEntityTags(header: string): '*' | EntityTag[] | undefined {
  if (header.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  LIST_ELEMENT.lastIndex = 0;
  for (;;) {
    const match = LIST_ELEMENT.exec(header);
    if (!match) return undefined;
    const [, weak, opaque, separator] = match;
    if (opaque !== undefined) tags.push({ weak: weak !== undefined, opaque });
    if (separator === '') break;
  }
  return tags.length > 0 ? tags : undefined;
}

type Tags = '*' | readonly EntityTag[];

/** `If-Match` and `If-None-Match` as sent, parsed; absent when not sent. */
export interface Preconditions {
  readonly match?: Tags;
  readonly noneMatch?: Tags;
}

const PRECONDITION_HEADERS = [
  { header: 'if-match', field: 'If-Match', key: 'match' },
  { header: 'if-none-match', field: 'If-None-Match', key: 'noneMatch' },
] as const;

/** Both precondition headers, or the name of one that does not parse. */
export function readPreconditions(
  headers: IncomingHttpHeaders,
): Preconditions | { readonly malformed: 'If-Match' | 'If-None-Match' } {
  const read: { match?: Tags; noneMatch?: Tags } = {};
  for (const { header, field, key } of PRECONDITION_HEADERS) {
    const value = headers[header];
    if (value === undefined) continue;
    const tags = parseEntityTags(value);
    if (tags === undefined) return { malformed: field };
    read[key] = tags;
  }
  return read;
}

const VERSION = /^[1-9]\d{0,9}$/;

/**
 * The student versions preconditions name: `*`, or those of their tags that are versions we issue. `If-Match`
 * compares strongly (a weak tag names none), `If-None-Match` weakly (RFC 9110 §13.1.1, §13.1.2).
 */
export function versionsNamed({ match, noneMatch }: Preconditions): VersionCondition {
  const versions = (tags: Tags, comparison: 'strong' | 'weak'): Versions =>
    tags === '*'
      ? '*'
      : tags
          .filter(({ weak, opaque }) => (comparison === 'weak' || !weak) && VERSION.test(opaque))
          .map(({ opaque }) => Number(opaque));
  return {
    ...(match === undefined ? {} : { match: versions(match, 'strong') }),
    ...(noneMatch === undefined ? {} : { noneMatch: versions(noneMatch, 'weak') }),
  };
}

/**
 * Whether a precondition's tags name the response's `etag` (RFC 9110 §8.8.3.2): `*` names any; the weak comparison
 * (If-None-Match) ignores a `W/` prefix on either side, the strong one (If-Match) matches strong tags only.
 */
export function namesEtag(condition: Tags, etag: string | undefined, comparison: 'strong' | 'weak'): boolean {
  if (condition === '*') return true;
  // A representation without an entity tag (a list, the collection a POST adds to) is named by `*` alone.
  if (etag === undefined) return false;
  const current = parseEntityTags(etag);
  if (current === undefined || current === '*' || current.length !== 1) return false;
  const [{ weak, opaque }] = current as [EntityTag];
  if (comparison === 'strong' && weak) return false;
  return condition.some((tag) => tag.opaque === opaque && (comparison === 'weak' || !tag.weak));
}

/** The 412 for a precondition the target's current representation fails (`detail` says how). */
export function preconditionFailed(url: string, detail: string): ProblemDetails {
  return problem({
    status: 412,
    title: 'Precondition Failed',
    code: 'PRECONDITION.FAILED',
    detail,
    instance: url,
  });
}

/**
 * Whether the preconditions hold for a target that exists but has no entity tag (RFC 9110 §13.1): If-Match holds
 * for `*` alone, If-None-Match for anything but `*`.
 */
export function holdForUntagged({ match, noneMatch }: Preconditions): boolean {
  return (match === undefined || namesEtag(match, undefined, 'strong')) && noneMatch !== '*';
}

/** The 400 for an `If-Match` or `If-None-Match` that does not parse: guessing its meaning could lose a write. */
export function malformedPrecondition(url: string, field: 'If-Match' | 'If-None-Match'): ProblemDetails {
  return invalidRequest(url, `The ${field} header is malformed.`, [
    { field, reason: 'must be "*" or a comma-separated list of entity tags such as "3"' },
  ]);
}
