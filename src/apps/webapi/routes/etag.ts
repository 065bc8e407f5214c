import type { VersionCondition } from '../../../application/students/load-for-write.ts';

export function etagOf(version: number): string {
  return `"${version}"`;
}

/** One entity tag (RFC 9110 §8.8.3): its quoted value, and whether it is weak (`W/"…"`). */
export interface EntityTag {
  readonly weak: boolean;
  readonly opaque: string;
}

const ENTITY_TAG = /^(W\/)?"([^"]*)"$/;

/**
 * The value of `If-Match` or `If-None-Match`: `*`, or a comma-separated list of entity tags. Undefined when it is
 * malformed.
 */
export function parseEntityTags(header: string): '*' | EntityTag[] | undefined {
  const value = header.trim();
  if (value === '*') return '*';
  const tags: EntityTag[] = [];
  for (const part of value.split(',')) {
    const match = ENTITY_TAG.exec(part.trim());
    if (!match) return undefined;
    tags.push({ weak: match[1] !== undefined, opaque: match[2] ?? '' });
  }
  return tags;
}

/**
 * Parses `If-Match` (RFC 9110 §13.1.1): `*`, or a list of entity tags compared strongly, so weak tags and
 * tags we never issued simply match nothing. Returns undefined when the header is malformed.
 */
export function parseIfMatch(header: string): VersionCondition | undefined {
  const tags = parseEntityTags(header);
  if (tags === undefined) return undefined;
  if (tags === '*') return { any: true };
  const versions = tags
    .filter(({ weak, opaque }) => !weak && /^[1-9]\d{0,9}$/.test(opaque))
    .map(({ opaque }) => Number(opaque));
  return { versions };
}

/**
 * Whether `If-None-Match` names the current representation (RFC 9110 §13.1.2): `*` does when there is one; a list
 * does when one of its tags equals `etag` in the weak comparison (a `W/` prefix on either side is ignored).
 */
export function noneMatchFails(condition: '*' | readonly EntityTag[], etag: string): boolean {
  if (condition === '*') return true;
  const current = parseEntityTags(etag);
  if (current === undefined || current === '*' || current.length !== 1) return false;
  const opaque = current[0]!.opaque;
  return condition.some((tag) => tag.opaque === opaque);
}
