import type { StudentSnapshot } from '../../domain/student.ts';
import type { StudentCache } from '../ports/student-cache.ts';
import type { StudentWriteResult } from './write-once.ts';

type StudentWrite<C> = (command: C) => Promise<StudentWriteResult>;
type CacheStep = (student: StudentSnapshot) => Promise<void>;

/** Wraps a committed create so the cache holds the new student before the caller hears of it. */
export function addingToCache<C>(create: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return afterCommit(create, (student) => cache.add(student), invalidating(cache));
}

/** Wraps a committed update so the cache holds the new version before the caller hears of it. */
export function writingThrough<C>(update: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return afterCommit(update, (student) => cache.set(student), invalidating(cache));
}

/** Wraps a committed delete so no instance serves the student (or a replayed response about it) afterwards. */
export function evictingOnDelete<C>(remove: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  const evict: CacheStep = (student) => cache.evict(student.id);
  // A delete is final: its replay evicts too.
  return afterCommit(remove, evict, evict);
}

/**
 * For a replay (`replayed`): its student is what the first attempt wrote, which may be older than the student now
 * (updated or deleted since), so it is never cached; but that attempt may have died before caching it, leaving the
 * version from before it, so the entry goes and the next read loads the student.
 */
function invalidating(cache: StudentCache): CacheStep {
  return (student) => cache.invalidate(student.id);
}

function afterCommit<C>(write: StudentWrite<C>, written: CacheStep, replayed: CacheStep): StudentWrite<C> {
  return async (command) => {
    const result = await write(command);
    if (result.ok) await (result.replayed ? replayed(result.value) : written(result.value));
    return result;
  };
}
