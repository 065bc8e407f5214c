import type { StudentSnapshot } from '../../domain/student.ts';

export interface StudentPage {
  readonly items: readonly StudentSnapshot[];
  /** The id of the last item when more may follow. */
  readonly lastId: string | null;
}

/** Read side: queries may read the database directly, without loading aggregates. */
export interface StudentQueries {
  findById(id: string): Promise<StudentSnapshot | undefined>;
  /** Those of `ids` that exist, in no particular order: one read for many. */
  findByIds(ids: readonly string[]): Promise<StudentSnapshot[]>;
  /** Keyset page in id order (UUIDv7, so creation order), starting after `afterId`. */
  list(input: { limit: number; afterId?: string }): Promise<StudentPage>;
}
