import type { StudentDetails } from '../../domain/student.ts';

/** Fills in the fields a client left out, as the original generated fake students. */
export interface StudentDataGenerator {
  generate(): StudentDetails;
}
