import type { StudentPage, StudentQueries } from '../ports/student-queries.ts';

export function listStudents(queries: StudentQueries) {
  return (input: { limit: number; afterId?: string }): Promise<StudentPage> => queries.list(input);
}
