import type { VersionCondition } from '../../../application/students/load-for-write.ts';

export function etagOf(version: number): string {
  return `"${version}"`;
}

const ENTITY_TAG = /^(W\/)?"([^"]*)"$/;

/**
 * Parses `If-Match` (RFC 9110 §13.1.1): `*`, or a list of entity tags compared strongly, so weak tags and
 * tags we never issued simply match nothing. Returns undefined when the header is malformed.
 */
export function parseIfMatch(header: string): VersionCondition | undefined {
  const value = header.trim();
  if (value === '*') return { any: true };
  const versions: number[] = [];
  for (const part of value.split(',')) {
    const match = ENTITY_TAG.exec(part.trim());
    if (!match) return undefined;
    const [, weak, opaque = ''] = match;
    if (!weak && /^[1-9]\d{0,9}$/.test(opaque)) versions.push(Number(opaque));
  }
  return { versions };
}
