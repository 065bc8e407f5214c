import type { StudentSnapshot } from '../../domain/student.ts';
import type { StudentCache } from '../ports/student-cache.ts';
import type { StudentWriteResult } from './write-once.ts';

type StudentWrite<C> = (command: C) => Promise<StudentWriteResult>;

/** Wraps a committed create so the cache holds the new student before the caller hears of it. */
export function addingToCache<C>(create: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return afterCommit(create, (student) => cache.add(student));
}

/** Wraps a committed update so the cache holds the new version before the caller hears of it. */
export function writingThrough<C>(update: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return afterCommit(update, (student) => cache.set(student));
}

/** Wraps a committed delete so no instance serves the student (or a replayed response about it) afterwards. */
export function evictingOnDelete<C>(remove: StudentWrite<C>, cache: StudentCache): StudentWrite<C> {
  return afterCommit(remove, (student) => cache.evict(student.id));
}

function afterCommit<C>(
  write: StudentWrite<C>,
  then: (student: StudentSnapshot) => Promise<void>,
): StudentWrite<C> {
  return async (command) => {
    const result = await write(command);
    // A replay too: its first attempt may have died before this (a newer entry is never overwritten).
    if (result.ok) await then(result.value);
    return result;
  };
}
