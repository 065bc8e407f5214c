import type { DomainError } from '../../domain/errors.ts';
import type { Result } from '../../domain/result.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { StudentCache } from '../ports/student-cache.ts';

type StudentWrite<C> = (command: C) => Promise<Result<StudentSnapshot, DomainError>>;

/** Wraps a committed create/update so the cache holds the new version before the caller hears of it. */
export function writingThrough<C>(write: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return async (command) => {
    const result = await write(command);
    if (result.ok) await cache.set(result.value);
    return result;
  };
}

/** Wraps a committed delete so no instance serves the student (or a replayed response about it) afterwards. */
export function evictingOnDelete<C>(remove: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return async (command) => {
    const result = await remove(command);
    if (result.ok) await cache.evict(result.value.id);
    return result;
  };
}
